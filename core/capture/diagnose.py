"""
Diagnosis in plain words: what lecture 4 teaches a learner to read off the plots,
turned into findings with their evidence and the lecture's fix. Pure functions of
recorded numbers (Capture records, the first loss, the run's settings): the page
only shows them.
"""

import math
from dataclasses import dataclass

import numpy as np

from core.capture.record import COL

# thresholds, with the lecture's reasoning
SOFTMAX_MARGIN = 1.0       # first loss this far above -ln(1/V): the logits are confidently wrong
SATURATED_WARN = 25.0      # % of tanh outputs with |t| > 0.97; Kaiming init has ~17%, the deep stack ~2-5%
SATURATED_BAD = 40.0       # the raw init has ~60%
DEAD_WARN = 0.0            # any unit saturated for every probe example is dead: it never learns
GRAD_SPREAD = 10.0         # activation-gradient std first vs last layer: >10x apart = vanishing/exploding
UD_HIGH = -1.5             # log10 update:data; the lecture's rule of thumb is about -3
UD_LOW = -4.0
BN_TINY_BATCH = 8          # BatchNorm's batch statistics are noise below this


@dataclass
class Finding:
    key: str          # stable id, e.g. "softmax"
    severity: str     # "error", "warning" or "ok"
    title: str
    evidence: str
    fix: str

    def to_dict(self):
        return dict(key=self.key, severity=self.severity, title=self.title, evidence=self.evidence, fix=self.fix)


def diagnose(init_loss=None, vocab_size=None, capture=None, recent=(), state=None, diverged_at=None,
             batch_size=None, batchnorm=False, sampled_in_train_mode=False):
    """
    init_loss: the loss of step 0; capture: the Capture to judge (the latest, or the scrubbed
    step); recent: the last few Captures, for the update:data ratio over time.
    Returns findings, the worst first.
    """
    out = []
    if state == "diverged":
        out.append(Finding("diverged", "error", f"The run diverged at step {diverged_at}",
                           "the loss became NaN or infinite, so training stopped there.",
                           "Lower the learning rate (10x is a good first try); check the init: "
                           "huge first losses mean huge first gradients."))
    out += _softmax(init_loss, vocab_size)
    if capture is not None:
        out += _nonfinite(capture)
        out += _saturation(capture)
        out += _dead_units(capture)
        out += _gradient_flow(capture)
    out += _update_ratio(list(recent) or ([capture] if capture is not None else []))
    if batchnorm and batch_size is not None and 0 < batch_size < BN_TINY_BATCH:
        out.append(Finding("bn-batch", "error" if batch_size < 2 else "warning",
                           f"BatchNorm with a batch of {batch_size}",
                           f"BatchNorm normalizes each feature by the batch's mean and std; {batch_size} "
                           "example(s) give noisy (for 1: undefined) statistics, and every example's "
                           "output depends on the few others in its batch.",
                           "Use a batch of 32 or more (lecture 4 uses 32), or LayerNorm, which needs no batch."))
    if batchnorm and sampled_in_train_mode:
        out.append(Finding("bn-train-sampling", "error", "Sampling a BatchNorm model in training mode",
                           "in training mode BatchNorm normalizes a single sampled example by its own "
                           "statistics, so the samples are garbage.",
                           "Call model.eval() before sampling so BatchNorm uses its running mean and std "
                           "(lecture 4: 'calibrate the batch norm at the end of training')."))
    order = {"error": 0, "warning": 1, "ok": 2}
    return sorted(out, key=lambda f: order[f.severity])


def _softmax(init_loss, vocab_size):
    if init_loss is None or not vocab_size:
        return []
    expected = math.log(vocab_size)
    if not math.isfinite(init_loss):
        return []
    if init_loss > expected + SOFTMAX_MARGIN:
        return [Finding("softmax", "error", "The softmax is confidently wrong at initialization",
                        f"the first loss is {init_loss:.2f}, but a model that knows nothing should say "
                        f"-ln(1/{vocab_size}) = {expected:.2f}: the logits start large, so it is sure of "
                        "wrong answers and the first steps are wasted squashing them.",
                        "Make the last layer's logits small: multiply its weights by 0.01 and set its bias "
                        "to 0 (lecture 4, preset 'fix-softmax').")]
    return [Finding("softmax", "ok", "The first loss is what a blank model should give",
                    f"first loss {init_loss:.2f} vs -ln(1/{vocab_size}) = {expected:.2f}.", "")]


def _nonfinite(c):
    nan, inf = COL["nan"], COL["inf"]
    bad = [(name, int(c.stats[i, nan]), int(c.stats[i, inf])) for i, (g, name) in enumerate(c.keys)
           if c.stats[i, nan] + c.stats[i, inf] > 0]
    if not bad:
        return []
    ev = "; ".join(f"{n}: {nan} NaN, {inf} Inf" for n, nan, inf in bad[:5])
    return [Finding("nonfinite", "error", f"Non-finite values at step {c.step}", ev,
                    "Lower the learning rate; look for an exploding layer in the histograms.")]


