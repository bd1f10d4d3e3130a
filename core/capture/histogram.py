"""
Histograms and summary statistics of many tensors at once, and the record format
they are kept in. This is the "capture" math (turn tensors into small numbers)
plus the "processing" helpers (re-binning); drawing lives in dashboard/.

Record format
-------------
A `Summary` holds, for k tensors captured at one step, in the order of `keys`:

    counts  int32 (k, bins + 2)   bucket counts; column 0 counts values below lo
                                  ("under"), column bins+1 values above hi ("over")
    edges   float32 (k, 2)        lo, hi of each tensor's bins (bins equal-width buckets)
    stats   float32 (k, 6)        mean, std, saturated fraction, zero fraction, nan, inf

mean/std are over the finite values; "saturated" is the fraction with |t| above the
tensor's threshold (0.97 for tanh, none for other kinds: NaN); non-finite values are
counted in nan/inf and left out of the buckets, so a histogram never crashes on them.

Bucket edges are fixed per tensor (a key, within one list of keys: a model captures
the same tensors every step) so that steps are comparable; they move only when the
data outgrows them (over 0.5% out of range) or shrinks into the middle eighth, stay
within +-1e-30..1e38, and every record carries the edges it was counted with.
"""

import numpy as np
import torch

from core.capture import kernels
from core.capture.kernels import nice_bound  # noqa: F401 (part of this module's interface)

BINS = 64
STAT_COLUMNS = ("mean", "std", "sat", "zero", "nan", "inf")
TANH_SATURATION = 0.97  # the lecture's threshold for "saturated"

# -----------------------------------------------------------------------------
# capture: many tensors -> one Summary, in one compiled pass (core.capture.kernels)


class Summarizer:
    """
    Summarizes a fixed list of tensors (same keys every time), one step or many steps
    at once. A step is summarized in two parts: prepare() (Python, on the caller's
    thread: where each tensor's values are) and StepJob.run() (one compiled call,
    core.kernels.summarize, that holds no GIL and may run on another thread). Jobs of a
    layout must run in step order: edges fitted at one step are the next one's.
    Summarizing K steps in one call gives exactly what K calls would: edges refit at
    the step that outgrows them, and the steps after it are counted on the new edges.
    """

    def __init__(self, bins=BINS):
        self.bins = bins
        self._layouts = {}  # (keys, kinds) -> _Layout: the edges kept between steps

    @property
    def edges(self):
        """{key: (lo, hi)} as they stand (keys summarized at least once); for inspection, not while a
        background thread is running jobs."""
        out = {}
        for lay in self._layouts.values():
            for key, (lo, hi) in zip(lay.keys, lay.edges.tolist()):
                if lo == lo:  # NaN: not fitted yet
                    out[key] = (lo, hi)
        return out

    def __call__(self, keys, tensors, kinds):
        """keys, tensors, kinds: parallel lists. Returns (counts, edges, stats) as numpy arrays."""
        counts, edges, stats = self.steps(keys, kinds, [tensors])
        return counts[0], edges[0], stats[0]

    def steps(self, keys, kinds, batch):
        """
        batch: one list of tensors per step, in `keys` order, same sizes every step.
        Returns counts (K, k, bins + 2), edges (K, k, 2), stats (K, k, 6): step j as
        the j-th of K single-step calls would have returned it.
        """
        jobs = [self.prepare(keys, kinds, tensors) for tensors in batch]
        out = []
        for job in jobs:
            job.run()
            out.append(job.result())
        return tuple(np.stack(col) for col in zip(*out))

    def prepare(self, keys, kinds, tensors):
        """A StepJob for one step's tensors (references kept: they must not be written to until it has run)."""
        lay = self.layout(keys, kinds)
        # the kernel reads each tensor in place: contiguous float32 on the CPU
        f32 = torch.float32
        ts = [t if t.dtype is f32 and t.is_cpu and t.is_contiguous() else t.detach().float().contiguous().cpu()
              for t in tensors]
        return StepJob(lay, ts, self.bins)

    def layout(self, keys, kinds):
        """The _Layout of these keys (made at their first step): which kinds, and the edges kept between steps."""
        keys, kinds = tuple(keys), tuple(kinds)
        lay = self._layouts.get((keys, kinds))
        if lay is None:
            if len(self._layouts) > 16:  # a model whose set of captured tensors keeps changing
                self._layouts.clear()
            lay = self._layouts[(keys, kinds)] = _Layout(keys, kinds)
        return lay

    @staticmethod
    def update_stds(after, before, sizes):
        """Parameters laid end to end in two flat float32 vectors (after and before an update):
        per parameter std(theta) and std(theta - theta_before), (w, 2) float64. Holds no GIL."""
        sizes = np.asarray(sizes, dtype=np.int64)
        if not after.numel() == before.numel() == sizes.sum():
            raise ValueError(f"update_stds: {after.numel()} values after, {before.numel()} before, "
                             f"{sizes.sum()} in the parameters")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        out = np.empty((len(sizes), 2))
        kernels.update_stds(after.detach().float().cpu().contiguous().numpy(),
                            before.detach().float().cpu().contiguous().numpy(), starts, sizes, out)
        return out


