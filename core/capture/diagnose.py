"""
Diagnosis in plain words: what lectures 3 and 4 teach a learner to read off the plots,
turned into findings with their evidence and a fix. Pure functions of recorded numbers
(the losses, Capture records, train/val estimates) and of the Subject -- the model the
findings speak about -- so a fix names that model's own layers and presets and never
recommends what is already running. The page, the CLI and the model doctor only show them.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from core.capture.record import COL
from core.models.presets import PRESETS

# thresholds, with the lecture's reasoning
SOFTMAX_MARGIN = 1.0       # first loss this far above -ln(1/V): the logits are confidently wrong
SATURATED_WARN = 35.0      # % of tanh outputs with |t| > 0.97; the Kaiming MLP drifts 17% -> 28% over 60k steps
SATURATED_BAD = 55.0       # the raw init has ~68%; the deep stack at gain 3 ~40-50%
DEAD_INFO, DEAD_WARN, DEAD_BAD = 0.0, 0.10, 0.25  # share of units dead for every probe example
GRAD_SPREAD = 10.0         # activation-gradient std first vs last layer: >10x apart = vanishing/exploding
UD_HIGH = -1.5             # log10 update:data; the lecture's rule of thumb is about -3
UD_LOW = -4.0
EXPLODING_STD = 100.0      # an unbounded activation (ReLU, LayerNorm, BatchNorm) with std > 100: exploding
BLOWUP_X = 3.0             # a loss window whose median is > 3x -ln(1/V) (and 2x the first loss): blew up
BN_TINY_BATCH = 8          # BatchNorm's batch statistics are noise below this
WINDOW = 5                 # captures a finding reads (their median), so a healthy run does not flip colour
OVERFIT_GAP = 0.05         # val above train by more than 5% of train: overfitting (lecture 3)
FIT_MIN_STEPS = 500        # before this, or before the loss is FIT_LEARNED below -ln(1/V), no verdict on fit
FIT_LEARNED = 0.3
SEVERITIES = ("error", "warn", "info", "ok")  # worst first


@dataclass
class Finding:
    id: str           # stable id, e.g. "softmax"
    severity: str     # one of SEVERITIES
    step: int         # the step whose numbers it reads
    title: str
    evidence: str
    fix: str = ""

    @property
    def text(self):
        return f"{self.title}: {self.evidence}"

    def to_dict(self):
        return dict(id=self.id, severity=self.severity, step=self.step, text=self.text, fix=self.fix,
                    title=self.title, evidence=self.evidence)


@dataclass
class Subject:
    """The model a diagnosis speaks about: a lecture model and its preset and settings, or (model None)
    a learner's own model, for which fixes name the layers the capture saw and the lecture's general rule."""
    model: str = None          # "mlp", "deep", "wavenet", "gpt", "ninja", "bigram-nn"; None = the learner's own
    preset: str = None
    vocab_size: int = None
    batchnorm: bool = False
    batch_size: int = None
    lr: float = None
    optimizer: str = "sgd"
    kwargs: dict = field(default_factory=dict)  # the model's constructor arguments (gain, n_hidden, tanh, ...)

    @classmethod
    def of(cls, meta, spec=None):
        """From a run's meta (what core.runs.spec's build_job reports) and its spec (for the model's settings)."""
        model, preset = meta.get("model"), meta.get("preset")
        p = PRESETS.get(model, {}).get(preset)
        kwargs = {**(p.kwargs if p else {}), **((spec or {}).get("model_kw") or {})}
        train = {**(p.train if p else {}), **((spec or {}).get("train") or {})}
        return cls(model=model, preset=preset, vocab_size=meta.get("vocab_size"), batchnorm=bool(meta.get("batchnorm")),
                   batch_size=meta.get("batch_size"), lr=meta.get("lr", train.get("lr")),
                   optimizer=train.get("optimizer", "sgd"), kwargs=kwargs)

    def has_preset(self, name):
        return name in PRESETS.get(self.model, {}) and name != self.preset

    def preset_hint(self, name, what):
        """"what (preset 'name')" when this model has that preset and it is not the one running, else ""."""
        return f"{what} (preset '{name}')".strip() if self.has_preset(name) else ""

    @property
    def gain(self):
        return self.kwargs.get("gain")

    @property
    def gain_now(self):
        """" (now 3.00)" for the gain's value in a fix; "" when it is not known (an older run's record)."""
        return f" (now {self.gain:.2f})" if isinstance(self.gain, (int, float)) else ""


def diagnose(subject=None, init_loss=None, capture=None, recent=(), losses=None, evals=(), state=None,
             diverged_at=None, sampled_in_train_mode=False):
    """
    subject: the Subject (None: an unknown model). init_loss: the loss of step 0. capture: the
    Capture to judge (the latest, or the scrubbed step); recent: the last few Captures up to it
    (findings read their median, so one noisy capture does not flip a colour). losses: (steps,
    loss[, lr]) arrays up to the judged step. evals: [(step, train, val)] estimates.
    Returns findings, the worst first.
    """
    s = subject or Subject()
    recent = [c for c in recent if c is not None][-WINDOW:] or ([capture] if capture is not None else [])
    if capture is not None and recent and recent[-1] is not capture:
        recent = recent[-(WINDOW - 1):] + [capture]
    out = []
    if state == "diverged":
        out.append(Finding("diverged", "error", diverged_at or 0, f"The run diverged at step {diverged_at}",
                           "the loss became NaN or infinite, so training stopped there.",
                           _lower_lr(s, "10x is a good first try; check the init too: huge first losses mean "
                                        "huge first gradients")))
    blowup = _blowup(s, losses, init_loss)
    out += blowup
    blew_up = state == "diverged" or bool(blowup)
    out += _softmax(s, init_loss)
    if capture is not None:
        out += _nonfinite(s, capture)
        out += _exploding(s, capture)
        out += _saturation(s, recent, blew_up)
        out += _dead_units(s, capture, blew_up)
        out += _gradient_flow(s, recent, blew_up)
    out += _update_ratio(s, recent, losses, blew_up)
    if not blew_up:  # a ruined run's train and val are equal and say nothing of its size
        out += fit_verdict(s, evals)
    if s.batchnorm and s.batch_size is not None and 0 < s.batch_size < BN_TINY_BATCH:
        out.append(Finding("bn-batch", "error" if s.batch_size < 2 else "warn", 0,
                           f"BatchNorm with a batch of {s.batch_size}",
                           f"BatchNorm normalizes each feature by the batch's mean and std; {s.batch_size} "
                           "example(s) give noisy (for 1: undefined) statistics, and every example's "
                           "output depends on the few others in its batch.",
                           "Use a batch of 32 or more (lecture 4 uses 32), or LayerNorm, which needs no batch."))
    if s.batchnorm and sampled_in_train_mode:
        out.append(Finding("bn-train-sampling", "error", capture.step if capture is not None else 0,
                           "Sampling a BatchNorm model in training mode",
                           "in training mode BatchNorm normalizes a single sampled example by its own "
                           "statistics, so the samples are garbage.",
                           "Call model.eval() before sampling so BatchNorm uses its running mean and std "
                           "(lecture 4: 'calibrate the batch norm at the end of training')."))
    return sorted(out, key=lambda f: SEVERITIES.index(f.severity))


def diagnose_records(meta, spec=None, captures=(), losses=None, evals=(), step=None, state=None):
    """
    The findings of a run from its records, as the page and the runs file hold them: meta (what
    core.runs.spec's build_job reports, plus init_loss, state, diverged_at, samples), its spec,
    every recorded Capture (oldest first), (steps, loss, lr) arrays, [(step, train, val)].
    step: judge the capture at or before it, on what was known then (None: the latest, on every step).
    """
    caps = [c for c in captures if step is None or c.step <= step]
    cap = caps[-1] if caps else None
    if step is not None:
        upto = cap.step if cap is not None else step
        evals = [e for e in evals or () if e[0] <= upto]
        if losses is not None:
            keep = np.asarray(losses[0]) <= upto
            losses = tuple(np.asarray(a)[keep] for a in losses)
    init_loss = meta.get("init_loss")
    if init_loss is None and losses is not None and len(losses[1]):
        init_loss = float(losses[1][0])
    return diagnose(Subject.of(meta, spec), init_loss=init_loss, capture=cap, recent=caps[-WINDOW:], losses=losses,
                    evals=evals, state=state or meta.get("state"), diverged_at=meta.get("diverged_at"),
                    sampled_in_train_mode=(meta.get("samples") or {}).get("mode") == "train")


# -----------------------------------------------------------------------------
# the model's own names: which weight feeds a layer, which is last


def _index(name):
    """("prefix", n) for "blocks.0.ffwd.net.1" or "2 Tanh" / "2 Linear.weight"; (name, None) when unnumbered."""
    name = name.removesuffix(".weight")
    head, _, rest = name.partition(" ")
    if head.isdigit():
        return "", int(head)
    prefix, _, last = name.rpartition(".")
    return (prefix, int(last)) if last.isdigit() else (name, None)


def feeding_weight(layer, weight_names, model=None):
    """The weight whose output feeds `layer`: the lecture MLP's W1 for h, else the nearest numbered weight
    before it in the same module ("0 Linear.weight" for "2 Tanh", "...net.0.weight" for "...net.1")."""
    if model in ("mlp", "ninja") and "W1" in weight_names:
        return "W1"
    prefix, n = _index(layer)
    if n is None:
        return None
    before = [(i, w) for w in weight_names for p, i in [_index(w)] if p == prefix and i is not None and i < n]
    return max(before)[1] if before else None


def _lower_lr(s, why=""):
    now = f" (now {s.lr:g})" if s.lr else ""
    return f"Lower the learning rate{now}" + (f": {why}." if why else ".")


# -----------------------------------------------------------------------------
# the loss


def _blowup(s, losses, init_loss):
    """A loss that rose far above a blank model's -ln(1/V) and stays there: the median of the last
    stretch of steps is judged, so one bad batch is not a blow-up, and the raw init's 27 (falling) is not."""
    if losses is None or not s.vocab_size or len(losses[0]) < 10:
        return []
    steps, loss = np.asarray(losses[0]), np.asarray(losses[1], dtype=float)
    n = min(1000, max(10, len(loss) // 10))
    window = loss[-n:]
    if not np.isfinite(window).all():
        return []  # NaN/inf: the "diverged" finding's business
    blank = math.log(s.vocab_size)
    first = init_loss if init_loss is not None and math.isfinite(init_loss) else float(loss[0])
    level = float(np.median(window))
    bar = max(BLOWUP_X * blank, 2 * first)
    if level <= bar:
        return []
    since = int(steps[np.argmax(loss > bar)])
    return [Finding("blowup", "error", int(steps[-1]), "The loss blew up",
                    f"over the last {n:,} steps it sits near {level:.3g}, far above the {blank:.2f} "
                    f"(-ln(1/{s.vocab_size})) that a model which knows nothing gives; it was {first:.2f} at the "
                    f"start and first rose above {bar:.3g} at step {since:,}. The steps are so large that "
                    "the weights jump past every minimum.",
                    _lower_lr(s, "try 10x lower, and lower again until the loss falls below "
                                 f"{blank:.2f} in the first hundred steps")
                    + ("" if s.model is None else " Then restart the run: its weights are ruined."))]


def _softmax(s, init_loss):
    if init_loss is None or not s.vocab_size or not math.isfinite(init_loss):
        return []
    expected = math.log(s.vocab_size)
    if init_loss <= expected + SOFTMAX_MARGIN:
        return [Finding("softmax", "ok", 0, "The first loss is what a blank model should give",
                        f"first loss {init_loss:.2f} vs -ln(1/{s.vocab_size}) = {expected:.2f}.")]
    return [Finding("softmax", "error", 0, "The softmax is confidently wrong at initialization",
                    f"the first loss is {init_loss:.2f}, but a model that knows nothing should say "
                    f"-ln(1/{s.vocab_size}) = {expected:.2f}: the logits start large, so it is sure of "
                    "wrong answers and the first steps are wasted squashing them.", _softmax_fix(s))]


def _softmax_fix(s):
    if s.model in ("mlp", "ninja"):
        return ("Make the logits small at initialization: W2 × 0.01 and b2 × 0 (lecture 4"
                + (", preset 'fix-softmax')." if s.has_preset("fix-softmax") else ")."))
    if s.model == "deep":
        if not s.kwargs.get("batchnorm") and s.gain and s.gain > 1:
            return (f"The gain {s.gain:.2f} multiplies through every Linear layer and makes the logits large: "
                    f"use {'5/3 with tanh' if s.kwargs.get('tanh', True) else '1 without tanh'}, or BatchNorm "
                    "between the layers" + _also(s.preset_hint("deep-bn", "")) + ".")
        return "Scale the last layer down at initialization, as the lecture does (the last BatchNorm's gamma × 0.1)."
    if s.model == "gpt":
        return "Initialize lm_head small (nanoGPT: weights normal with std 0.02, biases 0)."
    if s.model == "wavenet":
        return "Scale the last Linear's weights by 0.1 at initialization, as lecture 6 does."
    return "Make the last layer's weights small at initialization (× 0.01) and its bias 0 (lecture 4)."


def _also(hint):
    return f" {hint}" if hint else ""


# -----------------------------------------------------------------------------
# one capture, or the median of the recent ones


def _nonfinite(s, c):
    nan, inf = COL["nan"], COL["inf"]
    bad = [(name, int(c.stats[i, nan]), int(c.stats[i, inf])) for i, (g, name) in enumerate(c.keys)
           if c.stats[i, nan] + c.stats[i, inf] > 0]
    if not bad:
        return []
    ev = "; ".join(f"{n}: {nan} NaN, {inf} Inf" for n, nan, inf in bad[:5])
    return [Finding("nonfinite", "error", c.step, f"Non-finite values at step {c.step:,}", ev,
                    _lower_lr(s, "the first layer listed is where the numbers overflowed"))]


def _exploding(s, c):
    """Unbounded activations (ReLU, normalization outputs) whose spread grew by orders of magnitude."""
    big = {r["layer"]: r["std"] for r in c.layer_stats()
           if r["kind"] != "tanh" and math.isfinite(r["std"]) and r["std"] > EXPLODING_STD}
    if not big:
        return []
    return [Finding("exploding", "error", c.step, "Activations explode",
                    f"std at step {c.step:,}: {_listing(big, '{:.3g}', 'layers')} -- a healthy layer keeps a std "
                    "near 1; these grew until the softmax only sees huge logits.",
                    _lower_lr(s, "the weights grew step by step until the activations exploded"))]


def _median_by(recent, rows, key):
    """{name: median of key over the recent captures} of the rows rows(capture) gives."""
    vals = {}
    for c in recent:
        for r in rows(c):
            if r[key] is not None and math.isfinite(r[key]):
                vals.setdefault(r.get("layer", r.get("name")), []).append(r[key])
    return {k: float(np.median(v)) for k, v in vals.items()}


def _tanh_rows(c):
    return [r for r in c.layer_stats() if r["kind"] == "tanh" and r["saturated_pct"] is not None]


def _saturation(s, recent, blew_up):
    if not recent or not _tanh_rows(recent[-1]):
        return []
    c = recent[-1]
    sat = _median_by(recent, _tanh_rows, "saturated_pct")
    over = f"median of the captures at steps {recent[0].step:,}-{c.step:,}" if len(recent) > 1 else f"step {c.step:,}"
    ev = _listing(sat, "{:.1f}%", "layers")
    worst = max(sat, key=sat.get)
    if sat[worst] <= SATURATED_WARN:
        return [Finding("saturation", "ok", c.step, "tanh layers are in their active range",
                        f"saturated (|t| > 0.97), {over}: {ev}.")]
    weight = feeding_weight(worst, [w for w, _ in c.weights], s.model)
    return [Finding("saturation", "error" if sat[worst] > SATURATED_BAD else "warn", c.step,
                    "tanh units are saturated",
                    f"share of outputs with |t| > 0.97, {over}: {ev}. In the flat tails of tanh the local "
                    "gradient (1 - t²) is ~0, so these units barely learn.",
                    _lower_lr(s, "the updates pushed the pre-activations into the tails") if blew_up
                    else _tanh_fix(s, worst, weight))]


def _tanh_fix(s, layer, weight):
    """Shrink the pre-activations of `layer`: in this model's own terms, without recommending what runs."""
    if s.model in ("mlp", "ninja"):
        if s.batchnorm:
            return _lower_lr(s, "BatchNorm already normalizes hpreact, so saturation that grows while "
                                "training comes from large steps")
        if s.preset in ("kaiming", "fix-tanh"):
            return ("W1 is already scaled (preset '" + s.preset + "'): saturation that grows while training "
                    "points at the learning rate -- lower it -- or put BatchNorm before the tanh"
                    + _also(s.preset_hint("batchnorm", "")) + ".")
        options = [o for o in (s.preset_hint("kaiming", "scale W1 by (5/3)/sqrt(fan_in), Kaiming init"),
                               s.preset_hint("fix-tanh", "the lecture's quick W1 × 0.2"),
                               s.preset_hint("batchnorm", "put BatchNorm before the tanh")) if o]
        return "Shrink hpreact: " + "; or ".join(options or ["scale W1 by (5/3)/sqrt(fan_in)"]) + "."
    if s.model == "deep":
        if s.kwargs.get("batchnorm"):
            return _lower_lr(s, "BatchNorm already normalizes every layer's input")
        return (f"Lower the gain on the Linear weights{s.gain_now} toward the lecture's 5/3 for tanh -- "
                f"'{weight or 'the Linear'}' feeds '{layer}' -- or turn BatchNorm on"
                + _also(s.preset_hint("deep-bn", "")) + ".")
    if s.batchnorm:
        return _lower_lr(s, f"BatchNorm already normalizes the input of '{layer}'")
    return (f"Scale {repr(weight) if weight else 'the weights feeding it'} to gain/sqrt(fan_in) (Kaiming: 5/3 "
            f"for tanh), or put BatchNorm before '{layer}' (lecture 4).")


def dead_units(c, name):
    """Indices of units saturated (tanh) or zero (ReLU) for every example of the probe batch."""
    m = c.raster_matrix(name)
    return np.nonzero(m.all(axis=0))[0] if m.shape[0] else np.zeros(0, dtype=int)


def _dead_units(s, c, blew_up):
    if not c.raster:
        return []
    kinds = dict((n, k) for (g, n), k in zip(c.keys, c.kinds) if g == "act")
    dead = {name: (len(dead_units(c, name)), shape) for name, (shape, _) in c.raster.items()}
    total = sum(d for d, _ in dead.values())
    if total == 0:
        return []
    units = sum(shape[1] for _, shape in dead.values())
    share = total / units
    severity = "error" if share >= DEAD_BAD else "warn" if share >= DEAD_WARN else "info"
    rows = ", ".join(f"{name}: {d} of {shape[1]}" for name, (d, shape) in dead.items())
    worst = max(dead, key=lambda n: dead[n][0])
    examples = next(iter(dead.values()))[1][0]
    all_dead = share > 0.9
    if blew_up or all_dead:
        fix = _lower_lr(s, "a step this large threw every unit into a flat region, where no gradient can bring "
                           "it back; restart from a fresh init")
    elif kinds.get(worst) == "relu":
        fix = ("A ReLU unit that outputs 0 for every input gets no gradient: lower the learning rate, or initialize "
               f"so '{worst}''s pre-activations are centred (Kaiming for ReLU: gain sqrt(2))"
               + ("; GELU (as nanoGPT uses) has no dead zone" if s.model == "gpt" else "") + ".")
    else:
        fix = _tanh_fix(s, worst, feeding_weight(worst, [w for w, _ in c.weights], s.model))
    title = "Every unit is dead" if all_dead else f"{total} dead unit{'s' if total != 1 else ''}"
    return [Finding("dead", severity, c.step, title,
                    f"saturated (|h| > 0.99) or zero for every one of the {examples} probe examples at step "
                    f"{c.raster_step:,} -- {rows}. A dead unit's gradient is zero for every input: it never "
                    "learns (a white column in the raster).", fix)]


def _gradient_flow(s, recent, blew_up):
    def rows(c):
        return [r for r in c.layer_stats() if r["kind"] in ("tanh", "relu") and r["grad_std"]]
    if not recent or len(rows(recent[-1])) < 2:
        return []
    c = recent[-1]
    g = _median_by(recent, rows, "grad_std")
    order = [r["layer"] for r in rows(c) if r["layer"] in g]
    first, last = g[order[0]], g[order[-1]]
    if first <= 0 or last <= 0:
        return []
    spread = first / last
    ev = _listing({k: g[k] for k in order}, "{:.2e}", "layers", ordered=True)
    deep_fix = s.model == "deep" and not s.kwargs.get("batchnorm")
    if spread < 1 / GRAD_SPREAD:
        return [Finding("gradients", "warn", c.step, "Gradients vanish toward the first layers",
                        f"activation-gradient std at step {c.step:,}, first to last layer: {ev} -- "
                        f"{1 / spread:.0f}x smaller at the first layer, which then learns slowly.",
                        (f"Raise the gain on the Linear weights toward 5/3{s.gain_now}, or turn BatchNorm on"
                         + _also(s.preset_hint("deep-bn", "")) + ".") if deep_fix else
                        "Use the right gain for the nonlinearity in the Linear layers' init (Kaiming: 5/3 for tanh), "
                        "or normalization between layers (lecture 4, the deep stack).")]
    if spread > GRAD_SPREAD:
        return [Finding("gradients", "warn", c.step, "Gradients explode toward the first layers",
                        f"activation-gradient std at step {c.step:,}, first to last layer: {ev} -- "
                        f"{spread:.0f}x larger at the first layer.",
                        _lower_lr(s) if blew_up else
                        (f"Lower the gain on the Linear weights toward 5/3{s.gain_now}, or turn BatchNorm on"
                         + _also(s.preset_hint("deep-bn", "")) + ".") if deep_fix else
                        "Lower the learning rate, or normalize between layers (BatchNorm, LayerNorm).")]
    return [Finding("gradients", "ok", c.step, "Gradients flow evenly through the layers",
                    f"activation-gradient std, first to last layer: {ev}.")]


def _update_ratio(s, recent, losses, blew_up):
    def rows(c):  # weight matrices; a (1, n) row is a BatchNorm gain or bias, whose spread starts at 0
        return [w for w in c.weight_stats() if len(w["shape"]) == 2 and w["shape"][0] > 1]
    per = _median_by(recent, rows, "update_data_log10")
    if not per:
        return []
    step = recent[-1].step
    m = float(np.median(list(per.values())))
    ev = _listing(per, "{:.1f}", "weights")
    if m > UD_HIGH:
        return [Finding("update-ratio", "error" if m > -1 else "warn", step, "The learning rate looks too high",
                        f"log10 update:data ratios (median of recent captures) {ev}; the lecture's healthy "
                        f"level is about -3, these sit near {m:.1f}: each step rewrites "
                        f"{100 * 10 ** m:.0f}% of a weight's scale.",
                        _lower_lr(s, "about 10x for every unit the ratio sits above -3"))]
    if m < UD_LOW:
        if blew_up:
            return []  # weights knocked into flat regions barely move: not a sign the rate is too low
        lr_now, lr0 = _lr_at(losses, step), s.lr
        if lr_now is not None and lr0 and lr_now < lr0:
            return [Finding("update-ratio", "info", step, "Update:data ratios are low after the decay",
                            f"log10 update:data ratios {ev} sit near {m:.1f}: the schedule lowered the learning "
                            f"rate from {lr0:g} to {lr_now:g}, so the weights now move in small, fine steps.")]
        return [Finding("update-ratio", "warn", step, "The learning rate looks too low",
                        f"log10 update:data ratios {ev} sit near {m:.1f}, well below the lecture's ~-3: "
                        "the weights barely move.",
                        f"Raise the learning rate{f' (now {s.lr:g})' if s.lr else ''}: lecture 3's finder sweeps "
                        "10^-3..10^0 and picks the rate just before the loss turns up.")]
    return [Finding("update-ratio", "ok", step, "Update:data ratios are near the lecture's -3",
                    f"log10 update:data ratios {ev}.")]


def _lr_at(losses, step):
    if losses is None or len(losses) < 3 or not len(losses[0]):
        return None
    i = int(np.searchsorted(np.asarray(losses[0]), step, side="right")) - 1
    return float(losses[2][max(i, 0)])


# -----------------------------------------------------------------------------
# train against val: lecture 3's reading


def fit_verdict(subject, evals):
    """Under- or overfitting from the latest train and val estimates (lecture 3): about equal means the model
    is too small to overfit -- make it bigger; val far above train means it memorizes the training set."""
    s = subject or Subject()
    known = [(st, tr, va) for st, tr, va in evals or ()
             if tr is not None and va is not None and math.isfinite(tr) and math.isfinite(va)]
    if not known:
        return []
    step, train, val = known[-1]
    if step < FIT_MIN_STEPS or (s.vocab_size and train > math.log(s.vocab_size) - FIT_LEARNED):
        return []  # a model that has hardly trained is neither: its losses are the init's
    gap = val - train
    ev = f"train {train:.4f}, val {val:.4f} at step {step:,} ({gap:+.4f})"
    if gap > OVERFIT_GAP * train:
        return [Finding("fit", "warn", step, "Overfitting: val is well above train",
                        f"{ev}: the model fits its training examples better than ones it has not seen.",
                        "More data, a smaller model, or regularization (lecture 2's 0.01 * (W**2).mean(); weight "
                        "decay; dropout in lecture 7); and stop where val is lowest.")]
    if gap < -OVERFIT_GAP * train:
        return [Finding("fit", "info", step, "Val is below train",
                        f"{ev}: unusual; dropout or BatchNorm in training mode make the train estimate higher, "
                        "or the val split is easier than train.")]
    return [Finding("fit", "info", step, "Underfitting: train and val are about equal",
                    f"{ev}: the model is not memorizing its training set, so it has room to grow -- "
                    "lecture 3's reading: the network is too small (or not trained long enough) for this data.",
                    _bigger(s))]


def _bigger(s):
    k = s.kwargs
    if s.model == "mlp":
        return (f"Make it bigger: n_hidden (now {k.get('n_hidden', 200)}) and n_embd (now {k.get('n_embd', 10)}), "
                "and train longer (lecture 3).")
    if s.model == "wavenet":
        hint = " (lecture 6's preset 'scaled')" if s.has_preset("scaled") else ""
        return (f"Make it bigger: n_embd (now {k.get('n_embd', 24)}) and n_hidden (now {k.get('n_hidden', 128)})"
                f"{hint}, and train longer.")
    if s.model == "gpt":
        return (f"Make it bigger: n_embd (now {k.get('n_embd', 32)}), n_layer (now {k.get('n_layer', 1)}), "
                "block_size, and train longer (lecture 7).")
    if s.model == "deep":
        return "Make it bigger: n_hidden or the number of layers, and train longer."
    return "Make it bigger (more hidden units, a larger embedding, more context) and train longer (lecture 3)."


def _listing(values, fmt, what, ordered=False, most=8):
    """"name: value, ..." for a few; for many (a GPT has dozens of weights) the extremes only, so a finding
    stays readable: the first and last three in order (ordered=True), else the lowest and highest three."""
    items = list(values.items())
    show = lambda part: ", ".join(f"{k}: {fmt.format(v)}" for k, v in part)  # noqa: E731
    if len(items) <= most:
        return show(items)
    if ordered:
        return f"{len(items)} {what}, first {show(items[:3])} ... last {show(items[-3:])}"
    items.sort(key=lambda kv: kv[1])
    return f"{len(items)} {what}, lowest {show(items[:3])} ... highest {show(items[-3:])}"
