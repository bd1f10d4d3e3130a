"""
What the doctor examines, whatever the learner hands it: one of our lecture models (makemore's
contract, logits, loss = model(idx, targets)), any torch.nn.Module, or a lecture-style list of
from-scratch layers (Linear, BatchNorm1d, Tanh, Embedding, FlattenConsecutive, Sequential: objects
with __call__, .out and .parameters()). A Target runs them all the same way: a forward that can be
tapped layer by layer, the loss as the learner computes it, the train/eval switch, and a copy.
"""

import copy
import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.models.layers import NotLayers, listed_layers, named_params, opened


class DoctorError(ValueError):
    """Input the doctor cannot examine: the one message says what is wrong and what to pass instead."""


NORM_TYPES = ("BatchNorm1d", "BatchNorm2d", "BatchNormStd", "NinjaBatchNorm")


def is_batchnorm(layer):
    return type(layer).__name__ in NORM_TYPES or isinstance(layer, nn.modules.batchnorm._BatchNorm)


def is_dropout(layer):
    return isinstance(layer, nn.Dropout) and layer.p > 0


def default_loss(logits, Y):
    """The lectures' loss: cross_entropy over the last dimension ((B, T, C) logits are viewed as (B*T, C))."""
    if logits.ndim == 3:
        B, T, C = logits.shape
        return F.cross_entropy(logits.view(B * T, C), Y.view(B * T))
    return F.cross_entropy(logits, Y)


class Target:
    """
    kind: "module" (an nn.Module), "lecture" (a model with named_layers() and forward(idx, targets), ours)
    or "layers" (a list, dict or lecture Sequential of from-scratch layers). params: [(name, tensor)] the
    trained tensors; layers: [(name, layer)] in forward order (modules: every submodule, by name).
    """

    def __init__(self, model, loss_fn=None, params=None):
        self.model, self.loss_fn = model, loss_fn
        if isinstance(model, nn.Module):
            self.kind = "module"
            self.layers = [(n, m) for n, m in model.named_modules() if n]
            self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            self.contract = _takes_targets(model.forward)
        elif callable(getattr(model, "named_layers", None)) and callable(getattr(model, "forward", None)):
            self.kind = "lecture"
            self.layers = opened(model.named_layers())
            self.params = list(model.named_parameters())
            self.contract = True
        else:
            self.kind = "layers"
            try:
                self.layers = opened(listed_layers(model, "the doctor", "examine", "examine(layers, X, Y)"))
            except NotLayers as e:
                raise DoctorError(str(e)) from None
            self.params = params if params is not None else named_params(self.layers)
            self.contract = False
        if loss_fn is not None:
            self.contract = False  # the learner's own loss over the model's output
        if not self.params:
            raise DoctorError(f"{describe(model)} has no parameters: there is nothing to train, so nothing to "
                              "examine (a lecture layer lists its tensors in .parameters())")

    # --- running it ---------------------------------------------------------------

    def forward(self, X, tap=None):
        """The logits. tap(name, out) -> out sees each layer's output in forward order and may replace it."""
        tap = tap or (lambda name, out: out)
        if self.kind == "module":
            handles = [m.register_forward_hook(_hook(tap, n)) for n, m in self.layers]
            try:
                out = self.model(tap("input", X))
            finally:
                for h in handles:
                    h.remove()
            return out[0] if isinstance(out, tuple) else out
        x = tap("input", X)
        if self.kind == "lecture" and hasattr(self.model, "embed"):
            x = tap("embed", self.model.embed(x))
        for name, layer in self.layers:
            x = tap(name, layer(x))
        return x

    def loss(self, X, Y):
        """(logits, loss) as the model computes it: its own (idx, targets) contract, else loss_fn(logits, Y)."""
        if self.contract:
            logits, loss = self.model(X, Y)
        else:
            logits = self.forward(X)
            loss = (self.loss_fn or default_loss)(logits, Y)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise DoctorError(f"the loss must be one number (a tensor), got {type(loss).__name__}"
                              + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
        return logits, loss

    # --- train and eval ------------------------------------------------------------

    def norms(self):
        """The layers whose behaviour depends on train/eval mode: BatchNorm, and dropout that drops."""
        return [(n, m) for n, m in self.layers if is_batchnorm(m) or is_dropout(m)]

    def modes(self):
        return [(layer, getattr(layer, "training", None)) for _, layer in self.layers] + \
               [(self.model, getattr(self.model, "training", None))]

    @staticmethod
    def set_modes(saved):
        for obj, mode in saved:
            if mode is not None:
                if isinstance(obj, nn.Module):
                    obj.training = mode  # this object only: the saved list holds every submodule
                else:
                    setattr(obj, "training", mode)

    def eval(self):
        """The model's own eval() where it has one (a bug in it is what the train/eval check looks for); for a
        list of layers, the lecture's way: layer.training = False on each."""
        if callable(getattr(self.model, "eval", None)):
            self.model.eval()
        else:
            for _, layer in self.layers:
                if hasattr(layer, "training"):
                    layer.training = False

    def train(self):
        if callable(getattr(self.model, "train", None)):
            self.model.train()
        else:
            for _, layer in self.layers:
                if hasattr(layer, "training"):
                    layer.training = True

    # --- a copy to train -------------------------------------------------------------

    def copy(self):
        """A Target over a deep copy of the model: its own tensors (graph outputs such as .out are left
        behind), no hooks (the recorder's or watch's), the same train/eval modes."""
        memo = {id(t): None for t in _graph_outputs(self.model)}
        if self.kind == "layers":
            originals = [p for _, p in self.params]
            twin = copy.deepcopy((self.model, originals), memo)
            model, params = twin
            names = [n for n, _ in self.params]
            t = Target(model, self.loss_fn, params=list(zip(names, params)))
        else:
            model = copy.deepcopy(self.model, memo)
            t = Target(model, self.loss_fn)
        if isinstance(model, nn.Module):
            for m in model.modules():
                for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks):
                    hooks.clear()
        for _, p in t.params:
            p.grad = None
            p.requires_grad_(True)
        return t


def _graph_outputs(obj, depth=4):
    """Tensors that are outputs of a graph (a lecture layer's .out), reachable from obj through attributes,
    lists and dicts: deepcopy refuses them, and a copy has no use for them."""
    if isinstance(obj, torch.Tensor):
        return [obj] if not obj.is_leaf else []
    if depth == 0 or isinstance(obj, (str, bytes, int, float, torch.Generator)):
        return []
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    else:
        items = getattr(obj, "__dict__", {}).values()
    return [t for v in list(items) for t in _graph_outputs(v, depth - 1)]


def _hook(tap, name):
    def hook(module, inputs, out):
        if isinstance(out, torch.Tensor):
            return tap(name, out)
    return hook


def _takes_targets(forward):
    try:
        ps = [p for p in inspect.signature(forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(ps) >= 2 and ps[1].name in ("targets", "target", "y", "Y", "labels")


def describe(model):
    if isinstance(model, nn.Module):
        return f"the {type(model).__name__}"
    if isinstance(model, (list, tuple, dict)):
        return f"the list of {len(model)} layers"
    return f"the {type(model).__name__}"
