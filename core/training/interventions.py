"""
Interventions mid-run, a teaching demo's best moment: change a layer or the learning rate while the
run trains, at a step boundary, and watch the charts answer.

    scale:LAYER:K          the layer's weights *= K (W1 *= 0.2 is lecture 4's tanh fix, applied late)
    reinit:LAYER           the layer's parameters drawn afresh from their original init
    reinit:LAYER:kaiming   its weight drawn as Kaiming's: randn * gain / fan_in**0.5 (bias zeros)
    lr:VALUE               the learning rate from this step on, over the decay schedule
                           (lr:0 freezes the weights, and stays 0 past the decay step)
    bn:train | bn:eval     BatchNorm's mode when the run samples (train: lecture 4's sampling bug)

LAYER is named as the CLI's JSON names things: a parameter as `weights` names it ("W1",
"0 Linear.weight", "blocks.0.sa.proj.weight") or a layer as `activations` and the model's layer list
name it ("batchnorm", "3 Linear", "lm_head"). A layer's weights are its first parameter (weight,
gamma, bngain); reinit re-draws all of its parameters.

Replay: an applied intervention is recorded as {step, action, args}. A run given the same list (its
spec's "interventions", or --intervene on the CLI) applies each at the same boundary -- before that
step trains -- and with the same seed gets the same numbers: a reinit draws from a generator seeded
by the run's seed and the step, never from the batches' generator.
"""

import math
import zlib
from dataclasses import dataclass

import torch
import torch.nn as nn

ACTIONS = ("scale", "reinit", "lr", "bn")
USAGE = "one of scale:LAYER:K, reinit:LAYER, reinit:LAYER:kaiming, lr:VALUE, bn:train, bn:eval"
MAX_LR = 1e6  # as a spec's lr


class InterventionError(ValueError):
    """An intervention that cannot be applied; the message says why, in one line."""


@dataclass(frozen=True)
class Intervention:
    step: int     # applied at the boundary before this step trains
    action: str   # scale | reinit | lr | bn
    args: tuple   # scale: (layer, k); reinit: (layer,) or (layer, "kaiming"); lr: (value,); bn: ("train"|"eval",)

    def to_dict(self):
        return dict(step=self.step, action=self.action, args=list(self.args))

    def command(self):
        """As typed after the step: scale:W1:0.5 (the CLI's --intervene STEP:ACTION, the worker's command)."""
        return ":".join([self.action] + [f"{a:g}" if isinstance(a, float) else str(a) for a in self.args])

    def label(self):
        """A chart marker's short text."""
        a = self.args
        if self.action == "scale":
            return f"{a[0]} ×{a[1]:g}"
        if self.action == "reinit":
            return f"reinit {a[0]}" + (" (Kaiming)" if len(a) > 1 else "")
        if self.action == "lr":
            return f"lr {a[0]:g}"
        return f"BN {a[0]} mode"


# -----------------------------------------------------------------------------
# reading them: "STEP:ACTION" text or {step, action, args} (a spec, a run's record)


def _number(text, what, lo=-math.inf, hi=math.inf):
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InterventionError(f"{what} must be a number (got {text!r})") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise InterventionError(f"{what} must be a finite number from {lo:g} to {hi:g} (got {text!r})"
                                if math.isfinite(lo) else f"{what} must be a finite number (got {text!r})")
    return v


def parse(text, step=None):
    """'STEP:ACTION' (step=None) or 'ACTION' at `step` -> Intervention; InterventionError on bad syntax.
    Layer names are checked against a model by check()."""
    text = str(text).strip()
    if step is None:
        head, _, text = text.partition(":")
        try:
            step = int(head)
        except ValueError:
            raise InterventionError(f"an intervention is STEP:ACTION, e.g. 500:scale:W1:0.5 (got {head!r} "
                                    "as the step)") from None
    return make(step, *text.split(":"))


