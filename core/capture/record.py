"""
The record one capture step leaves: the Capture class, its stored form (pack_capture /
unpack_capture), and series over many records (processing: pure functions).
"""

import json
import math
import struct

import numpy as np

# The statistics a record keeps per tensor (columns of Capture.stats) and per weight (columns of
# Capture.wratio), in order. A new statistic is a new name here (and its number in the kernels that
# fill the row); records stored before it read it as NaN.
STATS = ("mean", "std", "sat", "zero", "nan", "inf")
WRATIO = ("data_std", "grad_data_ratio", "update_data_log10")
UD = WRATIO.index("update_data_log10")
COL = {name: i for i, name in enumerate(STATS)}
VERSION = 2  # of the stored form (pack_capture); 1: no version field, the columns above


class Capture:
    """
    One capture step, in the format of core.capture.histogram: three groups of tensors
    ("act" activations, "agrad" their gradients, "wgrad" weight gradients) with
    counts/edges/stats rows in `keys` order, plus per-weight ratios.
    """

    __slots__ = ("step", "loss", "keys", "kinds", "counts", "edges", "stats", "weights", "wratio", "raster",
                 "raster_step")

    def __init__(self, step, loss, keys, kinds, counts, edges, stats, weights, wratio, raster=None,
                 raster_step=None):
        self.step = step
        self.loss = loss
        self.keys = keys        # tuple of (group, name)
        self.kinds = kinds      # tuple of kind per key
        self.counts = counts    # int32 (k, bins + 2)
        self.edges = edges      # float32 (k, 2)
        self.stats = stats      # float32 (k, len(STATS)): mean, std, sat, zero, nan, inf
        self.weights = weights  # tuple of (name, shape)
        self.wratio = wratio    # float32 (w, len(WRATIO)): data std, grad:data ratio, log10 update:data
        # per tanh/ReLU layer on the fixed probe batch: ((examples, units), np.packbits of the
        # boolean "saturated" matrix: |h| > 0.99 for tanh, h == 0 for ReLU) -- the lecture's plt.imshow
        self.raster = raster or {}
        # the step the raster was taken at: the probe runs at most every PROBE_EVERY steps (core.training.loop),
        # and a capture in between carries the latest raster
        self.raster_step = step if raster_step is None else raster_step

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
            st = dict(zip(STATS, (float(v) for v in self.stats[i])))
            j = grads.get(name)
            out.append(dict(layer=name, kind=kind, mean=st["mean"], std=st["std"],
                            saturated_pct=(st["zero"] * 100 if kind == "relu" else
                                           None if math.isnan(st["sat"]) else st["sat"] * 100),
                            grad_std=None if j is None else float(self.stats[j, COL["std"]]),
                            nan=int(st["nan"]), inf=int(st["inf"])))
        return out

    def weight_stats(self):
        rows = {name: i for name, _, i in self.rows("wgrad")}
        out = []
        for w, (name, shape) in enumerate(self.weights):
            i = rows[name]
            r = dict(zip(WRATIO, (float(v) for v in self.wratio[w])))
            ud = r["update_data_log10"]
            out.append(dict(name=name, shape=list(shape), grad_mean=float(self.stats[i, COL["mean"]]),
                            grad_std=float(self.stats[i, COL["std"]]), data_std=r["data_std"],
                            grad_data_ratio=r["grad_data_ratio"], update_data_log10=None if math.isnan(ud) else ud))
        return out

    def nonfinite(self):
        return int(self.stats[:, COL["nan"]].sum() + self.stats[:, COL["inf"]].sum())

    def nbytes(self):
        return (self.counts.nbytes + self.edges.nbytes + self.stats.nbytes + self.wratio.nbytes + 200
                + sum(len(bits) for _, bits in self.raster.values()))

    def to_dict(self):
        return dict(step=self.step, loss=self.loss,
                    histograms=[dict(group=g, name=n, kind=k, lo=float(e[0]), hi=float(e[1]),
                                     under=int(c[0]), over=int(c[-1]), counts=c[1:-1].tolist(),
                                     **{col: (None if math.isnan(v) else float(v))
                                        for col, v in zip(STATS, s)})
                                for (g, n), k, c, e, s in zip(self.keys, self.kinds, self.counts,
                                                              self.edges, self.stats)],
                    layers=self.layer_stats(), weights=self.weight_stats())


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
                values[i, col[name]] = c.wratio[w, UD]
    return np.array([c.step for c in captures]), names, values


