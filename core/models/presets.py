"""
The lectures' scenarios as small, commented objects: which model, how it is
initialized, how it is trained, and what a learner should see.
"""

from dataclasses import dataclass, field
from functools import lru_cache

MAKEMORE_SEED = 2147483647  # torch.Generator().manual_seed(...) in lectures 2-5
WAVENET_SEED = 42           # torch.manual_seed(42) in lecture 6
GPT_SEED = 1337             # torch.manual_seed(1337) in lecture 7


@dataclass
class TrainConfig:
    steps: int = 200_000          # max_steps
    batch_size: int = 32          # examples per step; 0 = the whole training set (lecture 2)
    lr: float = 0.1               # learning rate at step 0
    lr_decay_step: int = 100_000  # step at which lr drops to lr_final (0 = never)
    lr_final: float = 0.01        # learning rate after the decay
    optimizer: str = "sgd"        # "sgd" is the lectures' p.data += -lr * p.grad; "adamw" for GPT
    backward: str = "autograd"    # "autograd" is loss.backward(); "manual" is lecture 5's by-hand backward
    eval_every: int = 0           # estimate train/val loss every this many steps (0 = only at the end)
    eval_iters: int = 0           # GPT's estimate_loss: batches averaged (0 = the full split)
    capture_every: int = 100      # record histograms and ratios every k steps (0 = off)
    seed: int = MAKEMORE_SEED     # parameters and batches are drawn from a generator with this seed
    lre_sweep: tuple = ()         # (lo, hi): lecture 3's learning-rate finder, lr at step i = lrs[i] (see lr_sweep)

    def lr_at(self, i):
        if self.lre_sweep:
            return lr_sweep(*self.lre_sweep, self.steps)[1][i]
        if self.lr_decay_step and i >= self.lr_decay_step:
            return self.lr_final
        return self.lr


@lru_cache(maxsize=4)
def lr_sweep(lo, hi, steps):
    """Lecture 3: lre = torch.linspace(-3, 0, 1000); lrs = 10**lre -- in float32, as the lecture
    computes them, so the rate at step i is the lecture's to the last digit. Returns (lre, lrs) as lists."""
    import torch  # here, not at the top: the CLI reads presets to parse its arguments, before torch loads
    lre = torch.linspace(lo, hi, steps)
    lrs = 10**lre
    return lre.tolist(), lrs.tolist()


@dataclass
class Preset:
    model: str                      # "bigram", "bigram-nn", "mlp", "deep", "wavenet", "ninja", "gpt"
    name: str
    note: str                       # what the learner should see
    kwargs: dict = field(default_factory=dict)   # model constructor arguments
    train: dict = field(default_factory=dict)    # TrainConfig overrides
    block_size: int = 3
    expected: dict = field(default_factory=dict)  # the lecture's numbers on its data: params, train, val


# lecture 4, first half: C, W1, b1, W2, b2 and the fixes one after another
_mlp = dict(n_embd=10, n_hidden=200)


def _wavenet(name, note, params, train, val, **kwargs):
    """Lecture 6: block_size 8, seed 42, SGD 0.1 -> 0.01 at 150,000 of 200,000 steps; val estimated every
    10,000 steps (eval mode reads BatchNorm's running stats and draws nothing random: the run is unchanged)."""
    return Preset("wavenet", name, note, kwargs=kwargs, block_size=8,
                  train=dict(lr_decay_step=150_000, seed=WAVENET_SEED, eval_every=10_000),
                  expected=dict(params=params, train=train, val=val))


# lecture 7: 5,000 steps of AdamW at a constant rate, estimate_loss over 200 batches every 500 steps
_gpt_train = dict(steps=5000, lr_decay_step=0, optimizer="adamw", eval_every=500, eval_iters=200, seed=GPT_SEED)


def _gpt_step(name, note, val, **kwargs):
    """Lecture 7, building the Transformer step by step on tiny Shakespeare with the lecture's CPU-sized
    settings (batch 32, block 8, n_embd 32, lr 1e-3) and the video's init, before gpt.py's 0.02."""
    return Preset("gpt", name, note, kwargs={"n_embd": 32, "n_head": 4, "dropout": 0.0, "torch_init": True, **kwargs},
                  train=dict(_gpt_train, batch_size=32, lr=1e-3, capture_every=100), block_size=8,
                  expected=dict(val=val))
