"""
The recorder: watches a model through hooks and turns what it sees into small
Capture records. No model code is edited and nothing calls retain_grad():

- torch.nn modules (GPT): forward hooks on nonlinearities and normalizations;
- the lectures' from-scratch layers: they keep their output in .out (as in the
  video), which the recorder reads right after the forward pass;
- either way a tensor gradient hook on that output catches its gradient in backward.

The training loop calls, on a capture step only:

    rec.begin(step); logits, loss = model(X, Y); rec.after_forward()
    loss.backward(); rec.after_backward(); rec.before_update(); <update>; cap = rec.after_update()

On other steps the recorder costs nothing (nn forward hooks return at once).
"""

import math

import numpy as np
import torch
import torch.nn as nn

from .histogram import BINS, Summarizer, segment_std

# which outputs are watched, and under what kind (the kind decides "saturated")
KINDS = {
    "Tanh": "tanh", "ReLU": "relu", "GELU": "gelu", "Sigmoid": "sigmoid",
    "BatchNorm1d": "batchnorm", "BatchNormStd": "batchnorm", "_Dim0BatchNorm1d": "batchnorm",
    "NinjaBatchNorm": "batchnorm",
    "LayerNorm": "layernorm",
}


def kind_of(layer):
    return KINDS.get(type(layer).__name__)


class Capture:
    """
    One capture step, in the format of core.histogram: three groups of tensors
    ("act" activations, "agrad" their gradients, "wgrad" weight gradients) with
    counts/edges/stats rows in `keys` order, plus per-weight ratios.
    """

    __slots__ = ("step", "loss", "keys", "kinds", "counts", "edges", "stats", "weights", "wratio", "raster")

    def __init__(self, step, loss, keys, kinds, counts, edges, stats, weights, wratio, raster=None):
        self.step = step
        self.loss = loss
        self.keys = keys        # tuple of (group, name)
        self.kinds = kinds      # tuple of kind per key
        self.counts = counts    # int32 (k, bins + 2)
        self.edges = edges      # float32 (k, 2)
        self.stats = stats      # float32 (k, 6): mean, std, sat, zero, nan, inf
        self.weights = weights  # tuple of (name, shape)
        self.wratio = wratio    # float32 (w, 3): data std, grad:data ratio, log10 update:data
        # per tanh/ReLU layer on the fixed probe batch: ((examples, units), np.packbits of the
        # boolean "saturated" matrix: |h| > 0.99 for tanh, h == 0 for ReLU) -- the lecture's plt.imshow
        self.raster = raster or {}

    def raster_matrix(self, name):
        """The saturation raster of one layer as a bool array (examples, units)."""
        shape, bits = self.raster[name]
        n = shape[0] * shape[1]
        return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=n).astype(bool).reshape(shape)

    def rows(self, group):
        """[(name, kind, i)] of one group, i indexing counts/edges/stats."""
        return [(name, self.kinds[i], i) for i, (g, name) in enumerate(self.keys) if g == group]

    def layer_stats(self):
        """Per activation layer: the CLI's and the diagnosis's view of this step."""
        grads = {name: i for name, _, i in self.rows("agrad")}
        out = []
        for name, kind, i in self.rows("act"):
            mean, std, sat, zero, nan, inf = (float(v) for v in self.stats[i])
            j = grads.get(name)
            out.append(dict(layer=name, kind=kind, mean=mean, std=std,
                            saturated_pct=(zero * 100 if kind == "relu" else
                                           None if math.isnan(sat) else sat * 100),
                            grad_std=None if j is None else float(self.stats[j, 1]),
                            nan=int(nan), inf=int(inf)))
        return out

    def weight_stats(self):
        rows = {name: i for name, _, i in self.rows("wgrad")}
        out = []
        for w, (name, shape) in enumerate(self.weights):
            i = rows[name]
            data_std, ratio, ud = (float(v) for v in self.wratio[w])
            out.append(dict(name=name, shape=list(shape), grad_mean=float(self.stats[i, 0]),
                            grad_std=float(self.stats[i, 1]), data_std=data_std,
                            grad_data_ratio=ratio, update_data_log10=None if math.isnan(ud) else ud))
        return out

    def nonfinite(self):
        return int(self.stats[:, 4].sum() + self.stats[:, 5].sum())

    def nbytes(self):
        return (self.counts.nbytes + self.edges.nbytes + self.stats.nbytes + self.wratio.nbytes + 200
                + sum(len(bits) for _, bits in self.raster.values()))

    def to_dict(self):
        return dict(step=self.step, loss=self.loss,
                    histograms=[dict(group=g, name=n, kind=k, lo=float(e[0]), hi=float(e[1]),
                                     under=int(c[0]), over=int(c[-1]), counts=c[1:-1].tolist(),
                                     **{col: (None if math.isnan(v) else float(v))
                                        for col, v in zip(("mean", "std", "sat", "zero", "nan", "inf"), s)})
                                for (g, n), k, c, e, s in zip(self.keys, self.kinds, self.counts,
                                                              self.edges, self.stats)],
                    layers=self.layer_stats(), weights=self.weight_stats())