def stats_table(captures):
    """Every capture's per-tensor statistics as flat rows (for a CSV download)."""
    rows = []
    for c in captures:
        ratios = {name: c.wratio[w] for w, (name, _) in enumerate(c.weights)}
        for i, (group, name) in enumerate(c.keys):
            st = dict(zip(STATS, (float(v) for v in c.stats[i])))
            r = ratios.get(name) if group == "wgrad" else None
            rows.append(dict(step=c.step, group=group, name=name, kind=c.kinds[i], mean=st["mean"], std=st["std"],
                             saturated=st["sat"], zero=st["zero"], nan=int(st["nan"]), inf=int(st["inf"]),
                             **{col: None if r is None else float(r[j]) for j, col in enumerate(WRATIO) if j}))
    return rows


def nan_to_none(x):
    return None if x is None or (isinstance(x, float) and x != x) else x


# -----------------------------------------------------------------------------
# Capture records <-> bytes: a JSON header (with the format's version and the columns stored), then the
# arrays' raw bytes


def pack_capture(c):
    head = dict(version=VERSION, stats=list(STATS), wratio=list(WRATIO), step=c.step, loss=nan_to_none(c.loss),
                keys=c.keys, kinds=c.kinds, weights=c.weights, bins=c.counts.shape[1] - 2 if c.counts.size else 0,
                raster={name: [list(shape), len(bits)] for name, (shape, bits) in (c.raster or {}).items()},
                raster_step=c.raster_step)
    h = json.dumps(head).encode()
    parts = [struct.pack("<I", len(h)), h, c.counts.astype(np.int32).tobytes(),
             c.edges.astype(np.float32).tobytes(), c.stats.astype(np.float32).tobytes(),
             c.wratio.astype(np.float32).tobytes()]
    parts += [bits for _, bits in (c.raster or {}).values()]
    return b"".join(parts)


def unpack_capture(blob):
    (n,) = struct.unpack_from("<I", blob)
    head = json.loads(blob[4:4 + n])
    k, w, bins = len(head["keys"]), len(head["weights"]), head["bins"]
    off = 4 + n

    def take(dtype, count, shape):
        nonlocal off
        a = np.frombuffer(blob, dtype=dtype, count=count, offset=off).reshape(shape)
        off += a.nbytes
        return a

    stored_stats = head.get("stats", STATS)  # version 1 wrote no columns: they were these
    stored_wratio = head.get("wratio", WRATIO)
    counts = take(np.int32, k * (bins + 2), (k, bins + 2))
    edges = take(np.float32, k * 2, (k, 2))
    stats = _columns(take(np.float32, k * len(stored_stats), (k, len(stored_stats))), stored_stats, STATS)
    wratio = _columns(take(np.float32, w * len(stored_wratio), (w, len(stored_wratio))), stored_wratio, WRATIO)
    raster = {}
    for name, (shape, nbits) in head["raster"].items():
        raster[name] = (tuple(shape), bytes(blob[off:off + nbits]))
        off += nbits
    loss = head["loss"] if head["loss"] is not None else float("nan")
    return Capture(head["step"], loss, tuple(tuple(x) for x in head["keys"]), tuple(head["kinds"]),
                   counts, edges, stats, tuple((nm, tuple(sh)) for nm, sh in head["weights"]), wratio,
                   raster=raster, raster_step=head.get("raster_step"))  # older records: the capture's step


def _columns(a, stored, wanted):
    """A stored array's columns in today's order; a column the record was written without is NaN."""
    if tuple(stored) == tuple(wanted):
        return a
    out = np.full((a.shape[0], len(wanted)), np.nan, dtype=a.dtype)
    for j, name in enumerate(wanted):
        if name in stored:
            out[:, j] = a[:, list(stored).index(name)]
    return out
