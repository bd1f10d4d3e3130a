"""
A job spec -> a ready-to-train Run. This (with the CLI) is where core meets data/:
the dataset is loaded here and only tensors and a batch function go on into core.

A spec is plain JSON, so it can be stored with a run, put in a URL, and sent to a
worker process:

    {"model": "mlp", "preset": "raw",                   # a lecture scenario
     "model_kw": {"n_hidden": 200},                     # overrides of the preset's model arguments
     "train": {"steps": 20000, "lr": 0.1, ...},         # overrides of its TrainConfig
                                                        # ("lre_sweep": [-3, 0]: lecture 3's lr finder)
     "data": {"kind": "ssa"} | {"kind": "file", "path": "..."},
     "device": "cpu",
     "interventions": ["500:scale:W1:0.5"],             # optional: core.training.interventions
     "hold_test": true}                                 # optional: no test loss (an experiment's trial)

Lecture 1's moons MLP on micrograd's engine is a run kind of its own (core.runs.micrograd_worker):

    {"model": "micrograd", "train": {"optimizer": "sgd" | "adamw", "steps": 100, "lr": 1.0, "seed": 1337}}

check_spec() refuses bad numbers with a message a page can show as is.
"""

import math

import torch

import data
from core.doctor import bugs, variants
from core.micrograd.live import moons_config
from core.micrograd.moons import demo_model
from core.models.build import build_model
from core.models.inspector import time_per_1000_steps
from core.models.presets import TrainConfig, get_preset, train_config
from core.training import interventions
from core.training.loop import TensorBatches, TextBatches, pick_device

MAX_PARAMS = 12_000_000  # the lecture's full GPT (10.8M) fits; beyond that a CPU machine only suffers

# model arguments a page may change, with their allowed ranges (ints unless a float range)
MODEL_KW = {
    "n_embd": (1, 1024), "n_hidden": (1, 4096), "n_layer": (0, 24), "n_head": (1, 32),
    "block_size": (1, 512), "gain": (1e-3, 100.0), "dropout": (0.0, 0.9),
}
BOOL_KW = ("batchnorm", "tanh")
CONTEXT_MODELS = ("gpt", "mlp", "deep")  # block_size may change; WaveNet's is fixed by its FlattenConsecutive hierarchy
TRAIN_KW = {
    "steps": (0, 10_000_000), "batch_size": (0, 65_536), "lr": (1e-8, 1e6), "lr_decay_step": (0, 10_000_000),
    "lr_final": (0.0, 1e6), "capture_every": (0, 10_000_000), "eval_every": (0, 10_000_000),
    "eval_iters": (0, 10_000), "seed": (0, 2**63 - 1),
}


class SpecError(ValueError):
    """A job spec a page or a user got wrong; the message says what and how to fix it."""


def _check_number(name, v, lo, hi, integer):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{name} must be a number (got {v!r}).")
    if not math.isfinite(v):
        raise SpecError(f"{name} must be a finite number (got {v}).")
    if integer and v != int(v):
        raise SpecError(f"{name} must be a whole number (got {v}).")
    if not lo <= v <= hi:
        raise SpecError(f"{name} must be between {lo:g} and {hi:g} (got {v:g}).")


MICROGRAD_KW = {"steps": (1, 100_000), "lr": (1e-6, 100.0), "seed": (0, 2**32 - 1)}


def check_micrograd(spec):
    """Lecture 1's run kind: its numbers checked; returns its core.micrograd.live.MoonsConfig. Raises SpecError."""
    train = spec.get("train", {})
    for k, v in train.items():
        if k in MICROGRAD_KW:
            _check_number(k, v, *MICROGRAD_KW[k], integer=k != "lr")
    try:
        return moons_config(**train)
    except ValueError as e:
        raise SpecError(str(e)) from None


