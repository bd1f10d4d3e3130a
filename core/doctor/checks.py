"""
The model doctor: Karpathy's six most common neural-net mistakes, and lecture 3's under/over-fitting,
each a check with a verdict (pass | warn | fail | skip), its evidence and the fix in the model's own
terms. The checks read a model and one batch; what watch() saw of the learner's loop (core.doctor.observe)
adds the mistakes that live in the loop rather than in the model (zero_grad, train/eval mode).

    from core.doctor import examine
    report = examine(model, X, Y)          # an nn.Module, one of our lecture models, or a list of layers
    report.checks                          # [{id, verdict, evidence, fix}, ...]

Nothing of the learner's changes: the checks that train or run the model do it on a copy, and the
global RNG, BatchNorm's running statistics and every layer's mode and .out are put back.
"""

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from core.capture.diagnose import Subject, fit_verdict
from core.capture.recorder import untouched
from core.doctor.target import DoctorError, Target, describe, is_batchnorm, is_dropout

CHECKS = ("overfit-one-batch", "train-eval-mode", "zero-grad", "softmax-into-loss", "bias-before-batchnorm",
          "batch-independence", "fit")
VERDICTS = ("fail", "warn", "pass", "skip")  # worst first

# overfit one batch: Karpathy's recipe -- Adam, a small batch, and the loss should go to (nearly) zero
OVERFIT_STEPS = 1000     # the step budget (stops as soon as the loss is within the margin of the floor)
OVERFIT_LR = 1e-2        # Adam's rate: the deep BatchNorm stack needs ~170 steps (3e-3: ~600); SGD 0.1 thousands
OVERFIT_MARGIN = 0.15    # nats above the batch's own floor that still count as "reached it"
OVERFIT_BATCH = 32       # examples it trains on (the first of the batch given): lecture 4's batch size
PROB_TOL = 1e-3          # rows summing to 1 within this: a probability distribution
DEAD_BIAS = 1e-6         # a bias whose largest gradient is below this times the model's largest: cancelled
MIXING_TOL = 1e-7        # gradient from another example above this (relative): the model mixes examples


@dataclass
class Check:
    id: str
    verdict: str       # pass | warn | fail | skip
    evidence: str
    fix: str = ""
    title: str = ""
    data: dict = field(default_factory=dict)  # numbers behind the evidence (the overfit curve, the floor)

    def to_dict(self):
        return dict(id=self.id, verdict=self.verdict, title=self.title, evidence=self.evidence, fix=self.fix,
                    data=self.data)


@dataclass
class Report:
    checks: list                 # dicts {id, verdict, title, evidence, fix, data}, in CHECKS order
    seconds: float = 0.0

    def check(self, id):
        return next(c for c in self.checks if c["id"] == id)

    @property
    def verdicts(self):
        return {c["id"]: c["verdict"] for c in self.checks}

    @property
    def worst(self):
        return min((c["verdict"] for c in self.checks), key=VERDICTS.index)

    def to_dict(self):
        return {"checks": self.checks}

    def table(self, width=100):
        """The checks as plain text: one line each, then the evidence and fix of those that did not pass."""
        lines = [f"{'check':24s} {'verdict':8s} {'':s}"]
        for c in self.checks:
            lines.append(f"{c['id']:24s} {c['verdict'].upper():8s} {c['title']}")
        for c in self.checks:
            if c["verdict"] in ("fail", "warn"):
                lines += ["", f"{c['verdict'].upper()} {c['id']}: {c['evidence']}"] + \
                         ([f"  fix: {c['fix']}"] if c["fix"] else [])
        return "\n".join(lines)

    def __repr__(self):
        return self.table()

    def _repr_markdown_(self):  # a notebook shows the report as a table
        icon = {"pass": "✅", "warn": "⚠️", "fail": "❌", "skip": "➖"}
        rows = [f"| {icon[c['verdict']]} {c['verdict']} | `{c['id']}` | {c['title']}: {c['evidence']} | {c['fix']} |"
                for c in self.checks]
        return "| verdict | check | evidence | fix |\n|---|---|---|---|\n" + "\n".join(rows)


