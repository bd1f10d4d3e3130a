"""
Lecture 6's WaveNet: FlattenConsecutive pairs characters up a hierarchy.
"""

import math

import torch

from core.models.layers import (
    BatchNorm1d,
    Embedding,
    FlattenConsecutive,
    LectureModel,
    Linear,
    Tanh,
    numbered,
)

# -----------------------------------------------------------------------------
# lecture 6: WaveNet-style hierarchy


class WaveNet(LectureModel):
    """
    Embedding, then groups of FlattenConsecutive(n) -> Linear -> BatchNorm1d -> Tanh,
    then Linear to the vocabulary with its weight scaled by 0.1. flatten=(8,) is the
    lecture's flat context-8 MLP; (2, 2, 2) the hierarchy. bn_fixed=False reproduces
    the lecture's first hierarchical run, whose BatchNorm averaged over dim 0 only (the bug).
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
            layers += [FlattenConsecutive(n), Linear(width * n, n_hidden, bias=False, generator=g),
                       BatchNorm1d(n_hidden, dim0_only=not bn_fixed), Tanh()]
            width = n_hidden
        layers.append(Linear(n_hidden, vocab_size, generator=g))
        with torch.no_grad():
            layers[-1].weight *= 0.1  # last layer make less confident
        self.layers = numbered(layers)
        self._require_grad()