def check_spec(spec):
    """Validate a spec's shape and numbers; returns (preset, TrainConfig); for micrograd's run kind
    (None, MoonsConfig). Raises SpecError."""
    if spec.get("model") == "micrograd":
        return None, check_micrograd(spec)
    try:
        preset = get_preset(spec.get("model"), spec.get("preset"))
    except ValueError as e:
        raise SpecError(str(e)) from None
    for k, v in spec.get("model_kw", {}).items():
        if k in BOOL_KW:
            if not isinstance(v, bool):
                raise SpecError(f"{k} must be true or false (got {v!r}).")
        elif k in MODEL_KW:
            lo, hi = MODEL_KW[k]
            _check_number(k, v, lo, hi, integer=isinstance(lo, int) and k not in ("gain", "dropout"))
        else:
            raise SpecError(f"unknown model setting {k!r}")
    for k, v in spec.get("train", {}).items():
        if k == "optimizer":
            if v not in ("sgd", "adamw"):
                raise SpecError(f"optimizer must be sgd or adamw (got {v!r}).")
            continue
        if k == "backward":
            if v not in ("autograd", "manual"):
                raise SpecError(f"backward must be autograd or manual (got {v!r}).")
            if v == "manual" and preset.model != "ninja":
                raise SpecError("a manual backward is written for the backprop-ninja network only (model ninja).")
            continue
        if k == "lre_sweep":  # lecture 3's lr finder: [lo, hi] exponents of 10
            if not isinstance(v, (list, tuple)) or len(v) not in (0, 2):
                raise SpecError(f"lre_sweep must be two exponents [lo, hi], e.g. [-3, 0] (got {v!r}).")
            for name, x in zip(("lre_sweep low", "lre_sweep high"), v):
                _check_number(name, x, -10.0, 3.0, integer=False)
            if v and not v[0] < v[1]:
                raise SpecError(f"lre_sweep goes from low to high (got {list(v)}).")
            continue
        if k not in TRAIN_KW:
            raise SpecError(f"unknown training setting {k!r}")
        lo, hi = TRAIN_KW[k]
        _check_number(k, v, lo, hi, integer=isinstance(TrainConfig.__dataclass_fields__[k].default, int))
    kw = spec.get("model_kw", {})
    if preset.model == "gpt" and kw.get("n_embd", preset.kwargs.get("n_embd")) % kw.get(
            "n_head", preset.kwargs.get("n_head")):
        raise SpecError("n_embd must be a multiple of the number of heads (each head gets n_embd // n_head).")
    if kw.get("n_layer", preset.kwargs.get("n_layer")) == 0 and preset.model != "gpt":
        raise SpecError("n_layer must be at least 1 (only the GPT has a bigram step with no layers).")
    if "gain" in kw and preset.model != "deep":
        raise SpecError("gain applies to the deep stack only.")
    if "block_size" in kw and preset.model not in CONTEXT_MODELS:
        raise SpecError(f"block_size applies to {', '.join(CONTEXT_MODELS)} only.")
    cfg = train_config(preset, **spec.get("train", {}))
    if cfg.lre_sweep and cfg.steps < 2:
        raise SpecError("a learning-rate sweep needs at least 2 steps (the lecture's has 1,000).")
    if cfg.batch_size == 0 and preset.model not in ("bigram-nn",):
        raise SpecError("batch size 0 (the full training set) is only for the neural bigram.")
    if preset.model in ("mlp", "deep", "wavenet", "ninja", "gpt") and cfg.batch_size < 1:
        raise SpecError("batch size must be at least 1.")
    try:  # "interventions": ["500:scale:W1:0.5", ...] or [{step, action, args}]; layer names: in build_job
        plan = interventions.from_list(spec.get("interventions"))
    except interventions.InterventionError as e:
        raise SpecError(str(e)) from None
    if plan and plan[-1].step >= cfg.steps:
        raise SpecError(f"intervention {plan[-1].step}:{plan[-1].command()} comes after the run's last step "
                        f"({max(cfg.steps - 1, 0):,})")
    _check_data_size(preset, kw, spec.get("data") or {})
    if spec.get("bug") is not None:  # "bug": one of the six mistakes planted in a lecture model (core.doctor.bugs)
        try:
            bugs.bug_for(spec["bug"], preset.model, preset.name)
        except bugs.BugError as e:
            raise SpecError(str(e)) from None
    return preset, cfg


def _check_data_size(preset, kw, src):
    """A page's sidebar counts a file's words ("n") and characters ("chars"): a file too small for the
    model's split is refused before a worker starts. build_job checks the loaded dataset itself."""
    try:
        if preset.model == "gpt" and src.get("chars") is not None:
            data.check_char_count(src["chars"], kw.get("block_size", preset.block_size), src.get("name", "the file"))
        elif (preset.model not in ("bigram", "bigram-nn", "gpt") and src.get("n") is not None
              and not src.get("words_error")):
            data.check_word_count(src["n"], src.get("name", "the file"))
    except data.DataError as e:
        raise SpecError(str(e)) from None


def count_params(spec, vocab_size=27):
    """Parameters of the spec's model, counted on the meta device: no memory, even for a huge request."""
    preset, cfg = check_spec(spec)
    if preset is None:  # micrograd's MLP(2, [16, 16, 1]): 337 Values
        return len(demo_model(cfg.seed).parameters())
    with torch.device("meta"):
        model, _ = build_model(preset, vocab_size, cfg.seed, **spec.get("model_kw", {}))
    n = model.num_params()
    if n > MAX_PARAMS:
        raise SpecError(f"this model would have {n:,} parameters, over the cap of {MAX_PARAMS:,}; "
                        "make it smaller (n_embd, n_hidden, n_layer).")
    return n


