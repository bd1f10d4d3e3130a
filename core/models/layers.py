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
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# the layers


class Layer:
    """What every lecture layer shares: its trained tensors, listed by attribute name."""

    params = ()  # attributes trained with backprop, in the lecture's order (None = absent, e.g. no bias)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_parameters(self):
        return [(name, getattr(self, name)) for name in self.params if getattr(self, name) is not None]


class Linear(Layer):

    params = ("weight", "bias")

    def __init__(self, fan_in, fan_out, bias=True, generator=None):
        self.weight = torch.randn((fan_in, fan_out), generator=generator) / fan_in**0.5  # kaiming-ish
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out


class BatchNorm1d(Layer):
    """
    Lecture 4's BatchNorm1d, with lecture 6's fix: a 3-D input is normalized over
    dims (0, 1). dim0_only=True is the lecture's first hierarchical WaveNet, whose
    3-D input was averaged over dim 0 only (the bug the lecture then finds).

    The lectures' other BatchNorms (BatchNormStd here, NinjaBatchNorm in ninja.py)
    subclass it and replace only what their videos wrote differently: the batch
    statistics and the normalization's float operations, which the lectures'
    printed numbers depend on to the last digit. Train/eval and the running
    'momentum update' are this class's.
    """

    params = ("gamma", "beta")
    buffers = ("running_mean", "running_var")  # the running statistics, the names the recorder saves and restores

    def __init__(self, dim, eps=1e-5, momentum=0.1, dim0_only=False):
        self.eps = eps
        self.momentum = momentum
        self.dim0_only = dim0_only
        self.training = True
        # parameters (trained with backprop)
        self.gamma = torch.ones(dim)
        self.beta = torch.zeros(dim)
        # buffers (trained with a running 'momentum update')
        self.running_mean = torch.zeros(dim)
        self.running_var = torch.ones(dim)

    def __call__(self, x):
        if self.training:
            stats = self.batch_stats(x)
            with torch.no_grad():
                m = self.momentum
                for name, batch in zip(self.buffers, stats):
                    setattr(self, name, (1 - m) * getattr(self, name) + m * batch)
        else:
            stats = [getattr(self, name) for name in self.buffers]
        self.out = self.normalize(x, *stats)
        return self.out

    def batch_stats(self, x):
        dim = 0 if x.ndim == 2 or self.dim0_only else (0, 1)
        return x.mean(dim, keepdim=True), x.var(dim, keepdim=True)  # batch mean, batch variance

    def normalize(self, x, xmean, xvar):
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)  # normalize to unit variance
        return self.gamma * xhat + self.beta


class BatchNormStd(BatchNorm1d):
    """
    The BatchNorm of lecture 4's first half, written inline in the video as
    bngain * (hpreact - bnmeani) / bnstdi + bnbias: it divides by the batch std
    (no eps) and keeps running mean/std with momentum 0.001.
    """

    params = ("bngain", "bnbias")
    buffers = ("bnmean_running", "bnstd_running")

    def __init__(self, dim, momentum=0.001):
        self.momentum = momentum
        self.training = True
        self.bngain, self.bnbias = torch.ones((1, dim)), torch.zeros((1, dim))
        self.bnmean_running, self.bnstd_running = torch.zeros((1, dim)), torch.ones((1, dim))

    def batch_stats(self, hpreact):
        return hpreact.mean(0, keepdim=True), hpreact.std(0, keepdim=True)  # bnmeani, bnstdi

    def normalize(self, hpreact, bnmean, bnstd):
        return self.bngain * (hpreact - bnmean) / bnstd + self.bnbias


class Tanh(Layer):

    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out


class Embedding(Layer):

    params = ("weight",)

    def __init__(self, num_embeddings, embedding_dim, generator=None):
        self.weight = torch.randn((num_embeddings, embedding_dim), generator=generator)

    def __call__(self, IX):
        self.out = self.weight[IX]
        return self.out


class Flatten(Layer):

    def __call__(self, x):
        self.out = x.view(x.shape[0], -1)
        return self.out


class FlattenConsecutive(Layer):
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


def _wrap_linear(weight, bias):
    """A lecture Linear around tensors drawn elsewhere (the MLP draws them itself, in lecture order)."""
    layer = Linear.__new__(Linear)
    layer.weight, layer.bias = weight, bias
    return layer


def _wrap_embedding(weight):
    layer = Embedding.__new__(Embedding)
    layer.weight = weight
    return layer


