"""
The training loop: a Run that can be advanced N steps, paused, resumed and
stopped, written as the lectures write it (forward, p.grad = None, backward,
p.data += -lr * p.grad, lossi), with the recorder called on capture steps only.

Data reaches the loop as a batch source: anything with get_batch(split) ->
(X, Y) and split_loss(model, split) -> float. core never imports data/.
"""

import contextlib
import math
import os
import threading
import time

import torch

from core.capture.recorder import Recorder
from core.runs.store import RunStore
from core.training.interventions import InterventionError, Interventions, parse

# the saturation raster runs the probe batch through the model, a forward pass of its own (about a
# third of a small model's step): it is taken on a capture step at most once every PROBE_EVERY steps
# (and always at the last step). At the default cadence (100) every capture gets a fresh one; with
# a capture every step one in 100 does, and the others carry the latest (Capture.raster_step says when)
PROBE_EVERY = 100
COLLECT_EVERY = 8  # finished captures go to the store every this many steps, and all at the end of advance()

# -----------------------------------------------------------------------------
# setup


def configure_torch(threads=1):
    """One torch thread by default: on 2 cores more threads make throughput collapse at random."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(threads)


def pick_device(device="auto"):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda (got {device!r}).")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but torch sees no CUDA GPU here.")
    return device


# -----------------------------------------------------------------------------
# batch sources


class TensorBatches:
    """makemore: minibatches of Xtr/Ytr drawn with the model's generator; full splits for evaluation."""

    def __init__(self, splits, batch_size=32, generator=None, device="cpu"):
        self.splits = {k: (X.to(device), Y.to(device)) for k, (X, Y) in splits.items()}
        self.batch_size = batch_size
        self.generator = generator
        self.device = device

    def get_batch(self, split="train"):
        X, Y = self.splits[split]
        if not self.batch_size:  # full batch (lecture 2)
            return X, Y
        ix = torch.randint(0, X.shape[0], (self.batch_size,), generator=self.generator)
        if self.device != "cpu":
            ix = ix.to(self.device)
        return X[ix], Y[ix]

    @torch.no_grad()
    def split_loss(self, model, split):
        """The loss on a whole split in eval mode; None for a split this source does not have."""
        if split not in self.splits:
            return None
        X, Y = self.splits[split]
        if len(Y) == 0:
            return float("nan")
        was_training = getattr(model, "training", True)
        model.eval()
        _, loss = model(X, Y)
        model.train(was_training)
        return loss.item()


class TextBatches:
    """GPT: get_batch over running text; estimate_loss averages eval_iters random batches."""

    def __init__(self, get_batch, eval_iters=200, device="cpu"):
        self._get_batch = get_batch  # split -> (x, y), e.g. TextDataset.get_batch bound to a batch size
        self.eval_iters = eval_iters
        self.device = device

    def get_batch(self, split="train"):
        x, y = self._get_batch(split)
        return x.to(self.device), y.to(self.device)

    @torch.no_grad()
    def split_loss(self, model, split):
        if split not in ("train", "val"):  # running text has no test split
            return None
        model.eval()
        losses = torch.zeros(self.eval_iters)
        for k in range(self.eval_iters):
            X, Y = self.get_batch(split)
            _, loss = model(X, Y)
            losses[k] = loss.item()
        model.train()
        return losses.mean().item()


# -----------------------------------------------------------------------------
# the run


def run_name(model, meta):
    """A run's name in the runs file: model/preset."""
    meta = meta or {}
    if meta.get("model"):
        return f"{meta['model']}/{meta.get('preset', '')}".rstrip("/")
    return type(model).__name__


