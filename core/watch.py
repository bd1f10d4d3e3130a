"""
Watch your own training loop: two lines in a notebook or script, and the dashboard shows the
learner's own network as it trains -- activations, gradients, update ratios, the diagnosis.

    from core.watch import watch

    lab = watch(layers)          # the lecture's list of from-scratch layers, or any nn.Module
    for i in range(max_steps):
        ...                      # the learner's own forward, backward and update, unchanged
        lab.step(loss)           # once per iteration, after the update
    lab.close()                  # optional: marks the run finished (also at interpreter exit)

It is the same Recorder as every run's (core.capture.recorder), writing through a RunStore into the
runs file, so the run shows on the Runs page and in `python -m core runs list/show`. Nothing of the
learner's changes: their layer objects are theirs (isinstance and type names as before), .out is their
tensor, their retain_grad() calls work, and no random number is drawn here, so their losses are the
same bit for bit with and without watch.

Why a class's __call__ is patched for lecture layers: watch only runs between two step() calls, after
the backward. A layer's output gradient can only be caught by a hook hung on it before the backward,
i.e. right after the forward -- which for nn.Modules is a forward hook, and for the lecture's plain
classes is the end of the last layer's call. So the class of the layer that ends the forward gets a
__call__ that calls the original, then tells its watcher (only for that one object); close() puts the
original back.
"""

import atexit
import functools
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from core.capture.recorder import Recorder, kind_of
from core.doctor import examine
from core.doctor.observe import Observer
from core.models.layers import NotLayers, listed_layers, named_params, opened, param_names
from core.models.presets import TrainConfig
from core.runs import settings, storage
from core.runs.db import LIVE_STATES, RunDB
from core.runs.remote import Remote
from core.runs.store import RunStore

EVERY = TrainConfig.capture_every  # the recorder's default cadence: a capture every this many steps
FLUSH_SECONDS = 0.5   # the run's rows go to the runs file this often, from the store's thread (the page reads it live)


class WatchError(ValueError):
    """A watcher used the wrong way: the one message says what to do instead."""


class Stopped(Exception):
    """Raised by Watcher.step() when the run was stopped from the dashboard (Stop on its page, or
    `python -m core runs stop`). The run is already marked stopped and the watcher closed; catch it to
    end the loop quietly:

        try:
            for i in range(max_steps):
                ...
                lab.step(loss)
        except Stopped:
            pass
    """


# -----------------------------------------------------------------------------
# which layers end a forward pass (see the module's docstring)

_TRIGGERS = {}  # id(layer) -> the Watcher whose forward pass ends with that layer's call
_PATCHED = {}   # class -> its own __call__ before the patch (None: it inherited one)


def _patch(cls):
    if cls in _PATCHED:
        return
    call = cls.__call__

    @functools.wraps(call)
    def __call__(self, *args, **kwargs):
        out = call(self, *args, **kwargs)
        w = _TRIGGERS.get(id(self))
        if w is not None:
            w._forward_done(out)
        return out

    _PATCHED[cls] = cls.__dict__.get("__call__")
    cls.__call__ = __call__


def _unpatch(cls):
    if cls not in _PATCHED or any(type(w._trigger) is cls for w in set(_TRIGGERS.values())):
        return
    own = _PATCHED.pop(cls)
    if own is None:
        del cls.__call__
    else:
        cls.__call__ = own


# -----------------------------------------------------------------------------
# a layer list as the Recorder reads a lecture model (core.models.layers.LectureModel)


class _Layers:
    """named_layers() in forward order and named_parameters(), as a LectureModel has them."""

    def __init__(self, layers, params):
        self._layers, self._params = layers, params

    def named_layers(self):
        return list(self._layers)

    def named_parameters(self):
        return list(self._params)


def _named_params(layers, parameters):
    """The watched parameters, named: the layers' .parameters() in list order, or `parameters` (a list,
    in its order; parameters of no layer are named 'param3' by their place; or a {name: tensor} mapping)."""
    if parameters is None:
        return named_params(layers)
    if isinstance(parameters, dict):
        return list(parameters.items())
    names = param_names(layers)
    return [(names.get(id(p), f"param{k}"), p) for k, p in enumerate(parameters)]