def load_data(model, source, block_size):
    """The dataset a spec names (DataError from data/ on bad input)."""
    source = source or {"kind": "ssa"}
    kind = source.get("kind", "ssa")
    if kind not in ("ssa", "file"):
        raise SpecError(f"unknown data source {kind!r}")
    path = source.get("path") if kind == "file" else None
    name = source.get("name") or (path or "SSA names")
    if model == "gpt":
        text = data.load_text(path) if path else "\n".join(data.default_words()) + "\n"
        return data.TextDataset(text, block_size, name=name)
    words = data.load_words(path) if path else data.default_words()
    return data.WordsDataset(words, block_size, name=name)


def build_job(spec, dataset=None):
    """
    Everything a Run needs, from a spec: (model, batches, cfg, probe, info, dataset).
    `dataset` may be passed in when the caller already loaded it. The probe is a fixed batch
    for the saturation raster: the first 32 dev examples (GPT: a seeded val batch).
    """

    preset, cfg = check_spec(spec)
    kw = dict(spec.get("model_kw", {}))
    block_size = kw.get("block_size", preset.block_size) if preset.model in CONTEXT_MODELS else preset.block_size
    ds = dataset if dataset is not None else load_data(preset.model, spec.get("data"), block_size)
    if preset.model not in ("bigram", "bigram-nn", "gpt"):
        ds.check_split()  # Xtr, Xdev and Xte each need a word: a tiny file is refused here, not inside torch
    device = pick_device(spec.get("device", "cpu"))
    model, g = build_model(preset, ds.vocab_size, cfg.seed, **kw)
    if spec.get("bug") is not None:
        model = variants.plant(spec["bug"], model, cfg.seed)
    try:
        for iv in interventions.from_list(spec.get("interventions")):
            interventions.check(model, iv)
    except interventions.InterventionError as e:
        raise SpecError(str(e)) from None
    nparams = model.num_params()
    if nparams > MAX_PARAMS:
        raise SpecError(f"this model has {nparams:,} parameters, over the cap of {MAX_PARAMS:,}; "
                        "make it smaller (n_embd, n_hidden, n_layer).")
    probe = None
    if preset.model == "bigram-nn":
        xs, ys = data.bigrams(ds.words, ds.stoi)
        batches = TensorBatches({"train": (xs, ys)}, 0, g, device)
    elif preset.model == "gpt":
        batches = TextBatches(lambda split: ds.get_batch(split, cfg.batch_size), cfg.eval_iters or 200, device)
        X, _ = ds.get_batch("val", 4, generator=torch.Generator().manual_seed(cfg.seed))
        probe = X.to(device)
    else:
        splits = {"train": (ds.Xtr, ds.Ytr), "val": (ds.Xdev, ds.Ydev), "test": (ds.Xte, ds.Yte)}
        if spec.get("hold_test"):  # an experiment's trial: the test split is looked at once, later (core.experiments)
            del splits["test"]
        batches = TensorBatches(splits, cfg.batch_size, g, device)
        if preset.model != "bigram":
            probe = ds.Xdev[:32].to(device)
    if device != "cpu":
        model.to(device)
    info = dict(model=preset.model, preset=preset.name, params=nparams, vocab_size=ds.vocab_size,
                expected_init_loss=math.log(ds.vocab_size), dataset=ds.describe(), device=device,
                batchnorm=interventions.has_batchnorm(model),
                chars=[ds.itos[i] for i in range(ds.vocab_size)], block_size=block_size,
                steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, eval_every=cfg.eval_every)
    return model, batches, cfg, probe, info, ds



def fresh_model(spec, vocab_size=27):
    """(model, block_size): the spec's model as a run would start it, without touching the caller's
    global RNG (GPT's build seeds it, as the lecture's torch.manual_seed(1337) does)."""
    preset, cfg = check_spec(spec)
    kw = dict(spec.get("model_kw", {}))
    block_size = kw.get("block_size", preset.block_size) if preset.model in CONTEXT_MODELS else preset.block_size
    rng = torch.get_rng_state()
    try:
        model, _ = build_model(preset, vocab_size, cfg.seed, **kw)
    finally:
        torch.set_rng_state(rng)
    return model, block_size


def seconds_per_1000_steps(spec, vocab_size=27, budget=1.5):
    """How long 1,000 steps of the spec's model take here (one torch thread, as a worker trains),
    measured on a fresh copy with random batches for about `budget` seconds."""
    _, cfg = check_spec(spec)
    model, block_size = fresh_model(spec, vocab_size)
    return time_per_1000_steps(model, cfg.batch_size, block_size, vocab_size, cfg, budget=budget)
