"""
Lectures 3 and 4: the Bengio MLP and the deep stack. Like every model here they
speak makemore's contract (core.models.layers.LectureModel writes it once):

    logits, loss = model(idx, targets=None)     # loss is None without targets
    model.get_block_size(); model.parameters(); model.named_parameters()
    model.train(); model.eval()

so training, evaluation and sampling never branch on the model type. Random
parameters are drawn from an explicit torch.Generator in the order the lecture
creates them, so a seed reproduces the lecture's numbers to the last digit.
The float operations are also the lecture's own (x @ W + b, not F.linear;
randn * (5/3) / fan_in**0.5 in that order): that is what makes them exact.
"""

import torch

from core.models.layers import (
    BatchNorm1d,
    BatchNormStd,
    Flatten,
    LectureModel,
    Linear,
    Tanh,
    _wrap_embedding,
    _wrap_linear,
    numbered,
)

# -----------------------------------------------------------------------------
# lectures 3-4: the Bengio MLP with its lecture-4 initialization fixes


class MLP(LectureModel):
    """
    C, W1, b1, W2, b2 drawn from the generator in that order, scaled as the preset
    says; with batchnorm=True b1 is not drawn at all (BatchNorm's own bias makes it
    redundant -- the lecture's final code comments it out, which changes the stream).
    """

    def __init__(self, vocab_size, block_size=3, n_embd=10, n_hidden=200, generator=None,
                 w1_scale=1.0, w1_kaiming=False, b1_scale=1.0, w2_scale=1.0, b2_scale=1.0,
                 batchnorm=False):
        g = generator
        self.block_size = block_size
        fan_in = n_embd * block_size
        self.C = torch.randn((vocab_size, n_embd), generator=g)
        W1 = torch.randn((fan_in, n_hidden), generator=g)
        if w1_kaiming:
            W1 = W1 * w1_scale / fan_in**0.5  # (5/3)/((n_embd * block_size)**0.5), in the lecture's order
        elif w1_scale != 1.0:
            W1 = W1 * w1_scale
        self.W1 = W1
        self.b1 = None
        if not batchnorm:
            b1 = torch.randn(n_hidden, generator=g)
            self.b1 = b1 * b1_scale if b1_scale != 1.0 else b1
        W2 = torch.randn((n_hidden, vocab_size), generator=g)
        self.W2 = W2 * w2_scale if w2_scale != 1.0 else W2
        b2 = torch.randn(vocab_size, generator=g)
        self.b2 = b2 * b2_scale if b2_scale != 1.0 else b2
        self.bn = BatchNormStd(n_hidden) if batchnorm else None
        self._relink()
        self._require_grad()

    def _relink(self):
        # the layers wrap C, W1, b1, W2, b2 (rebuilt after .to() moved them)
        layers = [("emb", _wrap_embedding(self.C)), ("embcat", Flatten()),
                  ("hpreact", _wrap_linear(self.W1, self.b1))]
        if self.bn is not None:
            layers.append(("batchnorm", self.bn))
        layers += [("h", Tanh()), ("logits", _wrap_linear(self.W2, self.b2))]
        self.layers = layers

    def named_parameters(self):
        named = [("C", self.C), ("W1", self.W1)]
        if self.b1 is not None:
            named.append(("b1", self.b1))
        named += [("W2", self.W2), ("b2", self.b2)]
        if self.bn is not None:
            named += self.bn.named_parameters()
        return named


# -----------------------------------------------------------------------------
# lecture 4, second half: the deep stack of Linear / BatchNorm1d / Tanh


class Deep(LectureModel):
    """
    C, then Linear(30, 100) and four Linear(100, 100), each optionally followed by
    BatchNorm1d and Tanh, then Linear(100, vocab) (+ BatchNorm1d). With BatchNorm the
    last BatchNorm's gamma is scaled by 0.1, else the last Linear's weight; every
    other Linear weight is multiplied by the gain -- including, with BatchNorm, the
    last Linear, because the lecture loops over layers[:-1].
    """

    def __init__(self, vocab_size, block_size=3, n_embd=10, n_hidden=100, n_layer=5,
                 gain=5 / 3, batchnorm=True, tanh=True, generator=None):
        g = generator
        self.block_size = block_size
        self.C = torch.randn((vocab_size, n_embd), generator=g)
        layers = []
        dims = [n_embd * block_size] + [n_hidden] * n_layer
        for fan_in, fan_out in zip(dims, dims[1:]):
            layers.append(Linear(fan_in, fan_out, bias=not batchnorm, generator=g))
            if batchnorm:
                layers.append(BatchNorm1d(fan_out))
            if tanh:
                layers.append(Tanh())
        layers.append(Linear(n_hidden, vocab_size, bias=not batchnorm, generator=g))
        if batchnorm:
            layers.append(BatchNorm1d(vocab_size))
        with torch.no_grad():
            if batchnorm:
                layers[-1].gamma *= 0.1  # last layer: make less confident
            else:
                layers[-1].weight *= 0.1
            for layer in layers[:-1]:  # all other layers: apply gain
                if isinstance(layer, Linear):
                    layer.weight *= gain
        self.layers = numbered(layers)
        self._require_grad()

    def named_parameters(self):
        return [("C", self.C)] + super().named_parameters()

    def embed(self, idx):
        # the lecture looks C up outside its list of layers: emb = C[Xb]; x = emb.view(emb.shape[0], -1)
        emb = self.C[idx]  # (B, block_size, n_embd)
        return emb.view(emb.shape[0], -1)  # concatenate the vectors
