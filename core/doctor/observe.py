"""
What the learner's loop shows the doctor while watch() runs it: the mistakes that live in the loop,
not in the model. Cheap by design -- the learner's numbers do not move by one bit:

- train/eval mode, at every forward's end (a few attribute reads): a forward under no_grad with
  BatchNorm or dropout in training mode is an evaluation (or sampling) in training mode; a backward
  after a forward with them in eval mode is training in eval mode;
- zero_grad, on capture steps only (the recorder's cadence): a hook on each parameter's gradient runs
  before autograd adds it into .grad, so it sees whether .grad still holds the last step's;
- softmax into the loss, on capture steps only: a torch function mode sees the tensor reaching
  cross_entropy / nll_loss (core.doctor.checks.LossInputs), from the forward's end to the next step().

The watcher calls arm() before a capture step's forward, forward_done() at each forward's end and
step_done() after each step; seen() is what examine() reads.
"""

import threading

import torch

from core.doctor.checks import LossInputs
from core.doctor.target import is_batchnorm, is_dropout

KEEP = 20  # findings of one kind kept (the first ones are the evidence)
# the hooks and the function mode cost about a step's time on the steps they watch: with a capture every step,
# the loop is watched on its first capture steps, then at most every OBSERVE_EVERY steps (bench/bench_watch.py)
OBSERVE_FIRST = 3
OBSERVE_EVERY = 1000


class Observer:

    def __init__(self, named_layers, named_params):
        """named_layers: [(name, layer)] of the watched model (an nn.Module's named_modules(), or the lecture
        layers); named_params: [(name, tensor)] that the loop trains."""
        self.norms = [(n, m) for n, m in named_layers if is_batchnorm(m) or is_dropout(m)]
        self.params = [(n, p) for n, p in named_params if isinstance(p, torch.Tensor) and p.requires_grad]
        self.step = 0                # the step the next forward belongs to
        self.steps = 0               # steps seen end
        self.evals = 0               # forwards under no_grad (evaluation, sampling)
        self.eval_in_train = []      # (step, [layers]) forwards under no_grad with a mode-dependent layer training
        self.train_in_eval = []      # (step, [layers]) backwards after a forward with them all in eval mode
        self.stale = []              # (step, parameter, |grad|): the first .grad found full as a step's backward began
        self.checked = 0             # capture steps whose first backward was checked
        self.stale_steps = 0         # ... and of those, the steps that found a stale .grad
        self._stale_at = None
        self.loss_inputs = []        # ("cross_entropy", "probabilities" | "logits" | ...) on capture steps
        self.paused = False          # the doctor is examining: its own forwards are not the loop's
        self._hooks = []
        self._fresh = set()          # parameters whose first backward of this step has not come yet
        self._eval_modes = None      # the mode-dependent layers in eval mode at the last forward with grad
        self._mode = None            # the LossInputs mode while armed, and the thread that entered it
        self._thread = None
        self._no_mode = False        # the mode could not be left cleanly once: not used again
        self._observed = 0           # capture steps watched so far, and the last one
        self._observed_at = None

    # --- called by the watcher --------------------------------------------------------

    def arm(self, step):
        """Before a capture step: hooks on the parameters' gradients (and, from the forward's end, eyes on the
        loss's input)."""
        self.step = step
        if self._hooks or self.paused:
            return
        if self._observed >= OBSERVE_FIRST and step - self._observed_at < OBSERVE_EVERY:
            return
        self._observed, self._observed_at = self._observed + 1, step
        self._fresh = {id(p) for _, p in self.params}
        self._hooks = [p.register_hook(self._grad_hook(name, p)) for name, p in self.params]

    def forward_done(self):
        if self.paused:
            return
        if self._hooks and self._mode is None and torch.is_grad_enabled() and not self._no_mode:
            # a function mode belongs to the thread that enters it: entered here, in the loop's own thread,
            # after the training forward, so it sees the loss the loop computes from the logits
            self._mode, self._thread = LossInputs(), threading.get_ident()
            self._mode.__enter__()
        if not torch.is_grad_enabled():
            self.evals += 1
            training = [n for n, m in self.norms if m.training]
            if training and len(self.eval_in_train) < KEEP:
                self.eval_in_train.append((self.step, training))
        elif self.norms:
            self._eval_modes = [n for n, m in self.norms if not m.training] \
                if not any(m.training for _, m in self.norms) else None

    def step_done(self, step):
        self.steps += 1
        self.step = step + 1
        self._disarm()

    def close(self):
        self._disarm()

    def pause(self):
        """The doctor examines now: its own forwards and backwards are not the loop's."""
        self._disarm()
        self.paused = True

    def resume(self, step=None):
        """Back to watching; step: the capture step the loop is armed for (None: not armed)."""
        self.paused = False
        if step is not None:
            self.arm(step)

    def seen(self):
        """What the loop showed, as examine(seen=...) reads it."""
        return dict(steps=self.steps, evals=self.evals, eval_in_train=list(self.eval_in_train),
                    train_in_eval=list(self.train_in_eval), stale=list(self.stale), checked=self.checked,
                    stale_steps=self.stale_steps,
                    loss_inputs=list(self.loss_inputs))

    # --- hooks ------------------------------------------------------------------------

    def _grad_hook(self, name, p):
        def hook(grad):
            # runs before autograd adds `grad` into p.grad: p.grad is what the loop left there
            if self.paused or id(p) not in self._fresh:
                return None
            self._fresh.discard(id(p))
            if self.step == 0:
                return None  # before the first update every .grad is empty whatever the loop does
            if len(self._fresh) == len(self.params) - 1:  # the first parameter of this step's backward
                self.checked += 1
                if self._eval_modes and len(self.train_in_eval) < KEEP:
                    self.train_in_eval.append((self.step, self._eval_modes))
            if p.grad is not None:
                size = p.grad.abs().max().item()
                if size > 0 and self.step != self._stale_at:
                    self._stale_at = self.step
                    self.stale_steps += 1
                    if len(self.stale) < KEEP:
                        self.stale.append((self.step, name, size))
            return None
        return hook

    def _disarm(self):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._mode is not None:
            mode, self._mode = self._mode, None
            n = torch._C._len_torch_function_stack()
            if threading.get_ident() == self._thread and n and torch._C._get_function_stack_at(n - 1) is mode:
                mode.__exit__(None, None, None)
            else:  # another thread steps, or the loop pushed a mode of its own after ours: never pop the learner's
                self._no_mode = True
            self.loss_inputs += mode.seen[:KEEP - len(self.loss_inputs)]
