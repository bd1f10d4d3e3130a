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

Bucket edges are fixed per tensor (a key) so that steps are comparable; they move
only when the data outgrows them (over 0.5% out of range) or shrinks into the
middle eighth, and every record carries the edges it was counted with.
"""

import math

import numpy as np
import torch

BINS = 64
STAT_COLUMNS = ("mean", "std", "sat", "zero", "nan", "inf")
TANH_SATURATION = 0.97  # the lecture's threshold for "saturated"

# -----------------------------------------------------------------------------
# capture: many tensors -> one Summary, in a handful of torch ops


def nice_bound(m):
    """Smallest 1, 2 or 5 x 10^k at or above m (m > 0)."""
    if not math.isfinite(m) or m <= 0:
        return 1.0
    e = math.floor(math.log10(m))
    for f in (1.0, 2.0, 5.0, 10.0):
        b = f * 10.0**e
        if b >= m * (1 - 1e-9):
            return b
    return 10.0 ** (e + 1)


class Summarizer:
    """
    Summarizes a fixed list of tensors (same keys every time) in one pass: the
    tensors are concatenated and every statistic is a bincount over segment ids,
    so the cost is a dozen ops whatever the number of layers.
    """

    def __init__(self, bins=BINS):
        self.bins = bins
        self.edges = {}   # key -> (lo, hi), kept between calls
        self._cache = {}  # layout -> per-element vectors

    def _layout(self, keys, sizes, thresholds):
        """Per-element lo/scale/offset vectors for these keys, sizes and edges (cached: they rarely change)."""
        edges = tuple(self.edges[k] for k in keys)
        sig = (tuple(keys), tuple(sizes), edges, tuple(thresholds))
        if sig not in self._cache:
            if len(self._cache) > 16:
                self._cache.clear()
            n = np.array(sizes, dtype=np.int64)
            lo = np.array([e[0] for e in edges], dtype=np.float32)
            hi = np.array([e[1] for e in edges], dtype=np.float32)
            scale = (self.bins / (hi - lo)).astype(np.float32)
            offset = np.arange(len(keys), dtype=np.int64) * (self.bins + 2) + 1
            self._cache[sig] = (np.repeat(lo, n), np.repeat(scale, n), np.repeat(offset, n),
                                np.array(thresholds, dtype=np.float32))
        return self._cache[sig]

    def _init_edges(self, key, x, kind):
        if kind == "tanh":
            self.edges[key] = (-1.0, 1.0)
            return
        x = x[torch.isfinite(x)]
        m = float(x.abs().max()) if x.numel() else 1.0
        b = nice_bound(m * 1.5)  # headroom: edges that refit every few steps cost a recount each time
        self.edges[key] = (0.0, b) if kind in ("relu",) else (-b, b)

    def __call__(self, keys, tensors, kinds):
        """keys, tensors, kinds: parallel lists. Returns (counts, edges, stats) as numpy arrays."""
        flat_parts = [t.detach().reshape(-1).float() for t in tensors]
        for key, x, kind in zip(keys, flat_parts, kinds):
            if key not in self.edges:
                self._init_edges(key, x, kind)
        sizes = [x.numel() for x in flat_parts]
        thresholds = [TANH_SATURATION if k == "tanh" else math.inf for k in kinds]
        counts, stats = self._summarize(keys, flat_parts, sizes, thresholds)
        # edges that no longer fit the data are refit once (for the next step too) and recounted
        refit = []
        for i, key in enumerate(keys):
            if kinds[i] == "tanh" or sizes[i] == 0:
                continue
            n_fin = sizes[i] - stats[i, 4] - stats[i, 5]
            outside = counts[i, 0] + counts[i, -1]
            inner = counts[i, 1:-1]
            nz = np.nonzero(inner)[0]
            shrunk = len(nz) and nz[0] >= self.bins * 7 // 16 and nz[-1] < self.bins * 9 // 16 and outside == 0
            if n_fin and (outside > 0.005 * n_fin or shrunk):
                self._init_edges(key, flat_parts[i], kinds[i])
                refit.append(i)
        if refit:
            counts, stats = self._summarize(keys, flat_parts, sizes, thresholds)
        edges = np.array([self.edges[k] for k in keys], dtype=np.float32).reshape(-1, 2)
        return counts, edges, stats

    def _summarize(self, keys, flat_parts, sizes, thresholds):
        # one float32 array for all tensors; every statistic is a segmented sum (np.add.reduceat),
        # one pass each -- far cheaper than a torch op per tensor or torch's weighted bincount
        k = len(keys)
        nb = k * (self.bins + 2)
        f = torch.cat(flat_parts).cpu().numpy() if k else np.zeros(0, np.float32)
        lo, scale, offset, thr = self._layout(keys, sizes, thresholds)
        sizes = np.array(sizes, dtype=np.int64)
        stats = np.zeros((k, 6), dtype=np.float64)
        counts = np.zeros((k, self.bins + 2), dtype=np.int32)
        if f.size == 0:
            stats[:, 2] = np.nan
            return counts, stats.astype(np.float32)
        finite = np.isfinite(f)
        all_finite = bool(finite.all())
        if not all_finite:
            stats[:, 4] = segment_sum(np.isnan(f), sizes)
            stats[:, 5] = segment_sum(np.isinf(f), sizes)
            f = np.where(finite, f, np.float32(0))
        n_fin = np.maximum(sizes - stats[:, 4] - stats[:, 5], 1)
        mean = segment_sum(f, sizes) / n_fin
        c = f - np.repeat(mean, sizes).astype(np.float32)
        if not all_finite:
            c[~finite] = 0
        stats[:, 0] = mean
        stats[:, 1] = np.sqrt(segment_sum(c * c, sizes) / np.maximum(n_fin - 1, 1))
        a = np.abs(f)
        stats[:, 2] = segment_sum(a > np.repeat(thr, sizes), sizes) / n_fin
        zero = f == 0
        if not all_finite:
            zero &= finite
        stats[:, 3] = segment_sum(zero, sizes) / n_fin
        idx = np.floor((f - lo) * scale)
        np.clip(idx, -1, self.bins, out=idx)
        idx = idx.astype(np.int64) + offset
        if not all_finite:
            idx = idx[finite]
        counts = np.bincount(idx, minlength=nb).reshape(k, self.bins + 2).astype(np.int32)
        stats[sizes == 0, :4] = 0
        stats[np.isinf(thr), 2] = np.nan  # saturation only means something for tanh
        return counts, stats.astype(np.float32)


def segment_sum(x, sizes):
    """Sum of each consecutive segment of x (lengths `sizes`, zeros allowed), in float64."""
    out = np.zeros(len(sizes), dtype=np.float64)
    nz = sizes > 0
    if nz.any():
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[nz]
        out[nz] = np.add.reduceat(x, starts, dtype=np.float64)
    return out


def segment_std(parts):
    """std (unbiased) of each tensor in parts, in one pass; returns a float64 numpy array."""
    if not parts:
        return np.zeros(0)
    sizes = np.array([p.numel() for p in parts], dtype=np.int64)
    f = torch.cat([p.detach().reshape(-1).float() for p in parts]).cpu().numpy()
    n = np.maximum(sizes, 1)
    with np.errstate(invalid="ignore", over="ignore"):  # a non-finite weight gives a NaN std, not a crash
        mean = segment_sum(f, sizes) / n
        c = f - np.repeat(mean, sizes).astype(np.float32)
        return np.sqrt(segment_sum(c * c, sizes) / np.maximum(sizes - 1, 1))


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
