"""
The recorder: watches a model through hooks and turns what it sees into small
Capture records (core.capture.record). No model code is edited and nothing calls
retain_grad():

- torch.nn modules (GPT): forward hooks on nonlinearities and normalizations;
- the lectures' from-scratch layers: they keep their output in .out (as in the
  video), which the recorder reads right after the forward pass;
- either way a pre-hook on the autograd node that made that output catches its
  gradient in backward.

The training loop calls, on a capture step only:

    rec.begin(step); logits, loss = model(X, Y); rec.after_forward()
    loss.backward(); rec.after_backward(loss); rec.before_update(); <update>; rec.after_update()

and takes the finished Capture records with rec.ready() (those done so far) or
rec.flush() (waits for all). On other steps the recorder costs nothing (nn forward
hooks return at once).

A capture step only keeps references to what it saw (activations and gradients are
new tensors every step; p.grad is replaced, never written into) plus one flat copy of
the parameters (_Theta), which after the update becomes the next capture step's
"before". On the CPU the numbers -- histograms, statistics, update ratios of ~100k
values -- come from compiled kernels (core.capture.kernels) that read those tensors in
place, at the end of the step. On a GPU they are computed there (core.capture.device)
and only the small records come back, while training goes on.
"""

import collections
import functools
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from core.capture import kernels
from core.capture.histogram import BINS, Summarizer
from core.capture.record import Capture

# which outputs are watched, and under what kind (the kind decides "saturated")
KINDS = {
    "Tanh": "tanh", "ReLU": "relu", "GELU": "gelu", "Sigmoid": "sigmoid",
    "BatchNorm1d": "batchnorm", "BatchNormStd": "batchnorm",
    "NinjaBatchNorm": "batchnorm",
    "LayerNorm": "layernorm",
}


def kind_of(layer):
    return KINDS.get(type(layer).__name__)