def _check_layers(target):
    """(named layers, the object whose call ends the forward) of a lecture-style target; WatchError if not."""
    try:
        named = listed_layers(target, "watch()", "watch", "watch(layers) or watch(layers, parameters=parameters)")
    except NotLayers as e:
        raise WatchError(str(e)) from None
    for name, layer in named:
        if isinstance(layer, nn.Module):
            raise WatchError(f"layer {name!r} is a torch.nn module: watch the model itself, or nn.Sequential(*layers)")
    trigger = target if not isinstance(target, (dict, list, tuple)) and hasattr(target, "layers") else named[-1][1]
    return opened(named), trigger


def _source():
    """Where the learner's loop runs: a notebook's kernel, or a script."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return "notebook" if ip is not None and "ipykernel" in sys.modules else "script"


def _number(loss):
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise WatchError(f"step(loss) takes the loss, one number (got a tensor of shape {tuple(loss.shape)})")
        return float(loss.item())
    try:
        return float(loss)
    except (TypeError, ValueError):
        raise WatchError(f"step(loss) takes the loss, a tensor or a number (got {type(loss).__name__})") from None


# -----------------------------------------------------------------------------


_LIVE = []  # this process's open watchers (a second watch() of the same target closes the first)


def watch(target, name=None, every=None, data_dir=None, parameters=None):
    """
    Watch the learner's own network. target: an nn.Module, a list (or other iterable) of the lecture's
    from-scratch layers (objects with __call__, .out after a forward and .parameters(): Linear, BatchNorm1d,
    Tanh, Embedding, FlattenConsecutive, Sequential), or a {name: layer} dict. every: a capture every this
    many steps (default EVERY). data_dir: the runs file's folder (default: the dashboard's, $ZTH_DATA_DIR).
    parameters: the tensors the loop trains, when the layers do not hold them all (lecture 4's C).
    Returns a Watcher: call .step(loss) once per iteration, after the update.
    """
    for w in list(_LIVE):
        if w.target is target:
            w.close()  # the cell ran again: a new run
    return Watcher(target, name=name, every=every, data_dir=data_dir, parameters=parameters)


class Watcher:

    def __init__(self, target, name=None, every=None, data_dir=None, parameters=None):
        self.every = EVERY if every is None else int(every)
        if self.every < 0:
            raise WatchError(f"every must be 0 (never capture) or a number of steps (got {every})")
        self.target = target
        self._handles = []
        if isinstance(target, nn.Module):
            if parameters is not None:
                raise WatchError("parameters= is for a list of layers; a module's are its named_parameters()")
            self.model, self.layers, self._trigger = target, None, None
            points = [m for _, m in target.named_modules() if kind_of(m)]
            has_params = any(True for _ in target.parameters())
        else:
            self.layers, self._trigger = _check_layers(target)
            self.model = _Layers(self.layers, _named_params(self.layers, parameters))
            points = [layer for _, layer in self.layers if kind_of(layer)]
            has_params = bool(self.model.named_parameters())
        if not points and not has_params:
            raise WatchError(f"nothing to watch in {_describe(target)}: no Tanh, BatchNorm1d, ReLU, GELU or LayerNorm "
                             "layer and no parameters")
        self.recorder = Recorder(self.model)
        self.params = [p for _, p in self.model.named_parameters()]
        # the model doctor's eyes on the loop (core.doctor.observe): train/eval mode, zero_grad, the loss's input
        self.observer = Observer(list(target.named_modules()) if self.layers is None else self.layers,
                                 self.model.named_parameters())
        self.source = _source()
        db = RunDB(path=Path(data_dir) / "runs.sqlite" if data_dir else None, busy_seconds=settings.busy_seconds())
        spec = dict(watch=True, source=self.source)
        self.store = RunStore(db=db, name=name or _describe(target), spec=spec)
        self.run_id = self.store.run_id
        self.store.set_meta(worker=True, source=self.source, state="running", every=self.every,
                            params=sum(p.numel() for p in self.params), cwd=os.getcwd())
        self.store.flush()
        self.store.write_every(FLUSH_SECONDS)
        self.remote = Remote(self.store, self._set_state, self._flush)  # Pause, Step, Stop from a page
        if isinstance(target, nn.Module):
            self._handles.append(target.register_forward_hook(lambda m, i, out: self._forward_done(out)))
        else:
            _TRIGGERS[id(self._trigger)] = self
            _patch(type(self._trigger))
        self.state = "running"
        self.closed = False
        self.diverged_at = None
        self._i = 0              # the step the learner's next forward belongs to
        self._forwards = 0       # forward passes seen end since watch()
        self._width = None       # the last dimension of the forward's output (the logits: the vocabulary)
        self._last_flush = time.monotonic()
        self._arm()
        _LIVE.append(self)
        atexit.register(self.close)

    # --- the learner's loop --------------------------------------------------------------

    def step(self, loss):
        """Record one training step; call it once per iteration, after the update. Blocks while the run is
        paused from the dashboard; raises Stopped when it is stopped there (the run is then closed)."""
        if self.closed:
            raise WatchError(f"this watcher is closed (its run {self.run_id} is {self.state}): "
                             "call watch() again for a new run")
        lossv = _number(loss)
        i = self._i
        self.observer.step_done(i)
        if i == 0:
            self._check_forward()
            # what the diagnosis reads for "the loss at init should be -log(1/vocab_size)"
            last = getattr(self.layers[-1][1], "out", None) if self.layers else None
            if self._width is None and isinstance(last, torch.Tensor) and last.ndim >= 2:
                self._width = last.shape[-1]
            self.store.set_meta(init_loss=lossv, vocab_size=self._width,
                                batchnorm=any(kind == "batchnorm" for _, kind, _ in self.recorder.points))
        rec = self.recorder
        if not math.isfinite(lossv):
            rec.capturing = False
            if self.diverged_at is None:
                self.diverged_at = i
                self._set_state("diverged", diverged_at=i,
                                message=f"diverged at step {i}: the loss is {lossv} (try a smaller learning rate)")
                self.store.flush()
        elif self._armed:
            self._capture(lossv)
        self.store.add_step(i, lossv, None)
        self._i = i + 1
        self._arm()
        if self.state in LIVE_STATES:
            why = self.remote.took() or self.remote.look()  # may hold the loop here while paused
            if why:
                self._stop(why)
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self._hand_over()

    @property
    def steps(self):
        """Steps recorded so far."""
        return self._i

    def close(self):
        """Mark the run finished (unless it was stopped or diverged) and write everything. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            for cap in self.recorder.flush():
                self.store.add_capture(cap)
            if self.state in LIVE_STATES:
                self.state = "finished"
            self.store.set_meta(state=self.state)
            self.store.close()
            self.store.db.close(check_again=False)
        finally:
            self.recorder.close()
            self.observer.close()
            for h in self._handles:
                h.remove()
            if self._trigger is not None and _TRIGGERS.get(id(self._trigger)) is self:
                del _TRIGGERS[id(self._trigger)]
                _unpatch(type(self._trigger))
            if self in _LIVE:
                _LIVE.remove(self)
            atexit.unregister(self.close)

    def doctor(self, X, Y, loss_fn=None, steps=None, evals=None):
        """The model doctor (core.doctor.examine) on the watched model and a batch (X: what the first watched
        layer takes), with what this loop showed so far: zero_grad, train/eval mode, the loss's input.
        evals: [(step, train, val)] loss estimates, for the under/over-fitting check. Returns the Report, which
        the run also keeps (the dashboard shows it beside the diagnosis)."""
        self.observer.pause()  # the doctor's own passes are not the loop's
        try:
            report = examine(self.target, X, Y, loss_fn=loss_fn, steps=steps, seen=self.observer.seen(),
                             evals=evals, params=None if self.layers is None else self.model.named_parameters())
        finally:
            self.observer.resume(self._i if self._armed and not self.closed else None)
        if not self.closed:
            self.store.set_meta(doctor=dict(step=self._i, checks=report.checks))
            self._flush()
        return report

    def __repr__(self):
        return f"<watching run {self.run_id}: {self.state}, {self._i} steps>"

    # --- capture -----------------------------------------------------------------------

    def _arm(self):
        """Before the learner's next forward: on a capture step, the recorder starts looking, and keeps the
        parameters as they are now -- after the last update, i.e. before the next one."""
        i = self._i
        self._armed = self.every > 0 and i % self.every == 0 and not self.closed
        if self._armed:
            self.recorder.begin(i)
            grads = [p for p in self.params if p.grad is not None]
            self.recorder.before_update(grads or [p for p in self.params if p.requires_grad] or self.params)
            self.observer.arm(i)

    def _forward_done(self, out=None):
        """The learner's forward pass ended (the last layer's call, or the module's forward): a capture step's
        outputs are read now, while gradient hooks can still be hung on them. A forward without a graph
        (evaluation under no_grad) is not the training step's."""
        self._forwards += 1
        self.observer.forward_done()
        if isinstance(out, torch.Tensor) and out.ndim >= 2:
            self._width = out.shape[-1]
        rec = self.recorder
        if rec.capturing and torch.is_grad_enabled():
            rec.after_forward()

    def _capture(self, lossv):
        rec = self.recorder
        if rec.capturing:  # the forward never passed the layer that ends it: its outputs, without gradients
            rec.after_forward()
        rec.after_backward(lossv)
        try:
            rec.after_update()
        except ValueError:  # the parameters with a gradient changed since the last step: a fresh "before" next time
            rec.forget()
            return
        for cap in rec.ready():
            self.store.add_capture(cap)

    def _check_forward(self):
        if self.layers is None:
            if self._forwards == 0:
                raise WatchError("step() was called before any forward pass of the watched model since watch(): "
                                 "run the forward (and backward and update) first, then lab.step(loss)")
            return
        missing = [name for name, layer in self.layers if getattr(layer, "out", None) is None]
        if len(missing) == len(self.layers):
            raise WatchError("step() was called before any forward pass: no layer has its .out yet. Run the "
                             "forward (and backward and update) first, then lab.step(loss)")
        if missing:
            raise WatchError(f"layers {', '.join(missing)} have no .out after the forward pass: a watched layer "
                             "keeps its output in self.out, as the lecture's layers do (self.out = ...; return self.out)")

    # --- the run's state and commands ---------------------------------------------------------

    def _set_state(self, state, **meta):
        self.state = state
        self.store.set_meta(state=state, **meta)

    def _flush(self):
        for cap in self.recorder.ready():
            self.store.add_capture(cap)
        self.store.flush()
        self._last_flush = time.monotonic()

    def _hand_over(self):
        """Finished captures to the store, whose own thread writes them (store.write_every): the learner's loop
        does not wait for the disk. A write that failed is said here, once; its rows wait for the next."""
        for cap in self.recorder.ready():
            self.store.add_capture(cap)
        self._last_flush = time.monotonic()
        e, self.store.error = self.store.error, None
        if e is not None:
            why = storage.disk_full_message(self.store.db.path, "all") if storage.is_disk_full(e) else str(e)
            raise WatchError(f"the runs file would not take this run's records ({why}). Your loop and model are "
                             "as they were, and nothing recorded is lost: it is written with the next step that can")

    def _stop(self, why):
        i = self._i
        self._set_state("stopped", message=f"{why} at step {i}")
        self.close()
        raise Stopped(f"run {self.run_id} was {why} at step {i}; the watcher is closed "
                      "(catch core.watch.Stopped to end the loop quietly)")


def _describe(target):
    if isinstance(target, nn.Module):
        return type(target).__name__
    if isinstance(target, dict):
        return f"layers ({len(target)})"
    n = len(target.layers) if hasattr(target, "layers") else len(target) if hasattr(target, "__len__") else "?"
    return f"{type(target).__name__} ({n} layers)" if hasattr(target, "layers") else f"layers ({n})"