class _Layout:
    """One list of keys and kinds: which have tanh's threshold and fixed edges, and their edges so far."""

    def __init__(self, keys, kinds):
        self.keys = keys
        self.tanh = np.array([kd == "tanh" for kd in kinds], dtype=np.bool_)
        self.relu = np.array([kd == "relu" for kd in kinds], dtype=np.bool_)
        self.thr = np.where(self.tanh, np.float32(TANH_SATURATION), np.float32(np.inf)).astype(np.float32)
        self.edges = np.full((len(keys), 2), np.nan, dtype=np.float32)  # NaN: fitted at the first step


class StepJob:
    """One step's summary, prepared on one thread, run (GIL-free) on any."""

    __slots__ = ("_layout", "_tensors", "_addrs", "_sizes", "counts", "edges", "stats")

    def __init__(self, layout, tensors, bins):
        k = len(tensors)
        self._layout, self._tensors = layout, tensors  # keeps the values alive
        self._addrs = np.array([t.data_ptr() for t in tensors], dtype=np.int64)
        self._sizes = np.array([t.numel() for t in tensors], dtype=np.int64)
        self.counts = np.empty((k, bins + 2), dtype=np.int32)
        self.edges = np.empty((k, 2), dtype=np.float32)
        self.stats = np.empty((k, 6), dtype=np.float64)

    def run(self):
        if self._tensors is None:
            raise RuntimeError("a StepJob runs once (its tensors are released after)")
        lay = self._layout
        kernels.summarize(self._addrs, self._sizes, lay.tanh, lay.relu, lay.thr, lay.edges, self.counts, self.stats,
                          self.edges)
        self._tensors = self._addrs = None

    def result(self):
        """(counts (k, bins + 2), edges (k, 2), stats (k, 6) float32) once run."""
        return self.record(np.zeros((0, 2)), np.zeros(0, dtype=np.int64))[:3]

    def record(self, std, wgrad):
        """(counts, edges, stats float32, wratio (w, 3) float32) once run, with the per-weight ratios from
        the update stds (w, 2) (std(theta), std(delta theta)) of the weights whose gradients are rows wgrad
        (see kernels.finish)."""
        if len(std) != len(wgrad):  # the kernel reads std[w] for every wgrad[w]
            raise ValueError(f"{len(std)} update stds for {len(wgrad)} weight gradients")
        stats = np.empty(self.stats.shape, dtype=np.float32)
        wratio = np.empty((len(wgrad), 3), dtype=np.float32)
        kernels.finish(self.stats, self._layout.tanh, std, wgrad, stats, wratio)
        return self.counts, self.edges, stats, wratio


# -----------------------------------------------------------------------------
# processing: pure functions on records


def bin_centers(lo, hi, bins):
    w = (hi - lo) / bins
    return lo + w * (np.arange(bins) + 0.5)


def rebin(counts, lo, hi, new_lo, new_hi, new_bins):
    """
    Re-bin inner counts (bins equal buckets on [lo, hi]) onto new equal buckets on
    [new_lo, new_hi], spreading each old bucket's count uniformly over its width.
    Mass outside the new range is dropped. Returns float counts.
    """
    counts = np.asarray(counts, dtype=np.float64)
    bins = len(counts)
    old = np.linspace(lo, hi, bins + 1)
    new = np.linspace(new_lo, new_hi, new_bins + 1)
    # cumulative mass at the old edges, linear in between: interpolate at the new edges
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    at_new = np.interp(new, old, cum)
    return np.diff(at_new)


def density(counts, lo, hi):
    """Counts -> probability density (integrates to the fraction of values inside [lo, hi])."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return counts
    width = (hi - lo) / len(counts)
    return counts / (total * width)
