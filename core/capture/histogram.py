"""
Histograms and summary statistics of many tensors at once: the "capture" math
(turn tensors into small numbers) plus the processing helpers that read its output;
drawing lives in dashboard/. The record these numbers go into is core.capture.record.

For k tensors captured at one step, in the order of their keys:

    counts  int32 (k, bins + 2)   bucket counts; column 0 counts values below lo
                                  ("under"), column bins+1 values at or above hi ("over")
    edges   float32 (k, 2)        lo, hi of each tensor's bins (bins equal-width buckets)
    stats   float32 (k, len(STATS))  record.STATS: mean, std, saturated fraction, zero
                                  fraction, nan count, inf count

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

from core.capture import device, kernels
from core.capture.record import STATS, WRATIO

BINS = 64
TANH_SATURATION = 0.97  # the lecture's threshold for "saturated"

# -----------------------------------------------------------------------------
# capture: many tensors -> counts, edges, stats, in one compiled pass (core.capture.kernels) on the CPU
# or in torch operations on the tensors' own device (core.capture.device)


class Summarizer:
    """
    Summarizes a fixed list of tensors (same keys every time), one step or many steps
    at once. A step is summarized in two parts: prepare() (on the caller's thread:
    where each tensor's values are) and the job's run() (one compiled call,
    core.capture.kernels.summarize; or, for tensors on a GPU, waiting for the numbers the
    device computed). Jobs of a layout run in step order: edges fitted at one step are
    the next one's. Summarizing K steps in one call gives exactly what K calls would:
    edges refit at the step that outgrows them, and the steps after it are counted on
    the new edges.
    """

    def __init__(self, bins=BINS):
        self.bins = bins
        self._layouts = {}  # (keys, kinds) -> _Layout: the edges kept between steps

    @property
    def edges(self):
        """{key: (lo, hi)} as they stand (keys summarized at least once); for inspection."""
        out = {}
        for lay in self._layouts.values():
            for key, (lo, hi) in zip(lay.keys, lay.current_edges().tolist()):
                if lo == lo:  # NaN: not fitted yet
                    out[key] = (lo, hi)
        return out

    def __call__(self, keys, tensors, kinds, on_device=False):
        """keys, tensors, kinds: parallel lists. Returns (counts, edges, stats) as numpy arrays."""
        counts, edges, stats = self.steps(keys, kinds, [tensors], on_device)
        return counts[0], edges[0], stats[0]

    def steps(self, keys, kinds, batch, on_device=False):
        """
        batch: one list of tensors per step, in `keys` order, same sizes every step.
        Returns counts (K, k, bins + 2), edges (K, k, 2), stats (K, k, 6): step j as
        the j-th of K single-step calls would have returned it.
        """
        out = []
        for tensors in batch:
            job = self.prepare(keys, kinds, tensors, on_device=on_device)
            job.run()
            out.append(job.record(np.zeros(0, dtype=np.int64))[:3])
        return tuple(np.stack(col) for col in zip(*out))

    def prepare(self, keys, kinds, tensors, std=None, on_device=False):
        """The job that summarizes one step's tensors (references kept: they must not be written to until it
        has run); std: the step's update stds (w, 2), numpy or (on_device) a tensor, handed on to the record.
        on_device: the numbers are taken where the tensors are (core.capture.device), for a GPU."""
        return self.job(self.layout(keys, kinds), tensors, std, on_device)

    def job(self, layout, tensors, std=None, on_device=False):
        """prepare() for a layout already looked up (the recorder keeps its own)."""
        if on_device:
            return DeviceStepJob(layout, tensors, self.bins, std)
        # the kernel reads each tensor in place: contiguous float32 on the CPU
        f32 = torch.float32
        ts = [t if t.dtype is f32 and t.is_cpu and t.is_contiguous() else t.detach().float().contiguous().cpu()
              for t in tensors]
        return StepJob(layout, ts, self.bins, std)

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
        per parameter std(theta) and std(theta - theta_before), (w, 2) float64: numpy from the kernels for
        CPU tensors, a tensor on the device for GPU ones."""
        sizes = np.asarray(sizes, dtype=np.int64)
        if not after.numel() == before.numel() == sizes.sum():
            raise ValueError(f"update_stds: {after.numel()} values after, {before.numel()} before, "
                             f"{sizes.sum()} in the parameters")
        if not after.is_cpu:
            split = sizes.tolist()
            return device.update_stds(after.split(split), before.split(split))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        out = np.empty((len(sizes), 2))
        kernels.update_stds(after.detach().float().contiguous().numpy(),
                            before.detach().float().contiguous().numpy(), starts, sizes, out)
        return out


