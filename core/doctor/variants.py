"""
The planted mistakes themselves (core.doctor.bugs names them): each variant is a subclass of the
lecture model (or of one of its layers) that overrides the one method where the mistake lives, so
runs, checkpoints and the recorder treat it as the model it was.
"""

import torch
import torch.nn.functional as F

from core.doctor.bugs import BUGS, BugError
from core.models import layers as L
from core.models.mlp import MLP

# -----------------------------------------------------------------------------
# the variants: each overrides the one method where the mistake lives


class ShuffledLabelsMLP(MLP):
    """no-overfit: the targets are shuffled afresh at every forward (a generator of its own, so the run's
    data order is unchanged): no model can fit them, the un-fittable baseline of the overfit check."""

    def forward(self, idx, targets=None):
        if targets is not None:
            targets = targets[torch.randperm(len(targets), generator=self.shuffle, device=targets.device)]
        return super().forward(idx, targets)


class ForgetsEvalMLP(MLP):
    """eval-mode: a hand-written eval()/train() that sets the model's flag and forgets its layers."""

    def train(self, mode=True):
        self.training = mode  # the mistake: the layers (BatchNorm) keep their own mode
        return self


class NoZeroGradMLP(MLP):
    """no-zero-grad: the training loop reads this flag and leaves out the lecture's p.grad = None."""

    forgets_zero_grad = True


class SoftmaxLossMLP(MLP):
    """softmax-loss: probabilities, not logits, into cross_entropy (which applies its own softmax)."""

    def forward(self, idx, targets=None):
        logits, _ = super().forward(idx)
        probs = F.softmax(logits, dim=1)
        loss = None if targets is None else F.cross_entropy(probs, targets)
        return logits, loss


class FlattenConsecutive(L.FlattenConsecutive):
    """view-permute: meant to go time-major with x.permute(1, 0, 2) and back, wrote view: view keeps the
    memory's order and only re-labels it, so row b now holds characters of other examples."""

    def __call__(self, x):
        B, T, C = x.shape
        x = x.view(T, B, C).permute(1, 0, 2)  # the mistake: x.view(T, B, C) is not x.permute(1, 0, 2)
        x = x.reshape(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        self.out = x
        return self.out


def plant(name, model, seed=0):
    """The bug `name` planted in `model` (built from the bug's model and preset); returns the variant. The
    healthy model's tensors are kept, so the variant starts from the same initialization."""
    bug = BUGS[name]
    if name == "view-permute":
        i, (lname, layer) = next((i, nl) for i, nl in enumerate(model.layers)
                                 if isinstance(nl[1], L.FlattenConsecutive))
        model.layers[i] = (lname, FlattenConsecutive(layer.n))  # the lecture's name, "1 FlattenConsecutive"
        return model
    if bug.model != "mlp" or not isinstance(model, MLP):
        raise BugError(f"bug {name!r} is planted in the lecture's MLP")
    if name == "bias-before-bn":
        # the lecture's batchnorm MLP drops b1 ("BatchNorm's bias makes it redundant"): put it back
        model.b1 = torch.zeros(model.W1.shape[1], device=model.W1.device, requires_grad=True)
        model._relink()
        return model
    cls = {"no-overfit": ShuffledLabelsMLP, "eval-mode": ForgetsEvalMLP, "no-zero-grad": NoZeroGradMLP,
           "softmax-loss": SoftmaxLossMLP}[name]
    model.__class__ = cls  # a hack, admitted: the same object and tensors, one method different
    if name == "no-overfit":
        model.shuffle = torch.Generator(device=model.W1.device).manual_seed(seed)
    return model