class Recorder:

    def __init__(self, model, bins=BINS):
        self.model = model
        self.summarizer = Summarizer(bins)
        self.capturing = False
        self._handles = []
        self._acts = {}
        self._grads = {}
        self._step = None
        self._pending = None
        self._before = None
        self._probing = None
        # lecture-style layers (with .out) or nn modules, by name, in forward order
        if isinstance(model, nn.Module):
            self.points = [(name, kind_of(m), m) for name, m in model.named_modules() if kind_of(m)]
            for name, kind, m in self.points:
                self._handles.append(m.register_forward_hook(self._forward_hook(name)))
        else:
            self.points = [(name, kind_of(layer), layer) for name, layer in model.named_layers()
                           if kind_of(layer)]
        self.named_params = list(model.named_parameters())

    def close(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    # --- hooks ---------------------------------------------------------------

    def _forward_hook(self, name):
        def hook(module, inputs, out):
            if self.capturing:
                self._watch(name, out)
            elif self._probing is not None:
                self._probing[name] = out
        return hook

    def _watch(self, name, out):
        self._acts[name] = out.detach()
        if out.requires_grad:
            out.register_hook(lambda grad: self._grads.__setitem__(name, grad))

    # --- called by the training loop on a capture step --------------------------

    def begin(self, step):
        self._acts, self._grads = {}, {}
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
        keys, kinds, tensors = [], [], []
        for name, kind, _ in self.points:
            if name in self._acts:
                keys.append(("act", name)); kinds.append(kind); tensors.append(self._acts[name])
        for name, kind, _ in self.points:
            if name in self._grads:
                keys.append(("agrad", name)); kinds.append(kind); tensors.append(self._grads[name])
        weights = []
        for name, p in self.named_params:
            if p.grad is not None:
                keys.append(("wgrad", name)); kinds.append("grad"); tensors.append(p.grad)
                weights.append((name, tuple(p.shape)))
        counts, edges, stats = self.summarizer(keys, tensors, kinds)
        self._pending = (tuple(keys), tuple(kinds), counts, edges, stats, tuple(weights), loss)
        self._acts, self._grads = {}, {}

    def before_update(self):
        # the real update (right for Adam too): keep theta before the step; one copy, capture steps only
        params = [p for _, p in self.named_params if p.grad is not None]
        self._before = torch.cat([p.detach().reshape(-1) for p in params]) if params else None

    # --- the saturation raster on a fixed probe batch ------------------------------

    @torch.no_grad()
    def probe(self, X, max_examples=64, max_units=256):
        """
        Run the fixed probe batch X through the model as training sees it (train mode:
        BatchNorm uses the batch's statistics) and return {layer: raster} for tanh and
        ReLU outputs. Everything the forward pass could change is put back -- running
        statistics, other buffers, the global RNG (dropout) -- so training is unaffected.
        """
        saved_rng = torch.get_rng_state()
        saved = _buffers(self.model)
        watched = [(name, kind, m) for name, kind, m in self.points if kind in ("tanh", "relu")]
        outs = {}
        self._probing = outs
        try:
            self.model(X)
            if not isinstance(self.model, nn.Module):
                for name, _, layer in watched:
                    if getattr(layer, "out", None) is not None:
                        outs[name] = layer.out
        finally:
            self._probing = None
            _restore_buffers(self.model, saved)
            torch.set_rng_state(saved_rng)
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

    def after_update(self):
        keys, kinds, counts, edges, stats, weights, loss = self._pending
        named = dict(self.named_params)
        params = [named[name] for name, _ in weights]
        wratio = np.full((len(weights), 3), np.nan, dtype=np.float32)
        if params:
            after = [p.detach() for p in params]
            delta = torch.cat([p.reshape(-1) for p in after]) - self._before
            sizes = [p.numel() for p in after]
            data_std = segment_std(after)
            upd_std = segment_std(list(torch.split(delta, sizes)))
            gstd = {keys[i][1]: stats[i, 1] for i in range(len(keys)) if keys[i][0] == "wgrad"}
            with np.errstate(divide="ignore", invalid="ignore"):
                wratio[:, 0] = data_std
                wratio[:, 1] = np.array([gstd[name] for name, _ in weights]) / data_std
                wratio[:, 2] = np.log10(upd_std / data_std)
            wratio[~np.isfinite(wratio)] = np.nan
        self._before = None
        self._pending = None
        return Capture(self._step, loss, keys, kinds, counts, edges, stats, weights, wratio)


# the state a forward pass may change: BatchNorm running statistics (lecture layers keep them as
# plain tensor attributes, nn modules as buffers)
_RUNNING = ("running_mean", "running_var", "bnmean_running", "bnstd_running")


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


# -----------------------------------------------------------------------------
# processing: series over many captures (pure functions)


def ud_history(captures, only_2d=True):
    """The lecture's `ud` list as arrays: (steps, names, values[step, name]) of log10 update:data."""
    if not captures:
        return np.zeros(0, int), [], np.zeros((0, 0))
    names = [n for n, shape in captures[-1].weights if not only_2d or len(shape) == 2]
    col = {n: j for j, n in enumerate(names)}
    values = np.full((len(captures), len(names)), np.nan)
    for i, c in enumerate(captures):
        for w, (name, _) in enumerate(c.weights):
            if name in col:
                values[i, col[name]] = c.wratio[w, 2]
    return np.array([c.step for c in captures]), names, values


def stats_table(captures):
    """Every capture's per-tensor statistics as flat rows (for a CSV download)."""
    rows = []
    for c in captures:
        ratios = {name: c.wratio[w] for w, (name, _) in enumerate(c.weights)}
        for i, (group, name) in enumerate(c.keys):
            mean, std, sat, zero, nan, inf = (float(v) for v in c.stats[i])
            r = ratios.get(name) if group == "wgrad" else None
            rows.append(dict(step=c.step, group=group, name=name, kind=c.kinds[i], mean=mean, std=std,
                             saturated=sat, zero=zero, nan=int(nan), inf=int(inf),
                             grad_data_ratio=None if r is None else float(r[1]),
                             update_data_log10=None if r is None else float(r[2])))
    return rows