def numbered(layers):
    """(name, layer) pairs named as lecture 6 prints its layers: '3 BatchNorm1d'."""
    return [(f"{i} {type(layer).__name__}", layer) for i, layer in enumerate(layers)]

# -----------------------------------------------------------------------------
# a learner's own layers, as core.watch and core.doctor take them: read by what they do, never by their class


class NotLayers(ValueError):
    """A target that is no list of lecture-style layers; the message says what it is and what to pass."""


def listed_layers(target, who, verb, usage):
    """(name, layer) pairs of a lecture-style target in forward order: a {name: layer} dict, lecture 6's
    Sequential (its .layers), or any iterable of layers, named as lecture 6 prints them. NotLayers, worded for
    `who` ("watch()") doing `verb` ("watch") with `usage` as the fix, when the target is none of these."""
    if isinstance(target, dict):
        named = list(target.items())
    elif isinstance(getattr(target, "layers", None), (list, tuple)) and callable(target):
        named = numbered(target.layers)
    else:
        try:
            named = numbered(list(target))
        except TypeError:
            raise NotLayers(f"{who} takes an nn.Module, a list of the lecture's layers or a {{name: layer}} dict, "
                            f"not a {type(target).__name__}") from None
    if not named:
        raise NotLayers(f"the list of layers is empty: nothing to {verb}")
    for name, layer in named:
        if isinstance(layer, torch.Tensor):
            raise NotLayers(f"{who} takes the layers, not their parameters: {usage}")
        if not callable(layer):
            raise NotLayers(f"layer {name!r} is a {type(layer).__name__}, which cannot be called: a lecture layer "
                            "has __call__, keeps its output in .out and lists its tensors in .parameters()")
    return named


def opened(named):
    """(name, layer) pairs with lecture 6's Sequential (its .layers) opened up, named '3.1 Tanh'."""
    out = []
    for name, layer in named:
        inner = getattr(layer, "layers", None)
        if isinstance(inner, (list, tuple)) and not isinstance(layer, torch.nn.Module) and not _pairs(inner):
            out += opened((f"{name}.{j} {type(c).__name__}", c) for j, c in enumerate(inner))
        else:
            out.append((name, layer))
    return out


def _pairs(items):
    """A LectureModel's own layers are (name, layer) pairs already: not a Sequential to open."""
    return bool(items) and all(isinstance(x, tuple) and len(x) == 2 for x in items)


def layer_params(layer):
    ps = getattr(layer, "parameters", None)
    return list(ps()) if callable(ps) else []


def param_names(layers):
    """id(parameter) -> a name from its layer: '0 Linear.weight' (the attribute that holds it), else '.0'."""
    names = {}
    for lname, layer in layers:
        attrs = {id(v): k for k, v in vars(layer).items() if isinstance(v, torch.Tensor)} \
            if hasattr(layer, "__dict__") else {}
        for j, p in enumerate(layer_params(layer)):
            names.setdefault(id(p), f"{lname}.{attrs.get(id(p), j)}")
    return names


def named_params(layers):
    """The layers' .parameters(), named (param_names), in list order, each once."""
    names, out, seen = param_names(layers), [], set()
    for _, layer in layers:
        for p in layer_params(layer):
            if id(p) not in seen:
                seen.add(id(p))
                out.append((names[id(p)], p))
    return out

# -----------------------------------------------------------------------------
# the lecture-style (non nn.Module) models: makemore's contract over a list of layers


class LectureModel:
    """
    Base of the from-scratch models: (name, layer) pairs run in order, each keeping
    its .out; logits, loss = model(idx, targets=None).
    """

    layers = ()  # (name, layer) pairs in forward order; the recorder reads their .out

    def __call__(self, idx, targets=None):
        return self.forward(idx, targets)

    def embed(self, idx):
        """What the first layer reads: idx itself, unless the model embeds outside its layers (Deep)."""
        return idx

    def forward(self, idx, targets=None):
        x = self.embed(idx)
        for _, layer in self.layers:
            x = layer(x)
        logits = x
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def get_block_size(self):
        return self.block_size

    def named_parameters(self):
        return [(f"{name}.{pname}", p) for name, layer in self.layers for pname, p in layer.named_parameters()]

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
        """Rebuild layers that wrap the model's own tensors (MLP), after .to() replaced those tensors."""

    def num_params(self):
        return sum(p.nelement() for p in self.parameters())

    def _require_grad(self):
        for p in self.parameters():
            p.requires_grad = True
