"""
A preset's model, built with the lecture's seeding (core.models.presets says which; this makes it).
"""

import torch

from core.models.bigram import Bigram, BigramNN
from core.models.gpt import GPT
from core.models.mlp import MLP, Deep
from core.models.ninja import Ninja
from core.models.wavenet import WaveNet


def build_model(preset, vocab_size, seed, **overrides):
    """
    The preset's model with the lecture's seeding. Returns (model, generator): the
    makemore models keep drawing minibatch indices from the same generator after
    the parameters, exactly as the lectures do. GPT seeds the global RNG (the
    lecture's torch.manual_seed(1337)), which its nn.Linear init and dropout use.
    """
    kw = {**preset.kwargs, **{k: v for k, v in overrides.items() if v is not None}}
    g = torch.Generator().manual_seed(seed)
    m = preset.model
    if m == "bigram":
        return Bigram(vocab_size, **kw), g
    if m == "bigram-nn":
        return BigramNN(vocab_size, generator=g, **kw), g
    if m == "mlp":
        return MLP(vocab_size, block_size=kw.pop("block_size", preset.block_size), generator=g, **kw), g
    if m == "deep":
        return Deep(vocab_size, block_size=kw.pop("block_size", preset.block_size), generator=g, **kw), g
    if m == "wavenet":
        return WaveNet(vocab_size, block_size=preset.block_size, generator=g, **kw), g
    if m == "ninja":
        return Ninja(vocab_size, block_size=preset.block_size, generator=g, **kw), g
    if m == "gpt":
        torch.manual_seed(seed)
        kw.setdefault("block_size", preset.block_size)
        return GPT(vocab_size, **kw), g
    raise ValueError(f"unknown model {m!r}")