def examine(model, X, Y, loss_fn=None, steps=None, seen=None, evals=None, subject=None, params=None):
    """
    Examine `model` on the batch (X, Y). model: an nn.Module, one of our lecture models (its own loss via
    model(X, Y)), or a list / dict / lecture Sequential of from-scratch layers (X is then the first layer's
    input). loss_fn(logits, Y): the learner's loss, when the model returns logits only (default: cross_entropy).
    steps: overfit-one-batch's step budget. seen: what watch() saw of the loop (core.doctor.observe). evals:
    [(step, train, val)] loss estimates, for `fit`. subject: the diagnosis's Subject (our model and preset:
    fixes name its presets). params: [(name, tensor)] for a list whose loop trains tensors outside it.
    Returns a Report; DoctorError (one message) for a model or batch it cannot examine.
    """
    t0 = time.perf_counter()
    target = Target(model, loss_fn, params=params)
    X, Y = _check_batch(X, Y)
    _check_differentiable(target, X, Y)
    checks = [overfit_one_batch(target, X, Y, steps),
              train_eval_mode(target, seen),
              zero_grad(target, seen),
              softmax_into_loss(target, X, Y, seen),
              bias_before_batchnorm(target, X, Y),
              batch_independence(target, X),
              fit(subject, evals)]
    return Report([c.to_dict() for c in checks], seconds=time.perf_counter() - t0)


# -----------------------------------------------------------------------------
# bad input: one message each


def _check_batch(X, Y):
    if not isinstance(X, torch.Tensor) or not isinstance(Y, torch.Tensor):
        raise DoctorError(f"X and Y must be tensors (a batch of inputs and its targets), got "
                          f"{type(X).__name__} and {type(Y).__name__}")
    if X.ndim == 0 or Y.ndim == 0 or len(X) != len(Y):
        raise DoctorError(f"X and Y must be a batch of examples with the same first dimension "
                          f"(got shapes {tuple(X.shape)} and {tuple(Y.shape)})")
    if len(X) < 2:
        raise DoctorError(f"a batch of {len(X)} example: the doctor needs at least 2 (32 is lecture 4's) -- "
                          "examples must be compared with each other, and BatchNorm needs a batch")
    return X, Y


def _check_differentiable(target, X, Y):
    """The loss must reach the parameters through autograd: a model under no_grad, or one whose output is
    detached (.item(), numpy, argmax), cannot be trained and cannot be examined."""
    with _quiet(target):
        t = target.copy()
        try:
            _, loss = t.loss(X, Y)
        except DoctorError:
            raise
        except Exception as e:
            raise DoctorError(f"{describe(target.model)} failed on this batch (X {tuple(X.shape)}, Y "
                              f"{tuple(Y.shape)}): {type(e).__name__}: {e}") from None
        if not loss.requires_grad:
            raise DoctorError(f"the loss of {describe(target.model)} does not depend on its parameters through "
                              "autograd (a forward under torch.no_grad, .detach(), .item() or an argmax?): it "
                              "cannot be trained, so it cannot be examined")
        if not math.isfinite(loss.item()):
            raise DoctorError(f"the loss on this batch is {loss.item()}: fix the NaN/inf first "
                              "(a learning rate too high, a log of 0?)")


@contextmanager
def _quiet(target):
    """Whatever the checks run, the learner's model comes back as it was: global RNG, BatchNorm running
    statistics and modes (core.capture.recorder.untouched), every layer's mode and .out."""
    outs = [(layer, layer.out) for _, layer in target.layers if "out" in getattr(layer, "__dict__", {})]
    modes = target.modes()
    with untouched(_Running(target)):
        try:
            yield
        finally:
            for layer, out in outs:
                layer.out = out
            Target.set_modes(modes)


