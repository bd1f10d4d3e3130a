"""
The lectures' from-scratch layers (lectures 4 and 6), written as in the videos:
plain classes with __call__, parameters() and an .out attribute that keeps the
last output. The recorder reads .out after a forward pass and hangs a gradient
hook on it, so nothing here knows it is being watched.

Every layer that draws random numbers takes the generator explicitly, which is
the lecture-4 style; lecture 6 used the global RNG after torch.manual_seed(42),
and a torch.Generator seeded 42 gives exactly the same numbers.
"""


import torch

# -----------------------------------------------------------------------------


class Linear:

    def __init__(self, fan_in, fan_out, bias=True, generator=None):
        self.weight = torch.randn((fan_in, fan_out), generator=generator) / fan_in**0.5  # kaiming-ish
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out

    def parameters(self):
        return [self.weight] + ([] if self.bias is None else [self.bias])

    def named_parameters(self):
        return [("weight", self.weight)] + ([] if self.bias is None else [("bias", self.bias)])


class BatchNorm1d:
    """Lecture 4's BatchNorm1d, with lecture 6's fix: a 3-D input is normalized over dims (0, 1)."""

    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps = eps
        self.momentum = momentum
        self.training = True
        # parameters (trained with backprop)
        self.gamma = torch.ones(dim)
        self.beta = torch.zeros(dim)
        # buffers (trained with a running 'momentum update')
        self.running_mean = torch.zeros(dim)
        self.running_var = torch.ones(dim)

    def __call__(self, x):
        if self.training:
            dim = 0 if x.ndim == 2 else (0, 1)
            xmean = x.mean(dim, keepdim=True)  # batch mean
            xvar = x.var(dim, keepdim=True)    # batch variance
        else:
            xmean = self.running_mean
            xvar = self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)  # normalize to unit variance
        self.out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]

    def named_parameters(self):
        return [("gamma", self.gamma), ("beta", self.beta)]


class BatchNormStd:
    """
    The BatchNorm of lecture 4's first half, written inline in the video as
    bngain * (hpreact - bnmeani) / bnstdi + bnbias: it divides by the batch std
    (no eps) and keeps running mean/std with momentum 0.001. Kept apart from
    BatchNorm1d because its floats differ, and the lecture's numbers depend on them.
    """

    def __init__(self, dim, momentum=0.001):
        self.momentum = momentum
        self.training = True
        self.bngain = torch.ones((1, dim))
        self.bnbias = torch.zeros((1, dim))
        self.bnmean_running = torch.zeros((1, dim))
        self.bnstd_running = torch.ones((1, dim))

    def __call__(self, hpreact):
        if self.training:
            bnmeani = hpreact.mean(0, keepdim=True)
            bnstdi = hpreact.std(0, keepdim=True)
            self.out = self.bngain * (hpreact - bnmeani) / bnstdi + self.bnbias
            with torch.no_grad():
                m = self.momentum
                self.bnmean_running = (1 - m) * self.bnmean_running + m * bnmeani
                self.bnstd_running = (1 - m) * self.bnstd_running + m * bnstdi
        else:
            self.out = self.bngain * (hpreact - self.bnmean_running) / self.bnstd_running + self.bnbias
        return self.out

    def parameters(self):
        return [self.bngain, self.bnbias]

    def named_parameters(self):
        return [("bngain", self.bngain), ("bnbias", self.bnbias)]


class Tanh:

    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self):
        return []


class Embedding:

    def __init__(self, num_embeddings, embedding_dim, generator=None):
        self.weight = torch.randn((num_embeddings, embedding_dim), generator=generator)

    def __call__(self, IX):
        self.out = self.weight[IX]
        return self.out

    def parameters(self):
        return [self.weight]

    def named_parameters(self):
        return [("weight", self.weight)]


class Flatten:

    def __call__(self, x):
        self.out = x.view(x.shape[0], -1)
        return self.out

    def parameters(self):
        return []


class FlattenConsecutive:
    """(B, T, C) -> (B, T//n, C*n): fuse n consecutive characters (lecture 6)."""

    def __init__(self, n):
        self.n = n

    def __call__(self, x):
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        self.out = x
        return self.out

    def parameters(self):
        return []


class Sequential:

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return self.out

    def parameters(self):
        # get parameters of all layers and stretch them out into one list
        return [p for layer in self.layers for p in layer.parameters()]

# -----------------------------------------------------------------------------
# shared plumbing for the lecture-style (non nn.Module) models


class LectureModel:
    """Base of the from-scratch models: a list of layers with .out, parameters with names."""

    layers = ()  # (name, layer) pairs in forward order; the recorder reads their .out

    def __call__(self, idx, targets=None):
        return self.forward(idx, targets)

    def named_parameters(self):
        raise NotImplementedError

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_layers(self):
        return list(self.layers)

    def train(self, mode=True):
        for _, layer in self.named_layers():
            if hasattr(layer, "training"):
                layer.training = mode
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        # the lecture-style models are small and CPU-first; moving one means moving every tensor it holds
        for obj in [self] + [layer for _, layer in self.named_layers()]:
            for k, v in list(vars(obj).items()):
                if isinstance(v, torch.Tensor) and v.device != torch.device(device):
                    setattr(obj, k, v.detach().to(device).requires_grad_(v.requires_grad))
        self._relink()
        return self

    def _relink(self):
        pass

    def num_params(self):
        return sum(p.nelement() for p in self.parameters())

    def _require_grad(self):
        for p in self.parameters():
            p.requires_grad = True


def _wrap_linear(weight, bias):
    """A lecture Linear around tensors drawn elsewhere (the MLP draws them itself, in lecture order)."""
    layer = Linear.__new__(Linear)
    layer.weight, layer.bias = weight, bias
    return layer


def _wrap_embedding(weight):
    layer = Embedding.__new__(Embedding)
    layer.weight = weight
    return layer