class _Layout:
    """One list of keys and kinds: which have tanh's threshold and fixed edges, and their edges so far
    (a numpy array for the kernels; a tensor on the device for the device path, made from it)."""

    def __init__(self, keys, kinds):
        self.keys = keys
        self.tanh = np.array([kd == "tanh" for kd in kinds], dtype=np.bool_)
        self.relu = np.array([kd == "relu" for kd in kinds], dtype=np.bool_)
        self.thr = np.where(self.tanh, np.float32(TANH_SATURATION), np.float32(np.inf)).astype(np.float32)
        self.edges = np.full((len(keys), 2), np.nan, dtype=np.float32)  # NaN: fitted at the first step
        self.device_edges = None

    def edges_on(self, dev):
        """The edges as a float32 tensor on `dev`, kept there between steps."""
        if self.device_edges is None or self.device_edges.device != torch.device(dev):
            self.device_edges = torch.as_tensor(self.current_edges(), device=dev).clone()
        return self.device_edges

    def current_edges(self):
        if self.device_edges is not None:
            self.edges = self.device_edges.cpu().numpy().copy()
            self.device_edges = None  # the kernels take over (inspection, or a model moved to the CPU)
        return self.edges


class StepJob:
    """One step's summary on the CPU, prepared on one thread, run (GIL-free) on any."""

    __slots__ = ("_layout", "_tensors", "_addrs", "_sizes", "_std", "counts", "edges", "stats")

    def __init__(self, layout, tensors, bins, std=None):
        k = len(tensors)
        self._layout, self._tensors = layout, tensors  # keeps the values alive
        self._addrs = np.array([t.data_ptr() for t in tensors], dtype=np.int64)
        self._sizes = np.array([t.numel() for t in tensors], dtype=np.int64)
        self._std = np.zeros((0, 2)) if std is None else std
        self.counts = np.empty((k, bins + 2), dtype=np.int32)
        self.edges = np.empty((k, 2), dtype=np.float32)
        self.stats = np.empty((k, len(STATS)), dtype=np.float64)

    def done(self):
        return True  # run() does the work: nothing is on its way

    def run(self):
        if self._tensors is None:
            raise RuntimeError("a StepJob runs once (its tensors are released after)")
        lay = self._layout
        kernels.summarize(self._addrs, self._sizes, lay.tanh, lay.relu, lay.thr, lay.current_edges(), self.counts,
                          self.stats, self.edges)
        self._tensors = self._addrs = None

    def record(self, wgrad):
        """(counts, edges, stats float32, wratio (w, 3) float32) once run, with the per-weight ratios from
        the update stds (std(theta), std(delta theta)) of the weights whose gradients are rows wgrad
        (see kernels.finish)."""
        return _finish(self.counts, self.edges, self.stats, self._std, wgrad, self._layout)


class DeviceStepJob:
    """One step's summary on the tensors' device (core.capture.device): computed when prepared, in the
    device's own order; run() waits for the numbers to reach the host, done() says whether they have."""

    __slots__ = ("_layout", "_transfer", "counts", "edges", "stats", "_std")

    def __init__(self, layout, tensors, bins, std=None):
        dev = tensors[0].device if tensors else torch.device("cpu")
        edges = layout.edges_on(dev)
        counts, used, stats = device.summarize(tensors, edges, layout.tanh, layout.relu, layout.thr, bins)
        std = torch.zeros((0, 2), dtype=torch.float64, device=dev) if std is None else torch.as_tensor(std)
        self._layout = layout
        self._transfer = device.Transfer([counts, used, stats, std])
        self.counts = None

    def done(self):
        return self._transfer.done()

    def run(self):
        self.counts, self.edges, self.stats, self._std = self._transfer.wait()

    def record(self, wgrad):
        if self.counts is None:
            self.run()
        return _finish(self.counts, self.edges, self.stats, self._std, wgrad, self._layout)


def _finish(counts, edges, stats, std, wgrad, layout):
    if len(std) != len(wgrad):  # the kernel reads std[w] for every wgrad[w]
        raise ValueError(f"{len(std)} update stds for {len(wgrad)} weight gradients")
    out = np.empty(stats.shape, dtype=np.float32)
    wratio = np.empty((len(wgrad), len(WRATIO)), dtype=np.float32)
    kernels.finish(stats, layout.tanh, std, wgrad, out, wratio)
    return counts, edges, out, wratio


# -----------------------------------------------------------------------------
# processing: pure functions on records


def bin_centers(lo, hi, bins):
    w = (hi - lo) / bins
    return lo + w * (np.arange(bins) + 0.5)


def density(counts, lo, hi):
    """Counts -> probability density (integrates to the fraction of values inside [lo, hi])."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return counts
    width = (hi - lo) / len(counts)
    return counts / (total * width)