PRESETS = {
    "bigram": {
        "default": Preset("bigram", "default", "Counts with +1 smoothing: average NLL 2.454 on names.txt.",
                          kwargs=dict(smoothing=1.0), train=dict(steps=0), block_size=1),
    },
    "bigram-nn": {
        "default": Preset("bigram-nn", "default",
                          "One-hot @ W trained full batch at lr 50; its loss approaches the count model's 2.45.",
                          train=dict(steps=100, batch_size=0, lr=50.0, lr_decay_step=0, capture_every=10,
                                     eval_every=0), block_size=1),
    },
    "mlp": {
        "raw": Preset("mlp", "raw",
                      "Everything randn: the softmax is confidently wrong (first loss ~27, not 3.3) "
                      "and most tanh units are saturated.", kwargs=dict(_mlp)),
        "fix-softmax": Preset("mlp", "fix-softmax",
                              "W2 * 0.01, b2 * 0: the first loss is ~3.32 = -ln(1/27); tanh is still saturated.",
                              kwargs=dict(_mlp, w2_scale=0.01, b2_scale=0.0)),
        "fix-tanh": Preset("mlp", "fix-tanh",
                           "Also W1 * 0.2, b1 * 0.01: hpreact is small, about 1% of units saturate.",
                           kwargs=dict(_mlp, w1_scale=0.2, b1_scale=0.01, w2_scale=0.01, b2_scale=0.0)),
        "kaiming": Preset("mlp", "kaiming",
                          "W1 * (5/3)/sqrt(fan_in): the principled gain for tanh, same result without a magic 0.2.",
                          kwargs=dict(_mlp, w1_scale=5 / 3, w1_kaiming=True, b1_scale=0.01,
                                      w2_scale=0.01, b2_scale=0.0)),
        "batchnorm": Preset("mlp", "batchnorm",
                            "BatchNorm before tanh: hpreact is unit gaussian at every step; no b1.",
                            kwargs=dict(_mlp, w1_scale=5 / 3, w1_kaiming=True, w2_scale=0.01, b2_scale=0.0,
                                        batchnorm=True)),
        # lecture 3: the same C, W1, b1, W2, b2 with plain randn (before lecture 4's fixes)
        "lecture3-2d": Preset("mlp", "lecture3-2d",
                              "Lecture 3's first net: each character a point in 2-D (n_embd 2, n_hidden 100, "
                              "3,481 parameters). Watch the embedding: the vowels drift together.",
                              kwargs=dict(n_embd=2, n_hidden=100), train=dict(eval_every=10_000)),
        "lecture3": Preset("mlp", "lecture3",
                           "Lecture 3's final net: n_embd 10, n_hidden 200 (11,897 parameters), 200,000 steps, "
                           "lr 0.1 then 0.01: train ~2.13, dev ~2.17 on names.txt.",
                           kwargs=dict(_mlp), train=dict(eval_every=10_000)),
    },
    "deep": {
        "deep-bn": Preset("deep", "deep-bn",
                          "The lecture's final stack: Linear/BatchNorm1d/Tanh x5; activations stay "
                          "near std 0.65, saturation ~2%, update:data ratios near 1e-3.",
                          kwargs=dict(gain=1.0, batchnorm=True, tanh=True),
                          train=dict(lr_decay_step=150_000)),
        "deep-tanh": Preset("deep", "deep-tanh",
                            "No BatchNorm, gain 5/3: the stack is held stable by the gain alone.",
                            kwargs=dict(gain=5 / 3, batchnorm=False, tanh=True),
                            train=dict(lr_decay_step=150_000)),
        "deep-linear": Preset("deep", "deep-linear",
                              "No tanh, no BatchNorm: a linear sandwich; with gain 1 activations keep their scale.",
                              kwargs=dict(gain=1.0, batchnorm=False, tanh=False),
                              train=dict(lr_decay_step=150_000)),
    },
    "wavenet": {
        # lecture 6's performance log, one preset a line (the lecture's params, train and val on names.txt)
        "flat8": _wavenet("flat8", "The MLP with 8 characters of context: 22,097 params, val ~2.027.",
                          22_097, 1.918, 2.027, n_embd=10, n_hidden=200, flatten=(8,)),
        "hierarchical": _wavenet("hierarchical", "Fuse 2 characters at a time, with the lecture's BatchNorm bug "
                                 "(3-D input averaged over dim 0 only): 22,397 params, val ~2.029.",
                                 22_397, 1.941, 2.029, n_embd=10, n_hidden=68, flatten=(2, 2, 2), bn_fixed=False),
        "bnfix": _wavenet("bnfix", "BatchNorm fixed to average over dims (0, 1): val ~2.022.",
                          22_397, 1.912, 2.022, n_embd=10, n_hidden=68, flatten=(2, 2, 2)),
        "scaled": _wavenet("scaled", "n_embd 24, n_hidden 128: 76,579 params, val 1.9937.",
                           76_579, 1.7690, 1.9936515092849731, n_embd=24, n_hidden=128, flatten=(2, 2, 2)),
    },
    # lecture 5: the backprop-ninja network (n_embd 10, n_hidden 64, BatchNorm, 4,137 params),
    # trained once with loss.backward() and once with the gradients written out by hand
    "ninja": {
        "manual": Preset("ninja", "manual",
                         "Exercise 4: no loss.backward() -- every gradient by hand (closed-form cross-entropy "
                         "and BatchNorm). Its loss tracks the autograd run's step for step.",
                         train=dict(backward="manual")),
        "autograd": Preset("ninja", "autograd",
                           "The same network, data order and updates, with loss.backward(): the oracle "
                           "the manual run is compared with."),
    },
    "gpt": {
        # the lecture's steps; expected val losses are the lecture's on tiny Shakespeare
        "bigram": _gpt_step("bigram", "Bigram only: token + position embeddings straight into lm_head. Each "
                            "character predicts the next on its own; no attention to map. Val ~2.49 (measured "
                            "here: the lecture does not print this one).",
                            2.49, n_layer=0, residual=False),
        "one-head": _gpt_step("one-head", "One head of self-attention (head_size = n_embd = 32): characters start "
                              "to talk to the past, val ~2.4-2.5.",
                              2.5, n_head=1, n_layer=1, residual=False, ffwd=False),
        "four-heads": _gpt_step("four-heads", "Multi-head attention, 4 heads of 8 in parallel, concatenated: "
                                "val ~2.28.",
                                2.28, n_layer=1, residual=False, ffwd=False),
        "ffwd": _gpt_step("ffwd", "+ a feed-forward layer (Linear, ReLU) after attention: tokens 'think' on what "
                          "they gathered, val ~2.24.",
                          2.24, n_layer=1, residual=False),
        "blocks": _gpt_step("blocks", "3 Blocks with residual connections and LayerNorm (projections, 4x "
                            "feed-forward): deep enough to need them, val ~2.06.",
                            2.06, n_layer=3),
        "small": Preset("gpt", "small",
                        "A CPU-sized Transformer: n_embd 64, 4 heads, 4 layers, block 32 (~200k params).",
                        kwargs=dict(n_embd=64, n_head=4, n_layer=4, dropout=0.0),
                        train=dict(_gpt_train, batch_size=16, lr=1e-3, capture_every=50), block_size=32),
        "full": Preset("gpt", "full",
                       "The lecture's full model: n_embd 384, 6 heads, 6 layers, block 256, dropout 0.2 "
                       "(10.8M params; needs a GPU, ~1.48 val loss on tiny Shakespeare).",
                       kwargs=dict(n_embd=384, n_head=6, n_layer=6, dropout=0.2),
                       train=dict(_gpt_train, batch_size=64, lr=3e-4, capture_every=50),
                       block_size=256, expected=dict(params=10_788_929, val=1.48)),
    },
}

DEFAULT_PRESET = {"bigram": "default", "bigram-nn": "default", "mlp": "kaiming", "deep": "deep-bn",
                  "wavenet": "scaled", "ninja": "manual",
                  "gpt": "small"}
MODELS = list(PRESETS)


def get_preset(model, preset=None):
    """The Preset for a model name and preset name (None = the model's default); ValueError names the choices."""
    if model not in PRESETS:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    preset = preset or DEFAULT_PRESET[model]
    if preset not in PRESETS[model]:
        raise ValueError(f"unknown preset {preset!r} for {model}; choose one of: {', '.join(PRESETS[model])}")
    return PRESETS[model][preset]


def train_config(preset, **overrides):
    """TrainConfig for a preset: the model's defaults, the preset's, then explicit overrides (None = keep)."""
    cfg = TrainConfig()
    for k, v in {**preset.train, **{k: v for k, v in overrides.items() if v is not None}}.items():
        setattr(cfg, k, v)
    return cfg
