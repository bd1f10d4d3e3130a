"""
The six mistakes of Karpathy's list, planted in our own lecture models: what each is, where it is
planted and what it shows. `--bug NAME` (the CLI, a job spec's "bug") picks one; the Mistakes page
trains it next to the healthy model with the same seed. The variants themselves are in
core.doctor.variants (this table loads without torch: the CLI parses its arguments first).
"""

from dataclasses import dataclass


@dataclass
class Bug:
    model: str        # the lecture model it is planted in
    preset: str       # the preset that shows it (BatchNorm bugs on the BatchNorm MLP)
    check: str        # the doctor's check that catches it
    title: str        # the mistake, as Karpathy's list words it
    symptom: str      # what the live panels show


BUGS = {
    "no-overfit": Bug("mlp", "kaiming", "overfit-one-batch", "Labels reshuffled every step",
                      "The loss never falls far below -ln(1/27) = 3.30: with labels shuffled afresh at every step "
                      "there is nothing to learn beyond how often each letter comes."),
    "eval-mode": Bug("mlp", "batchnorm", "train-eval-mode", "Forgot to toggle train/eval mode",
                     "model.eval() does not reach BatchNorm: evaluation and sampling normalize by the batch in "
                     "hand, so a single sampled name is normalized by itself and comes out garbage."),
    "no-zero-grad": Bug("mlp", "kaiming", "zero-grad", "Forgot to zero the gradients before backward()",
                        "Gradients pile up step after step: the updates grow, the update:data ratios sit far "
                        "above -3 and the loss rises instead of falling."),
    "softmax-loss": Bug("mlp", "kaiming", "softmax-into-loss", "Softmax passed into cross_entropy",
                        "cross_entropy applies its own softmax to probabilities: the loss cannot go below "
                        "ln(26 + e) - 1 = 2.36 and its gradients are tiny, so it crawls."),
    "bias-before-bn": Bug("mlp", "batchnorm", "bias-before-batchnorm", "A bias right before BatchNorm",
                          "b1 is back in front of BatchNorm, which subtracts the batch mean: b1's gradient is "
                          "zero at every step and its histogram never moves. Harmless, but dead weight."),
    "view-permute": Bug("wavenet", "scaled", "batch-independence", "view() where permute() was meant",
                        "The first FlattenConsecutive 'swaps' batch and time with view instead of permute, so "
                        "each example is built from the characters of other examples: the loss stalls above "
                        "the healthy model's."),
}


class BugError(ValueError):
    """A bug that is not planted in the model or preset asked for."""


def bug_for(name, model=None, preset=None):
    """The Bug named `name`, checked against the model and preset asked for (None: the bug's own)."""
    if name not in BUGS:
        raise BugError(f"unknown bug {name!r}; choose one of: {', '.join(BUGS)}")
    bug = BUGS[name]
    if model is not None and model != bug.model:
        raise BugError(f"bug {name!r} is planted in --model {bug.model}, not {model}")
    if preset is not None and bug.preset == "batchnorm" and preset != "batchnorm":
        raise BugError(f"bug {name!r} needs BatchNorm: use --preset batchnorm (or leave --preset out)")
    return bug