def make(step, action="", *args):
    """An Intervention from its parts, checked for shape and numbers."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InterventionError(f"an intervention's step must be a whole number >= 0 (got {step!r})")
    args = [str(a).strip() if not isinstance(a, (int, float)) or isinstance(a, bool) else a for a in args]
    example = {"scale": "scale:W1:0.5", "reinit": "reinit:W1 or reinit:W1:kaiming", "lr": "lr:0.01",
               "bn": "bn:train"}
    if action not in ACTIONS:
        raise InterventionError(f"unknown intervention {action!r}: {USAGE}")
    n = {"scale": (2,), "reinit": (1, 2), "lr": (1,), "bn": (1,)}[action]
    if len(args) not in n or (args and args[0] == ""):
        raise InterventionError(f"{action} is written {example[action]} (got {':'.join(map(str, [action, *args]))})")
    if action == "scale":
        args = [args[0], _number(args[1], "scale's k")]
    elif action == "reinit" and len(args) == 2 and args[1] != "kaiming":
        raise InterventionError(f"reinit takes the original init or kaiming (got {args[1]!r})")
    elif action == "lr":
        args = [_number(args[0], "the learning rate", 0.0, MAX_LR)]
    elif action == "bn" and args[0] not in ("train", "eval"):
        raise InterventionError(f"bn is bn:train or bn:eval (got {args[0]!r})")
    return Intervention(step, action, tuple(args))


def from_list(items):
    """A spec's or a record's list (texts 'STEP:ACTION' or dicts {step, action, args}), in step order."""
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise InterventionError(f"interventions must be a list (got {items!r})")
    out = []
    for it in items:
        if isinstance(it, str):
            out.append(parse(it))
        elif isinstance(it, dict) and isinstance(it.get("args", []), (list, tuple)):
            out.append(make(it.get("step"), it.get("action", ""), *it.get("args", [])))
        else:
            raise InterventionError(f"an intervention is 'STEP:ACTION' or {{step, action, args}} (got {it!r})")
    return sorted(out, key=lambda iv: iv.step)  # stable: two at one step keep their order


# -----------------------------------------------------------------------------
# naming a model's weights


def _layers(model):
    if isinstance(model, nn.Module):
        return [(n, m) for n, m in model.named_modules() if n]
    return list(getattr(model, "named_layers", list)())


def _own_params(layer):
    if isinstance(layer, nn.Module):
        return list(layer.named_parameters(recurse=False))
    return list(getattr(layer, "named_parameters", list)())


def names(model):
    """What LAYER may be: the parameters, then the layers that hold parameters of their own."""
    held = {id(p) for _, p in model.named_parameters()}
    return [n for n, _ in model.named_parameters()] + [
        n for n, layer in _layers(model) if any(id(p) in held for _, p in _own_params(layer))]


def resolve(model, name, whole_layer=False):
    """[(parameter name, tensor)] that LAYER names: the parameter itself, or a layer's weight
    (whole_layer: all of its parameters). InterventionError for a name the model does not have."""
    params = dict(model.named_parameters())
    if name in params:
        return [(name, params[name])]
    layer = dict(_layers(model)).get(name)
    if layer is not None:
        by_id = {id(p): n for n, p in params.items()}
        own = [(by_id[id(p)], p) for _, p in _own_params(layer) if id(p) in by_id]
        if own:
            return own if whole_layer else own[:1]
        raise InterventionError(f"layer {name!r} has no weights of its own ({type(layer).__name__}); "
                                f"name a weight: {_some(names(model))}")
    raise InterventionError(f"unknown layer {name!r}: this {type(model).__name__} has {_some(names(model))}")


def _some(items, n=8):
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def has_batchnorm(model):
    return any("BatchNorm" in type(layer).__name__ for _, layer in _layers(model))


def check(model, iv):
    """InterventionError if `iv` cannot apply to `model` (unknown layer, Kaiming on a vector, no BatchNorm)."""
    if iv.action == "scale":
        resolve(model, iv.args[0])
    elif iv.action == "reinit":
        targets = resolve(model, iv.args[0], whole_layer=True)
        if len(iv.args) > 1 and targets[0][1].dim() != 2:
            raise InterventionError(f"Kaiming's init draws a 2-D weight; {targets[0][0]!r} has shape "
                                    f"{tuple(targets[0][1].shape)}")
    elif iv.action == "bn" and not has_batchnorm(model):
        raise InterventionError(f"this {type(model).__name__} has no BatchNorm layer")
    return iv


# -----------------------------------------------------------------------------
# applying them


class Interventions:
    """
    A run's interventions: the planned ones (a spec's list, applied when their step comes), the applied
    ones (the record), and the state they leave -- a learning rate over the schedule, the sampling mode.
    The model's parameters are changed in place (the optimizer and the lecture layers that wrap them keep
    the same tensors).
    """

    def __init__(self, model, seed, plan=(), steps=None):
        self.model = model
        self.seed = seed
        self.planned = [check(model, iv) for iv in from_list(plan)]
        if steps is not None and self.planned and self.planned[-1].step >= max(steps, 1):
            late = self.planned[-1]
            raise InterventionError(f"intervention {late.step}:{late.command()} comes after the run's last "
                                    f"step ({steps - 1:,})")
        self.applied = []
        self.lr = None              # the learning rate an lr intervention set (None: the schedule's)
        self.sample_mode = "eval"   # BatchNorm's mode when the run samples
        # each parameter's mean and std at step 0: "its original init" for a reinit (the lectures draw
        # randn * scale, zeros and ones; GPT normal(0, 0.02))
        with torch.no_grad():
            self._init = {id(p): (p.float().mean().item(), p.float().std().item() if p.numel() > 1 else 0.0)
                          for p in model.parameters()}
        # Kaiming's gain for the model's nonlinearity: 5/3 for tanh (lecture 4), sqrt(2) for ReLU, 1 for none
        kinds = {type(m).__name__ for _, m in _layers(model)}
        self._kaiming_gain = 5 / 3 if "Tanh" in kinds else 2 ** 0.5 if "ReLU" in kinds else 1.0

    def due(self, step):
        """The planned interventions whose step has come, removed from the plan."""
        out = []
        while self.planned and self.planned[0].step <= step:
            out.append(self.planned.pop(0))
        return out

    def apply(self, iv):
        """Apply one intervention now; returns it, as recorded."""
        check(self.model, iv)
        a = iv.args
        with torch.no_grad():
            if iv.action == "scale":
                for _, p in resolve(self.model, a[0]):
                    p.mul_(a[1])
            elif iv.action == "reinit":
                # the run's seed, the step and the layer: replays draw alike, two layers at one step do not
                g = torch.Generator().manual_seed((self.seed * 1_000_003 + iv.step * 65_537
                                                   + zlib.crc32(a[0].encode())) % 2**63)
                for _, p in resolve(self.model, a[0], whole_layer=True):
                    p.copy_(self._draw(p, g, kaiming=len(a) > 1))
            elif iv.action == "lr":
                self.lr = a[0]
            else:
                self.sample_mode = a[0]
        self.applied.append(iv)
        return iv

    def _draw(self, p, g, kaiming):
        if kaiming:
            if p.dim() != 2:
                return torch.zeros_like(p)  # the layer's bias, as a fresh Linear has it
            # lecture layers are (fan_in, fan_out); nn.Linear's weight is (fan_out, fan_in)
            fan_in = p.shape[1] if isinstance(self.model, nn.Module) else p.shape[0]
            return torch.randn(p.shape, generator=g) * self._kaiming_gain / fan_in**0.5
        mean, std = self._init.get(id(p), (0.0, 1.0))
        if std == 0:
            return torch.full(p.shape, mean)  # a constant init (zeros, ones) comes back exactly
        return torch.randn(p.shape, generator=g) * std + mean

    def record(self):
        """The applied interventions as the runs file and the JSON keep them: [{step, action, args}]."""
        return [iv.to_dict() for iv in self.applied]


def replay_spec(spec, record):
    """A run's spec with its applied interventions (a run's meta "interventions") as the plan: training it
    with the same seed gives the same numbers."""
    return {**spec, "interventions": [dict(r) for r in record or []]}