class Recorder:
    """
    Watches a model's layers (points: name, kind, layer) and parameters; turns each capture step into a
    Capture. on_device: summarize where the tensors are (None: when the model's parameters are on a GPU;
    True on CPU tensors runs the device code path, which the tests compare with the kernels).
    """

    def __init__(self, model, bins=BINS, on_device=None):
        self.model = model
        self.summarizer = Summarizer(bins)
        self.capturing = False
        self._handles = []
        self._step = None
        self._probing = None
        self._raster = (None, {})  # the latest saturation raster and its step
        # lecture-style layers (with .out) or nn modules, by name, in forward order
        if isinstance(model, nn.Module):
            self.points = [(name, kind_of(m), m) for name, m in model.named_modules() if kind_of(m)]
            for name, kind, m in self.points:
                self._handles.append(m.register_forward_hook(self._forward_hook(name)))
        else:
            self.points = [(name, kind_of(layer), layer) for name, layer in model.named_layers()
                           if kind_of(layer)]
        self.named_params = list(model.named_parameters())
        if on_device is None:
            on_device = any(not p.is_cpu for _, p in self.named_params)
        self.on_device = on_device
        self._acts = {}        # name -> the layer's output, this capture step
        self._gouts = {}       # key -> the gradients arriving at the node that made it (a tuple)
        self._grad_at = {}     # name -> (i, key): which of that node's outputs it is, where its gradient lands
        self._gen = 0          # counts the outputs watched (see _watch)
        self._seen = None      # (description, tensors, loss) of the step being captured (see _described)
        self._theta = None     # _Theta: the parameters being updated and their copy before the update
        self._on_way = collections.deque()  # captured steps whose numbers are not all here yet, oldest first
        self._descriptions = {}  # (slots present, parameter shapes) -> what _described works out
        # what after_backward lists, made once: (name, ("act", name), ("agrad", name), kind) per point, and
        # (("wgrad", name), parameter) per parameter
        self._point_keys = [(name, ("act", name), ("agrad", name), kind) for name, kind, _ in self.points]
        self._param_keys = [(("wgrad", name), p) for name, p in self.named_params]

    def close(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    def _forward_hook(self, name):
        def hook(module, inputs, out):
            if self.capturing:
                self._watch(name, out)
            elif self._probing is not None:
                self._probing[name] = out
        return hook

    # --- the saturation raster on a fixed probe batch ------------------------------

    @torch.no_grad()
    def probe(self, X, max_examples=64, max_units=256):
        """
        Run the fixed probe batch X through the model as training sees it (train mode:
        BatchNorm uses the batch's statistics) and return {layer: raster} for tanh and
        ReLU outputs. Everything the forward pass could change is put back -- running
        statistics, other buffers, the global RNG (dropout) -- so training is unaffected.
        """
        watched = [(name, kind, m) for name, kind, m in self.points if kind in ("tanh", "relu")]
        outs = {}
        self._probing = outs
        try:
            with untouched(self.model):
                self.model(X)
            if not isinstance(self.model, nn.Module):
                for name, _, layer in watched:
                    if getattr(layer, "out", None) is not None:
                        outs[name] = layer.out
        finally:
            self._probing = None
        raster = {}
        for name, kind, _ in watched:
            if name not in outs:
                continue
            h = outs[name].detach()
            h = h.reshape(-1, h.shape[-1])[:max_examples, :max_units]
            sat = (h.abs() > 0.99) if kind == "tanh" else (h == 0)
            m = sat.cpu().numpy()
            raster[name] = (m.shape, np.packbits(m.reshape(-1)).tobytes())
        return raster


    # --- hooks ---------------------------------------------------------------

    def _watch(self, name, out):
        self._acts[name] = out  # read, never written: the kernels take its values where they are
        node = out.grad_fn
        if node is not None:
            # out's gradient reaches a pre-hook on the node that made it, at out.output_nr: what
            # out.register_hook gives, without a handle or a Python frame (the hook is a builtin). The
            # generation in the key keeps a layer called twice from reading its first call's gradient.
            self._gen += 1
            key = (name, self._gen)
            self._grad_at[name] = (out.output_nr, key)
            node.register_prehook(functools.partial(self._gouts.__setitem__, key))
        elif out.requires_grad:
            self._gen += 1
            key = (name, self._gen)
            self._grad_at[name] = (0, key)
            out.register_hook(lambda grad: self._gouts.__setitem__(key, (grad,)))

    # --- called by the training loop on a capture step --------------------------

    def begin(self, step):
        self._acts.clear()
        self._gouts.clear()
        self._grad_at.clear()
        self._step = step
        self.capturing = True

    def after_forward(self):
        self.capturing = False
        if not isinstance(self.model, nn.Module):
            for name, _, layer in self.points:
                out = getattr(layer, "out", None)
                if out is not None:
                    self._watch(name, out)

    def after_backward(self, loss=None):
        # references only: these tensors are not written to again (the next step makes new ones)
        tensors, present = [], []  # present: which slots had a tensor (acts, then their grads, then params)
        acts, gouts, grad_at = self._acts, self._gouts, self._grad_at
        for j, (name, _, _, _) in enumerate(self._point_keys):
            t = acts.get(name)
            if t is not None:
                tensors.append(t); present.append(j)
        n = len(self._point_keys)
        for j, (name, _, _, _) in enumerate(self._point_keys):
            i, gkey = grad_at.get(name, (None, None))
            grads = gouts.get(gkey)
            if grads is not None:
                g = grads[i]
                if g is not None:
                    tensors.append(g); present.append(n + j)
        shapes = []
        for q, (_, p) in enumerate(self._param_keys):
            g = p.grad
            if g is not None:
                tensors.append(g); present.append(2 * n + q); shapes.append(p.shape)
        self._seen = (self._described(tuple(present), tuple(shapes)), tensors, loss)
        acts.clear()
        gouts.clear()
        grad_at.clear()

    def _described(self, present, shapes):
        """(keys, kinds, weights, layout, wgrad rows) of a step whose slots `present` had tensors: worked out
        the first time a set is seen (a model captures the same tensors every step)."""
        d = self._descriptions.get((present, shapes))
        if d is None:
            if len(self._descriptions) > 16:  # a model whose set of captured tensors keeps changing
                self._descriptions.clear()
            n = len(self._point_keys)
            keys, kinds = [], []
            for slot in present:
                if slot < 2 * n:
                    _, act_key, grad_key, kind = self._point_keys[slot % n]
                    keys.append(act_key if slot < n else grad_key); kinds.append(kind)
                else:
                    keys.append(self._param_keys[slot - 2 * n][0]); kinds.append("grad")
            params = [self._param_keys[slot - 2 * n][0][1] for slot in present if slot >= 2 * n]
            weights = tuple((name, tuple(shape)) for name, shape in zip(params, shapes))
            keys, kinds = tuple(keys), tuple(kinds)
            layout = self.summarizer.layout(keys, _binning(keys, kinds))
            wgrad = np.array([i for i, (g, _) in enumerate(keys) if g == "wgrad"], dtype=np.int64)
            d = self._descriptions[(present, shapes)] = (keys, kinds, weights, layout, wgrad)
        return d

    def before_update(self, params=None):
        # the real update (right for Adam too): keep theta before the step, one flat copy. On
        # consecutive capture steps the last one's "after" is this one's "before" (nothing else
        # writes to the parameters between two steps of one advance(); forget() drops it).
        # params: the ones the update will change, when the caller takes "before" ahead of the backward
        # (core.watch, which sees the learner's loop only between two steps); default: those with a gradient
        params = self._updated() if params is None else params
        theta = self._theta
        if theta is None or theta.ids != tuple(map(id, params)) or [p.numel() for p in params] != theta.numels:
            theta = self._theta = _Theta(params)
        if not theta.holds(self._step - 1):
            theta.copy()

    def after_update(self, probe=None):
        """Finish the step's capture; `probe`: a batch for the saturation raster."""
        (keys, kinds, weights, layout, wgrad), tensors, loss = self._seen
        std = self._theta.update_stds(self._step)
        if len(std) != len(weights):
            raise ValueError(f"step {self._step}: {len(weights)} parameters had a gradient after backward, "
                             f"{len(std)} at the update")
        if probe is not None:
            self._raster = (self._step, self.probe(probe))
        self._seen = None
        job = self.summarizer.job(layout, tensors, std, self.on_device)
        if not self.on_device:
            job.run()  # the kernels, here and now: the next update may write to these tensors
        self._on_way.append(_Pending(self._step, loss, keys, kinds, weights, self._raster, job, wgrad))

    def forget(self):
        """Between two advance() calls anything may touch the parameters: take a fresh "before" next time."""
        if self._theta is not None:
            self._theta.step = None

    def _updated(self):
        return [p for name, p in self.named_params if p.grad is not None]

    # --- finished records -------------------------------------------------------------

    def ready(self):
        """The Capture records finished so far, oldest first (each is returned once)."""
        out = []
        while self._on_way and self._on_way[0].job.done():
            out.append(self._on_way.popleft().capture())
        return out

    def flush(self):
        """Wait until every captured step is summarized; its records, oldest first."""
        out = []
        while self._on_way:
            out.append(self._on_way.popleft().capture())
        return out

    @property
    def pending(self):
        """Captured steps whose records are not out yet."""
        return len(self._on_way)


def _flat(params):
    """All parameters in one new float32 vector (None when there are none)."""
    if not params:
        return None
    return torch.cat([p.detach().reshape(-1) for p in params]).float()


def _binning(keys, kinds):
    """How each key is binned: a layer's gradient like any gradient (edges fitted to its values, no
    saturation) -- not on tanh's fixed (-1, 1) or ReLU's (0, b), which fit the activations only."""
    return tuple(k if g == "act" else "grad" for (g, _), k in zip(keys, kinds))


class _Pending:
    """A captured step on its way to a Capture: its summary job (done, or on its way from the device) and
    what the record carries besides the numbers."""

    __slots__ = ("step", "loss", "keys", "kinds", "weights", "raster", "job", "wgrad")

    def __init__(self, step, loss, keys, kinds, weights, raster, job, wgrad):
        self.step, self.loss, self.keys, self.kinds, self.weights = step, loss, keys, kinds, weights
        self.raster, self.job, self.wgrad = raster, job, wgrad

    def capture(self):
        counts, edges, stats, wratio = self.job.record(self.wgrad)
        raster_step, raster = self.raster
        return Capture(self.step, self.loss, self.keys, self.kinds, counts, edges, stats, self.weights, wratio,
                       raster, raster_step)


class _Theta:
    """
    The parameters an update changes, one flat float32 copy of them (theta before the update), and after
    it per parameter std(theta) and std(delta theta) -- the real update, right for Adam too. The copy is
    then the updated theta: on consecutive capture steps it is the next step's "before" with no new copy.
    Compiled code reads the parameters in place when they are contiguous float32 CPU tensors (checked
    before every read); anything else goes through torch.cat.
    """

    def __init__(self, params):
        self.params = params
        self.ids = tuple(map(id, params))
        self.sizes = np.array([p.numel() for p in params], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.numels = self.sizes.tolist()
        self.theta = None  # a numpy copy read from `addrs` in place, or a torch tensor (addrs None)
        self.addrs = None
        self.step = None   # the step whose updated parameters theta holds

    def _readable(self):
        """The parameters' data pointers (a list) if compiled code can read them in place -- contiguous
        float32 on the CPU, laid out as theta is; else None. (A contiguous tensor's values lie inside its
        storage: torch refuses to make one that does not.)"""
        f32 = torch.float32
        for p, n in zip(self.params, self.numels):
            if not (p.dtype is f32 and p.is_cpu and p.is_contiguous() and p.numel() == n):
                return None
        return [p.data_ptr() for p in self.params]

    def holds(self, step):
        """Does theta hold the parameters as they are now, updated at `step`? (Same place is enough here:
        this decides which values count as "before", and update_stds checks again before it reads.)"""
        return (self.step is not None and self.step == step
                and (self.addrs is None or [p.data_ptr() for p in self.params] == self.addrs))

    def copy(self):
        """theta = the parameters now (the "before" of an update)."""
        addrs = self._readable()
        if addrs is not None:
            if not isinstance(self.theta, np.ndarray):
                self.theta = np.empty(int(self.sizes.sum()), dtype=np.float32)
            kernels.copy_params(np.array(addrs, dtype=np.int64), self.sizes, self.starts, self.theta)
        else:
            self.theta = _flat(self.params)
        self.addrs = addrs
        self.step = None

    def update_stds(self, step):
        """Per parameter std(theta) and std(theta - theta before) (w, 2) float64, just after the update of
        `step`; theta then holds the updated parameters."""
        out = np.full((len(self.params), 2), np.nan)
        # theta read in place last time, from the same storages: _readable's checks held then and still do (a
        # parameter's size is checked by before_update, which builds a new _Theta when one changes)
        addrs = [p.data_ptr() for p in self.params] if self.addrs is not None else None
        if addrs is None or addrs != self.addrs:
            addrs = self._readable() if self.params else None
        if addrs is not None and addrs == self.addrs:
            kernels.update_stds_in_place(np.array(addrs, dtype=np.int64), self.sizes, self.starts, self.theta, out)
        elif self.params:
            after = _flat(self.params)
            if self.theta is not None:
                out = Summarizer.update_stds(after, torch.as_tensor(self.theta), self.sizes)
            self.theta = after.numpy() if addrs is not None else after
            self.addrs = addrs
        self.step = step
        return out


# the state a forward pass may change: BatchNorm running statistics (lecture layers keep them as
# plain tensor attributes, nn modules as buffers)
_RUNNING = ("running_mean", "running_var", "bnmean_running", "bnstd_running")


@contextmanager
def untouched(model):
    """A forward pass training must not feel (the probe batch, sampling): BatchNorm's running statistics and
    other buffers, the global RNG (dropout) and the train/eval mode are put back afterwards, so a run with
    it replays as one without."""
    saved_rng = torch.get_rng_state()
    saved = _buffers(model)
    was = getattr(model, "training", None)
    try:
        yield
    finally:
        _restore_buffers(model, saved)
        torch.set_rng_state(saved_rng)
        if was is not None:
            model.train(was)


def _buffers(model):
    if isinstance(model, nn.Module):
        return [(b, b.clone()) for b in model.buffers()]
    saved = []
    for _, layer in model.named_layers():
        for attr in _RUNNING:
            t = getattr(layer, attr, None)
            if isinstance(t, torch.Tensor):
                saved.append((layer, attr, t.clone()))
    return saved


def _restore_buffers(model, saved):
    if isinstance(model, nn.Module):
        for b, copy in saved:
            b.copy_(copy)
        return
    for layer, attr, t in saved:
        setattr(layer, attr, t)