class _Running:
    """The Target as core.capture.recorder.untouched reads a model: named_layers() or an nn.Module's buffers."""

    def __init__(self, target):
        self._t = target

    def __getattr__(self, name):
        if name == "named_layers":
            return lambda: self._t.layers
        raise AttributeError(name)


# -----------------------------------------------------------------------------
# 1. overfit one batch


def batch_floor(X, Y):
    """The least mean cross-entropy any model can reach on (X, Y): examples with identical inputs but different
    targets leave the entropy of their targets. A (B, T) target is a language model's: position t sees
    X[b, :t+1] (every lecture model is causal), so equal prefixes are identical inputs."""
    if Y.ndim == 2 and X.ndim == 2 and X.shape == Y.shape:
        keys = [(tuple(x[:t + 1]), int(y[t])) for x, y in zip(X.tolist(), Y.tolist()) for t in range(len(y))]
    else:
        flat = X.reshape(len(X), -1).tolist()
        keys = [(tuple(x), int(y)) for x, y in zip(flat, Y.reshape(len(Y), -1)[:, 0].tolist())]
    groups = {}
    for k, y in keys:
        groups.setdefault(k, {}).setdefault(y, 0)
        groups[k][y] += 1
    total = 0.0
    for counts in groups.values():
        n = sum(counts.values())
        total += -sum(c * math.log(c / n) for c in counts.values())
    return total / len(keys), sum(len(c) > 1 for c in groups.values())


def overfit_one_batch(target, X, Y, steps=None):
    steps = OVERFIT_STEPS if steps is None else int(steps)
    X, Y = X[:OVERFIT_BATCH], Y[:OVERFIT_BATCH]
    floor, clashes = batch_floor(X, Y)
    bar = floor + OVERFIT_MARGIN
    with _quiet(target):
        t = target.copy()
        t.train()
        params = [p for _, p in t.params]
        opt = torch.optim.Adam(params, lr=OVERFIT_LR)
        curve = []
        for i in range(steps):
            _, loss = t.loss(X, Y)
            curve.append(loss.item())
            if curve[-1] <= bar or not math.isfinite(curve[-1]):
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    first, last, best = curve[0], curve[-1], min(curve)
    data = dict(floor=floor, margin=OVERFIT_MARGIN, steps=len(curve) - 1, curve=_thin(curve), lr=OVERFIT_LR,
                examples=len(X))
    where = (f"{len(X)} examples; their floor -- the entropy that identical inputs with different targets leave "
             f"({clashes} such input{'s' if clashes != 1 else ''}) -- is {floor:.3f}")
    if last <= bar:
        return Check("overfit-one-batch", "pass", f"a copy trained on one batch ({where}) reached {last:.3f} in "
                     f"{len(curve) - 1} Adam steps at lr {OVERFIT_LR:g}, from {first:.3f}.",
                     title="Overfits one batch", data=data)
    why = _why_no_overfit(target, first, best)
    return Check("overfit-one-batch", "fail", f"a copy trained on one batch ({where}) got no lower than {best:.3f} "
                 f"in {len(curve) - 1} Adam steps at lr {OVERFIT_LR:g} (from {first:.3f}; floor + margin "
                 f"{bar:.3f}). {why}",
                 "Before training for real, make this pass: a model that cannot memorize 32 examples has a bug "
                 "(labels that do not belong to their inputs, a loss fed the wrong tensor, a detached path), too "
                 "little capacity, or dropout left on.",
                 title="Cannot overfit a single batch", data=data)


def _why_no_overfit(target, first, best):
    drops = [n for n, m in target.norms() if is_dropout(m)]
    if drops:
        return f"Dropout is on ({', '.join(drops[:3])}): it keeps the loss from reaching the floor."
    if best > 0.8 * first:
        return ("The loss hardly moved: the targets look unrelated to the inputs, or the loss does not see the "
                "logits the model computes.")
    return "The loss fell but stalled well above the floor."


