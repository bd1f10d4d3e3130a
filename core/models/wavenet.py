"""
Lecture 6's WaveNet: FlattenConsecutive pairs characters up a hierarchy.
"""

import math

import torch
import torch.nn.functional as F

from core.models.layers import (
    BatchNorm1d,
    Embedding,
    FlattenConsecutive,
    LectureModel,
    Linear,
    Sequential,
    Tanh,
)

# -----------------------------------------------------------------------------
# lecture 6: WaveNet-style hierarchy


class WaveNet(LectureModel):
    """
    Embedding, then groups of FlattenConsecutive(n) -> Linear -> BatchNorm1d -> Tanh,
    then Linear to the vocabulary with its weight scaled by 0.1. flatten=(8,) is the
    lecture's flat context-8 MLP; (2, 2, 2) the hierarchy. bn_dims3d=0 reproduces the
    lecture's first hierarchical run, whose BatchNorm averaged over dim 0 only (the bug).
    """

    def __init__(self, vocab_size, block_size=8, n_embd=24, n_hidden=128, flatten=(2, 2, 2),
                 generator=None, bn_fixed=True):
        if math.prod(flatten) != block_size:
            raise ValueError(f"the flatten factors {flatten} must multiply to block_size {block_size}")
        g = generator
        self.block_size = block_size
        layers = [Embedding(vocab_size, n_embd, generator=g)]
        width = n_embd
        for n in flatten:
            bn = BatchNorm1d(n_hidden)
            if not bn_fixed:
                bn = _Dim0BatchNorm1d(n_hidden)
            layers += [FlattenConsecutive(n), Linear(width * n, n_hidden, bias=False, generator=g), bn, Tanh()]
            width = n_hidden
        layers.append(Linear(n_hidden, vocab_size, generator=g))
        with torch.no_grad():
            layers[-1].weight *= 0.1  # last layer make less confident
        self.model = Sequential(layers)
        self.layers = [(f"{i} {type(layer).__name__.lstrip('_').replace('Dim0', '')}", layer)
                       for i, layer in enumerate(layers)]
        self._require_grad()

    def named_parameters(self):
        named = []
        for name, layer in self.layers:
            for pname, p in getattr(layer, "named_parameters", lambda: [])():
                named.append((f"{name}.{pname}", p))
        return named

    def forward(self, idx, targets=None):
        logits = self.model(idx)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def get_block_size(self):
        return self.block_size


class _Dim0BatchNorm1d(BatchNorm1d):
    """The lecture's hierarchical run before the fix: 3-D input averaged over dim 0 only."""

    def __call__(self, x):
        if self.training:
            xmean = x.mean(0, keepdim=True)
            xvar = x.var(0, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)
        self.out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out