class Run:
    """
    state: ready -> running <-> paused -> finished | stopped | diverged.
    advance(n) trains up to n steps in the calling thread; pause()/stop() may be
    called from any other thread and take effect before the next step. intervene()
    changes a layer or the learning rate between two steps (core.training.interventions).
    """

    def __init__(self, model, batches, cfg, store=None, capture=True, device="cpu", meta=None, probe=None,
                 on_eval=None, interventions=()):
        self.model = model
        self.probe = probe          # a fixed batch of inputs for the saturation raster (None = no raster)
        self.on_eval = on_eval      # called with the step after each loss estimate (the worker samples text there)
        self.batches = batches
        self.cfg = cfg
        # the run's rows in the runs file: a new run there unless the caller (the worker) has one
        self.store = store if store is not None else RunStore(name=run_name(model, meta))
        self._owns_store = store is None  # a caller's store (the worker's) is the caller's to flush
        self.device = device
        self.parameters = list(model.parameters())
        self.recorder = (Recorder(model)
                         if (capture and cfg.capture_every and self.parameters) else None)
        self._probed = None         # the last step that ran the probe batch
        self.optimizer = None
        if cfg.optimizer == "adamw" and self.parameters:
            self.optimizer = torch.optim.AdamW(self.parameters, lr=cfg.lr)
        elif cfg.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw (got {cfg.optimizer!r}).")
        # lecture 5's exercise 4: the model fills every p.grad itself; the forward builds no graph
        self.manual = cfg.backward == "manual"
        if cfg.backward not in ("autograd", "manual"):
            raise ValueError(f"backward must be autograd or manual (got {cfg.backward!r}).")
        if self.manual and not hasattr(model, "manual_backward"):
            raise ValueError(f"{type(model).__name__} has no manual backward; only the ninja network does.")
        self.step = 0               # the next step to run
        # planned interventions (a spec's list) apply when their step comes; intervene() applies one now
        self.interventions = Interventions(model, cfg.seed, interventions, steps=cfg.steps)
        self.state = "ready"
        self.init_loss = None
        self.diverged_at = None
        self.train_seconds = 0.0
        self.final = {}             # split -> loss in eval mode, set by finish()
        self._pause = threading.Event()
        self._stop = threading.Event()
        self.store.set_meta(**{**(meta or {}), "state": self.state, "steps": cfg.steps})

    # --- control, from any thread ------------------------------------------------

    def pause(self):
        if self.state in ("ready", "running"):
            self._pause.set()
            self._set_state("paused")

    def resume(self):
        if self.state == "paused":
            self._pause.clear()
            self._set_state("running")

    def stop(self):
        self._stop.set()
        if self.state in ("ready", "running", "paused"):
            self._set_state("stopped")

    @property
    def done(self):
        return self.state in ("finished", "stopped", "diverged")

    def _set_state(self, state, **kw):
        self.state = state
        self.store.set_meta(state=state, **kw)

    # --- training ------------------------------------------------------------------

    def advance(self, n=1):
        """Train up to n more steps (fewer if the run ends or is paused/stopped). Returns steps done."""
        if self.done or self._pause.is_set():
            return 0
        if self.state == "ready":
            self._set_state("running")
        n = min(n, self.cfg.steps - self.step)
        t0 = time.perf_counter()
        done = 0
        try:
            for _ in range(n):
                if self._stop.is_set() or self._pause.is_set():
                    break
                for iv in self.interventions.due(self.step):
                    self._apply(iv)
                if not self._train_step(self.step):
                    break
                self.step += 1
                done += 1
                ev = self.cfg.eval_every
                if ev and self.step % ev == 0 and self.step < self.cfg.steps:
                    self.train_seconds += time.perf_counter() - t0
                    self.store.add_eval(self.step, *self.estimate_loss())
                    if self.on_eval is not None:
                        self.on_eval(self.step)
                    t0 = time.perf_counter()
        finally:
            # every capture of these steps lands in the store before advance() returns: a pause,
            # stop, divergence or the end never leaves one behind
            self._collect(wait=True)
        self.train_seconds += time.perf_counter() - t0
        if self.step >= self.cfg.steps and not self.done:
            self.finish()
        return done

    def intervene(self, action):
        """Apply an intervention ("scale:W1:0.5", core.training.interventions) now, at the boundary before
        step self.step. Call it from the thread that trains, between advance() calls (the worker does)."""
        if self.done:
            raise InterventionError(f"the run has {self.state}: an intervention needs a run that can still train")
        return self._apply(parse(action, step=self.step))

    def _apply(self, iv):
        self.interventions.apply(iv)
        if self.recorder is not None:
            self.recorder.forget()  # the parameters changed outside an update: the next capture takes a fresh "before"
        self.store.set_meta(interventions=self.interventions.record())
        return iv

    def lr_at(self, i):
        """The schedule's learning rate at step i, unless an lr intervention set one."""
        return self.cfg.lr_at(i) if self.interventions.lr is None else self.interventions.lr

    def run(self, chunk=100):
        """Train to the end in this thread, honouring pause (waits) and stop."""
        while not self.done:
            if self._pause.is_set():
                time.sleep(0.05)
                continue
            self.advance(chunk)

    def _train_step(self, i):
        cfg = self.cfg
        rec = self.recorder
        capture = rec is not None and (i % cfg.capture_every == 0 or i == cfg.steps - 1)
        Xb, Yb = self.batches.get_batch("train")
        if capture:
            rec.begin(i)
        with torch.no_grad() if self.manual else contextlib.nullcontext():
            logits, loss = self.model(Xb, Yb)
        if capture:
            rec.after_forward()
        lossv = loss.item()
        if self.init_loss is None:
            self.init_loss = lossv
            self.store.set_meta(init_loss=lossv)
        if not math.isfinite(lossv):
            if capture:
                rec.capturing = False
            self.diverged_at = i
            self.store.add_step(i, lossv, self.lr_at(i))
            self._set_state("diverged", diverged_at=i,
                            message=f"diverged at step {i}: the loss is {lossv} (try a smaller learning rate)")
            return False
        if not self.parameters:  # the count bigram: nothing to train
            self.store.add_step(i, lossv, 0.0)
            return True
        # backward pass
        if getattr(self.model, "forgets_zero_grad", False):
            pass  # a planted mistake (core.doctor.bugs, no-zero-grad): the gradients are left to accumulate
        elif self.optimizer is None:
            for p in self.parameters:
                p.grad = None
        else:
            self.optimizer.zero_grad(set_to_none=True)
        if self.manual:
            self.model.manual_backward()  # sets every p.grad by hand, no autograd
        else:
            loss.backward()
        # update
        lr = self.lr_at(i)
        if capture:
            rec.after_backward(lossv)
            rec.before_update()
        if self.optimizer is None:
            for p in self.parameters:
                p.data += -lr * p.grad
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
        if capture:
            probe = self.probe is not None and (self._probed is None or i - self._probed >= PROBE_EVERY
                                                or i == cfg.steps - 1)
            if probe:
                self._probed = i
            rec.after_update(probe=self.probe if probe else None)
        self.store.add_step(i, lossv, lr)
        if rec is not None and i % COLLECT_EVERY == 0:
            self._collect()
        return True

    def _collect(self, wait=False):
        """Captures the recorder has finished go to the store (wait: all of them)."""
        rec = self.recorder
        if rec is None:
            return
        for cap in (rec.flush() if wait else rec.ready()):
            self.store.add_capture(cap)
        if wait:
            rec.forget()

    def estimate_loss(self):
        return (self.batches.split_loss(self.model, "train"), self.batches.split_loss(self.model, "val"))

    def finish(self):
        """Final split losses in eval mode (BatchNorm's running statistics); the test split too, when
        the batch source has one -- the lectures look at it once, at the very end."""
        calibrate = getattr(self.model, "calibrate", None)
        if calibrate is not None and "train" in getattr(self.batches, "splits", {}):
            calibrate(self.batches.splits["train"][0])  # lecture 5: BatchNorm statistics over all of Xtr
        train, val = self.estimate_loss()
        self.final = {"train": train, "val": val}
        test = self.batches.split_loss(self.model, "test")
        if test is not None:
            self.final["test"] = test
        if self.cfg.steps > 0:
            self.store.add_eval(self.step, train, val)
            if self.on_eval is not None:
                self.on_eval(self.step)
        self._set_state("finished", final=self.final)

    @property
    def steps_per_s(self):
        return self.step / self.train_seconds if self.train_seconds > 0 else float("nan")

    def close(self):
        if self.recorder is not None:
            self.recorder.close()
        if self._owns_store:
            self.store.close()  # and the runs file it opened: a notebook's run leaves no write-ahead log