def _saturation(c):
    tanh = [r for r in c.layer_stats() if r["kind"] == "tanh" and r["saturated_pct"] is not None]
    if not tanh:
        return []
    worst = max(tanh, key=lambda r: r["saturated_pct"])
    ev = _listing({r["layer"]: r["saturated_pct"] for r in tanh}, "{:.1f}%", "layers")
    if worst["saturated_pct"] > SATURATED_WARN:
        return [Finding("saturation", "error" if worst["saturated_pct"] > SATURATED_BAD else "warning",
                        "tanh units are saturated",
                        f"share of outputs with |t| > 0.97 at step {c.step}: {ev}. In the flat tails of "
                        "tanh the local gradient (1 - t²) is ~0, so these units barely learn.",
                        "Shrink the pre-activations: scale W1 by (5/3)/sqrt(fan_in) (Kaiming init, preset "
                        "'kaiming'; or the lecture's quick 0.2, 'fix-tanh'), or put BatchNorm before the "
                        "tanh (preset 'batchnorm').")]
    return [Finding("saturation", "ok", "tanh layers are in their active range",
                    f"saturated (|t| > 0.97) at step {c.step}: {ev}.", "")]


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


def dead_units(c, name):
    """Indices of units saturated (tanh) or zero (ReLU) for every example of the probe batch."""
    m = c.raster_matrix(name)
    return np.nonzero(m.all(axis=0))[0] if m.shape[0] else np.zeros(0, dtype=int)


def _dead_units(c):
    if not c.raster:
        return []
    rows, total_dead = [], 0
    for name, (shape, _) in c.raster.items():
        d = len(dead_units(c, name))
        total_dead += d
        rows.append(f"{name}: {d} of {shape[1]}")
    if total_dead > DEAD_WARN:
        units = sum(shape[1] for shape, _ in c.raster.values())
        return [Finding("dead", "error" if total_dead > 0.05 * units else "warning",
                        f"{total_dead} dead unit{'s' if total_dead != 1 else ''}",
                        f"saturated (|h| > 0.99) or zero for every example of the probe batch at step "
                        f"{c.step} -- {', '.join(rows)}. A dead unit's gradient is zero for every input: "
                        "it never learns (a white column in the raster).",
                        "Initialize so pre-activations are small (Kaiming gain 5/3 for tanh) or normalize "
                        "them with BatchNorm; for ReLU, a lower learning rate.")]
    return []


def _gradient_flow(c):
    rows = [r for r in c.layer_stats() if r["kind"] in ("tanh", "relu") and r["grad_std"]]
    if len(rows) < 2:
        return []
    first, last = rows[0]["grad_std"], rows[-1]["grad_std"]
    if first <= 0 or last <= 0:
        return []
    spread = first / last
    ev = _listing({r["layer"]: r["grad_std"] for r in rows}, "{:.2e}", "layers", ordered=True)
    if spread < 1 / GRAD_SPREAD:
        return [Finding("gradients", "warning", "Gradients vanish toward the first layers",
                        f"activation-gradient std at step {c.step}, first to last layer: {ev} -- "
                        f"{1 / spread:.0f}x smaller at the first layer, which then learns slowly.",
                        "Use the right gain for the nonlinearity (5/3 for tanh) or BatchNorm between layers "
                        "(lecture 4, the deep stack).")]
    if spread > GRAD_SPREAD:
        return [Finding("gradients", "warning", "Gradients explode toward the first layers",
                        f"activation-gradient std at step {c.step}, first to last layer: {ev} -- "
                        f"{spread:.0f}x larger at the first layer.",
                        "Lower the gain on the Linear weights (e.g. from 3 to 5/3) or add BatchNorm.")]
    return [Finding("gradients", "ok", "Gradients flow evenly through the layers",
                    f"activation-gradient std, first to last layer: {ev}.", "")]


def _update_ratio(captures):
    vals = {}
    for c in captures:
        for w in c.weight_stats():
            if len(w["shape"]) == 2 and w["update_data_log10"] is not None:
                vals.setdefault(w["name"], []).append(w["update_data_log10"])
    if not vals:
        return []
    per = {k: float(np.median(v)) for k, v in vals.items()}
    m = float(np.median(list(per.values())))
    ev = _listing(per, "{:.1f}", "weights")
    if m > UD_HIGH:
        return [Finding("update-ratio", "error" if m > -1 else "warning", "The learning rate looks too high",
                        f"log10 update:data ratios (median of recent captures) {ev}; the lecture's healthy "
                        f"level is about -3, these sit near {m:.1f}: each step rewrites "
                        f"{100 * 10 ** m:.0f}% of a weight's scale.",
                        "Lower the learning rate about 10x for every unit the ratio sits above -3.")]
    if m < UD_LOW:
        return [Finding("update-ratio", "warning", "The learning rate looks too low",
                        f"log10 update:data ratios {ev} sit near {m:.1f}, well below the lecture's ~-3: "
                        "the weights barely move.",
                        "Raise the learning rate (lecture 3's finder: sweep 10^-3..10^0).")]
    return [Finding("update-ratio", "ok", "Update:data ratios are near the lecture's -3",
                    f"log10 update:data ratios {ev}.", "")]