def _thin(values, most=200):
    step = max(1, len(values) // most)
    return [round(v, 5) for v in values[::step]] + ([round(values[-1], 5)] if (len(values) - 1) % step else [])


# -----------------------------------------------------------------------------
# 2. train/eval mode


def train_eval_mode(target, seen=None):
    norms = target.norms()
    seen = seen or {}
    names = ", ".join(f"'{n}'" for n, _ in norms[:4])
    if seen.get("eval_in_train"):
        step, layers = seen["eval_in_train"][0]
        n = len(seen["eval_in_train"])
        return Check("train-eval-mode", "fail",
                     f"the loop ran a forward pass under torch.no_grad (an evaluation or sampling) at step {step:,} "
                     f"with {', '.join(repr(n) for n in layers[:4])} in training mode ({n} such pass"
                     f"{'es' if n != 1 else ''}): BatchNorm then normalizes by the batch "
                     "in hand -- one sampled example by itself -- and dropout drops.",
                     _eval_fix(target), title="Evaluated in training mode")
    if seen.get("train_in_eval"):
        step, layers = seen["train_in_eval"][0]
        return Check("train-eval-mode", "fail",
                     f"a training step (a backward) at step {step:,} ran with "
                     f"{', '.join(repr(n) for n in layers[:4])} in eval mode: BatchNorm then never learns its "
                     "running statistics and dropout never drops.",
                     "Call model.train() (layer.training = True) again after evaluating, before the next step.",
                     title="Trained in eval mode")
    if not norms:
        return Check("train-eval-mode", "pass", "no BatchNorm or dropout: train and eval mode compute the same "
                     "function, so forgetting to switch cannot hurt.", title="Nothing depends on the mode")
    # the model's own eval(): does it reach every layer whose behaviour depends on it?
    with _quiet(target):
        target.eval()
        stuck = [n for n, m in norms if getattr(m, "training", False)]
    if stuck:
        return Check("train-eval-mode", "fail",
                     f"after model.eval(), {', '.join(repr(s) for s in stuck[:4])} "
                     f"{'is' if len(stuck) == 1 else 'are'} still in training mode: evaluation and sampling "
                     "normalize by the batch in hand instead of the running statistics.",
                     _eval_fix(target), title="eval() does not reach BatchNorm")
    if seen.get("steps"):
        return Check("train-eval-mode", "pass",
                     f"{names} switch with model.eval(); the loop trained in training mode and evaluated in eval "
                     f"mode ({seen['steps']:,} steps watched, {seen.get('evals', 0):,} evaluation passes).",
                     title="Train and eval modes are right")
    how = "switch with model.eval()" if callable(getattr(target.model, "eval", None)) else \
        "have a .training flag (set it to False before evaluating, as lecture 4 does)"
    return Check("train-eval-mode", "pass", f"{names} {how}. The loop itself was not watched: run it under "
                 "watch() and call lab.doctor(X, Y) to check it evaluates in eval mode.",
                 title="eval() reaches every mode-dependent layer")


def _eval_fix(target):
    if target.kind == "layers":
        return ("Before evaluating or sampling: for layer in layers: layer.training = False; and True again before "
                "training (lecture 4).")
    return ("Call model.eval() before evaluating or sampling and model.train() after; an eval() of your own must "
            "set every layer's mode (nn.Module.eval does it for you).")


# -----------------------------------------------------------------------------
# 3. zero_grad


def zero_grad(target, seen=None):
    seen = seen or {}
    if seen.get("stale"):
        step, name, size = seen["stale"][0]
        n = seen.get("stale_steps", len(seen["stale"]))
        return Check("zero-grad", "fail",
                     f"at step {step:,} the backward pass found {name}.grad already holding the last step's gradient "
                     f"(|grad| {size:.3g}) before adding this step's -- in {n} of the {seen.get('checked', n)} steps "
                     "checked: gradients accumulate across steps, so each update is the sum of every gradient so "
                     "far.",
                     "Reset the gradients before each backward: for p in parameters: p.grad = None (the lectures), "
                     "or optimizer.zero_grad(set_to_none=True). Accumulating on purpose (micro-batches) is fine "
                     "within one step: call lab.step() once per update.",
                     title="Gradients are never reset")
    if seen.get("checked"):
        return Check("zero-grad", "pass", f"every parameter's .grad was empty when the backward pass began, in "
                     f"{seen['checked']} checked steps.", title="Gradients are reset each step")
    return Check("zero-grad", "skip", "zero_grad lives in the training loop, which was not watched here: run it "
                 "under watch() and call lab.doctor(X, Y), or python -m core doctor.",
                 title="The loop was not watched")


# -----------------------------------------------------------------------------
# 4. softmax into the loss


class LossInputs(TorchFunctionMode):
    """Sees every tensor that reaches cross_entropy or nll_loss (torch's function mode: nothing is changed)."""

    def __init__(self):
        super().__init__()
        self.seen = []  # (function name, verdict) with verdict "probabilities" | "logits" | "log-probabilities"

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (F.cross_entropy, F.nll_loss) and args and isinstance(args[0], torch.Tensor) and len(self.seen) < 20:
            self.seen.append((func.__name__, what_is(args[0])))
        return func(*args, **(kwargs or {}))


def what_is(x):
    """A loss input's rows (class dimension 1, as cross_entropy reads it): probabilities, log-probabilities
    or logits."""
    if not x.is_floating_point() or x.ndim < 2 or x.numel() == 0:
        return "logits"
    with torch.no_grad():
        x = x.detach().float()
        if (x >= 0).all() and ((x.sum(1) - 1).abs() < PROB_TOL).all():
            return "probabilities"
        if (x <= 0).all() and (torch.logsumexp(x, 1).abs() < PROB_TOL).all():
            return "log-probabilities"
    return "logits"


def softmax_into_loss(target, X, Y, seen=None):
    with _quiet(target):
        t = target.copy()
        mode = LossInputs()
        with mode, torch.no_grad():
            t.loss(X, Y)
    calls = mode.seen + list((seen or {}).get("loss_inputs", []))
    bad = [(f, w) for f, w in calls if w == "probabilities" or (f == "nll_loss" and w == "logits")]
    if bad:
        f, w = bad[0]
        where = "the model's loss" if target.contract else "the loss"
        if f == "cross_entropy":
            return Check("softmax-into-loss", "fail",
                         f"the tensor reaching F.cross_entropy in {where} is already a probability distribution "
                         "(non-negative rows summing to 1): cross_entropy applies its own softmax, so the loss "
                         "cannot fall below ln(V - 1 + e) - 1 and its gradients are squashed.",
                         "Pass the logits: F.cross_entropy(logits, Y) -- no F.softmax before it.",
                         title="Softmax passed into cross_entropy")
        return Check("softmax-into-loss", "fail",
                     f"the tensor reaching F.nll_loss is {'probabilities' if w == 'probabilities' else 'raw logits'}"
                     ": nll_loss expects log-probabilities.",
                     "F.nll_loss(F.log_softmax(logits, 1), Y), or simply F.cross_entropy(logits, Y).",
                     title="nll_loss fed the wrong tensor")
    if not calls:
        return Check("softmax-into-loss", "skip", "no F.cross_entropy or F.nll_loss call was seen (a loss written "
                     "by hand, as lecture 2's -probs[...].log().mean()?)", title="No cross_entropy to check")
    kinds = sorted({w for _, w in calls})
    return Check("softmax-into-loss", "pass", f"{calls[0][0]} receives {' and '.join(kinds)}, not probabilities.",
                 title="The loss gets logits")


# -----------------------------------------------------------------------------
# 5. bias before BatchNorm, and an output layer without one


def bias_before_batchnorm(target, X, Y):
    params = target.params
    with _quiet(target):
        t = target.copy()
        t.train()
        grads = []
        for part in (slice(None), slice(0, len(X) // 2), slice(len(X) // 2, None)):  # three "steps"
            _, loss = t.loss(X[part], Y[part])
            grads.append(torch.autograd.grad(loss, [p for _, p in t.params], allow_unused=True))
    scale = max(g.abs().max().item() for gs in grads for g in gs if g is not None) or 1.0
    dead = []
    for k, (name, p) in enumerate(params):
        if p.ndim != 1 or _is_norm_param(target, p):
            continue
        worst = max((gs[k].abs().max().item() if gs[k] is not None else 0.0) for gs in grads)
        if worst <= DEAD_BIAS * scale:
            dead.append((name, worst))
    norm = next((n for n, m in target.layers if is_batchnorm(m)), None)
    if dead and norm is not None:
        name, worst = dead[0]
        return Check("bias-before-batchnorm", "fail",
                     f"{name}'s gradient is zero at every step (largest |grad| {worst:.1e} on three batches, vs "
                     f"{scale:.1e} for the model's largest): '{norm}' subtracts the batch mean right after it, "
                     f"which cancels any bias. {name} is dead weight that never trains.",
                     f"Drop {name} (Linear(..., bias=False)): BatchNorm's own bias (beta) does its job "
                     f"(lecture 4)." + (" The lecture's batchnorm MLP has no b1." if name == "b1" else ""),
                     title="A bias right before BatchNorm", data=dict(bias=name, max_grad=worst, scale=scale))
    out = _output_without_bias(target)
    if out:
        return Check("bias-before-batchnorm", "warn",
                     f"the output layer {out} has no bias: the logits cannot shift by class, so the model cannot "
                     "learn that some targets are more common than others.",
                     f"Give {out} a bias (bias=True), or end with a normalization that has one.",
                     title="An output layer without a bias")
    if dead:
        name, worst = dead[0]
        return Check("bias-before-batchnorm", "warn", f"{name}'s gradient is zero on this batch (|grad| "
                     f"{worst:.1e}): something after it cancels or blocks it.",
                     f"Find what follows {name}: a normalization (drop the bias), or dead units.",
                     title="A bias that never learns")
    what = f"no bias sits right before a BatchNorm ('{norm}')" if norm else "no BatchNorm"
    return Check("bias-before-batchnorm", "pass", f"{what}; every bias gets a gradient, and the output layer has "
                 "a bias.", title="Biases are where they belong")


def _is_norm_param(target, p):
    for _, layer in target.layers:
        if is_batchnorm(layer) or type(layer).__name__ in ("LayerNorm",):
            if any(q is p for q in (layer.parameters() if callable(getattr(layer, "parameters", None)) else [])):
                return True
    return False


def _output_without_bias(target):
    """The last layer with a weight matrix (the output layer), when it has no bias and no BatchNorm follows it."""
    weighted = [k for k, (_, layer) in enumerate(target.layers)
                if isinstance(getattr(layer, "weight", None), torch.Tensor) and layer.weight.ndim == 2
                and "Embedding" not in type(layer).__name__]
    if not weighted:
        return None
    name, layer = target.layers[weighted[-1]]
    if getattr(layer, "bias", None) is None and not any(is_batchnorm(m) for _, m in target.layers[weighted[-1]:]):
        return f"'{name}'"
    return None


# -----------------------------------------------------------------------------
# 6. batch independence (view vs permute)


def batch_independence(target, X):
    """Example i's output must not depend on example j's input (j != i) in eval mode: the gradient of i's
    output with respect to j's first floating-point tensor (X itself, or the embedding's output when X holds
    indices) is zero. The first layer whose output already depends on j is where examples mix."""
    i = len(X) // 2
    with _quiet(target):
        t = target.copy()
        t.eval()
        stuck = [n for n, m in t.norms() if is_batchnorm(m) and getattr(m, "training", False)]
        leaf, outs = [], []

        def tap(name, out):
            if not isinstance(out, torch.Tensor) or out.ndim == 0 or len(out) != len(X):
                return out
            if not leaf and out.is_floating_point():
                out = out.detach().requires_grad_(True)  # the first floating-point tensor: differentiate here
                leaf.append((name, out))
                return out
            if leaf and out.requires_grad:
                outs.append((name, out))
            return out

        logits = t.forward(X, tap)
        if not leaf:
            return Check("batch-independence", "skip", "no floating-point tensor with the batch's first dimension "
                         "was found to differentiate against.", title="Nothing to differentiate")
        first, e = leaf[0]
        def mixing(out):
            """(largest gradient from another example, example i's own) of i's `out` w.r.t. the leaf"""
            (g,) = torch.autograd.grad((out[i] * _probe(out[i])).sum(), e, retain_graph=True,
                                       allow_unused=True)
            if g is None:
                return 0.0, 0.0, i
            rows = g.abs().flatten(1).max(1).values
            own = rows[i].item()
            rows[i] = 0
            return rows.max().item(), own, int(rows.argmax())

        other, own, j = mixing(logits)
        if own == 0.0 and other == 0.0:
            return Check("batch-independence", "skip", f"example {i}'s output does not depend on '{first}' at all.",
                         title="Nothing to differentiate")
        if other <= MIXING_TOL * own:
            return Check("batch-independence", "pass",
                         f"in eval mode the gradient of example {i}'s output with respect to every other example's "
                         f"'{first}' output is exactly 0 ({len(X)} examples): no example leaks into another.",
                         title="Examples stay independent")
        where = "the output"
        for name, out in outs:
            o, s, _ = mixing(out)
            if o > MIXING_TOL * max(s, 1e-30):
                where = name
                break
    evidence = (f"in eval mode the gradient of example {i}'s output with respect to example {j}'s '{first}' output "
                f"is {other:.2e} (its own: {own:.2e}): example {i} depends on other examples. The first layer "
                f"whose output mixes them is '{where}'")
    if where in stuck:
        return Check("batch-independence", "warn", evidence + ", a BatchNorm still in training mode after eval() "
                     "(see train-eval-mode): it normalizes by the batch.",
                     "Fix train-eval-mode first; in eval mode BatchNorm uses its running statistics.",
                     title="Examples mix through BatchNorm in training mode", data=dict(layer=where))
    return Check("batch-independence", "fail", evidence + ": a view() or reshape() there reorders the batch "
                 "dimension into the others (view only re-labels memory; permute moves axes).",
                 f"In '{where}', keep the batch dimension first and untouched: x.view(B, T // n, C * n) on a (B, T, C) "
                 "tensor; use x.permute(...) to swap axes, never view().",
                 title="Examples mix: view() where permute() was meant", data=dict(layer=where))


def _probe(out):
    """Fixed random weights on example i's outputs: a sum alone could cancel (softmax rows sum to 1)."""
    return torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out.device, out.dtype)


# -----------------------------------------------------------------------------
# 7. under- or over-fitting: the diagnosis's own verdict (core.capture.diagnose.fit_verdict)


def fit(subject, evals):
    if not evals:
        return Check("fit", "skip", "needs train and val loss estimates after some training (lecture 3's reading "
                     "of train against dev): python -m core doctor trains briefly and estimates them.",
                     title="No train/val losses yet")
    found = fit_verdict(subject or Subject(), evals)
    if not found:
        step, tr, va = evals[-1]
        return Check("fit", "skip", f"train {tr:.4f}, val {va:.4f} at step {step:,}: the model has not learned yet "
                     "(too few steps, or training that does not work), so under/over-fitting cannot be read.",
                     title="Too early to tell")
    f = found[0]
    return Check("fit", "warn" if f.severity in ("warn", "error") else "pass", f.evidence, f.fix, title=f.title)
