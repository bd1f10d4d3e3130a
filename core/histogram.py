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

    def _layout(self, keys, sizes, thresholds, device):
        edges = tuple(self.edges[k] for k in keys)
        sig = (tuple(keys), tuple(sizes), edges, tuple(thresholds), str(device))
        if sig not in self._cache:
            if len(self._cache) > 16:
                self._cache.clear()
            n = torch.tensor(sizes, device=device)
            seg = torch.repeat_interleave(torch.arange(len(keys), device=device), n)
            lo = torch.tensor([e[0] for e in edges], device=device, dtype=torch.float32)
            hi = torch.tensor([e[1] for e in edges], device=device, dtype=torch.float32)
            scale = self.bins / (hi - lo)
            thr = torch.tensor(thresholds, device=device, dtype=torch.float32)
            offset = seg * (self.bins + 2) + 1
            self._cache[sig] = (seg, lo[seg], scale[seg], thr[seg], offset, n.to(torch.float32))
        return self._cache[sig]

    def _init_edges(self, key, x, kind):
        if kind == "tanh":
            self.edges[key] = (-1.0, 1.0)
            return
        x = x[torch.isfinite(x)]
        m = float(x.abs().max()) if x.numel() else 1.0
        b = nice_bound(m * 1.05)
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
        k = len(keys)
        flat = torch.cat(flat_parts) if k else torch.zeros(0)
        seg, lo, scale, thr, offset, n = self._layout(keys, sizes, thresholds, flat.device)
        finite = torch.isfinite(flat)
        nan = inf = torch.zeros(k, device=flat.device)
        if not bool(finite.all()):
            nan = torch.bincount(seg[torch.isnan(flat)], minlength=k).float()
            inf = torch.bincount(seg[torch.isinf(flat)], minlength=k).float()
            flat = torch.where(finite, flat, torch.zeros_like(flat))
        n_fin = (n - nan - inf).clamp_(min=1)
        wfin = finite.float()
        mean = torch.bincount(seg, weights=flat, minlength=k) / n_fin
        centered = (flat - mean[seg]) * wfin
        var = torch.bincount(seg, weights=centered * centered, minlength=k) / (n_fin - 1).clamp_(min=1)
        sat = torch.bincount(seg, weights=(flat.abs() > thr).float() * wfin, minlength=k) / n_fin
        zero = torch.bincount(seg, weights=(flat == 0).float() * wfin, minlength=k) / n_fin
        nb = k * (self.bins + 2)
        if flat.device.type == "cpu":  # numpy's bincount of ints is ~4x torch's on CPU
            f, lo_, sc_, off_ = (t.numpy() for t in (flat, lo, scale, offset))
            idx = np.floor((f - lo_) * sc_)
            np.clip(idx, -1, self.bins, out=idx)
            idx = idx.astype(np.int64) + off_
            if not bool(finite.all()):
                idx = idx[finite.numpy()]
            counts = np.bincount(idx, minlength=nb).reshape(k, self.bins + 2).astype(np.int32)
        else:
            idx = ((flat - lo) * scale).floor_().clamp_(-1, self.bins).long() + offset
            if not bool(finite.all()):
                idx = idx[finite]
            counts = torch.bincount(idx, minlength=nb).view(k, self.bins + 2).to(torch.int32).cpu().numpy()
        stats = torch.stack([mean, var.sqrt(), sat, zero, nan, inf], 1).cpu().numpy().astype(np.float32)
        stats[np.isinf(np.array(thresholds)), 2] = np.nan  # saturation only means something for tanh
        return counts, stats


def segment_std(parts):
    """std (unbiased) of each tensor in parts, in one pass; returns a float64 numpy array."""
    k = len(parts)
    if k == 0:
        return np.zeros(0)
    flat = torch.cat([p.reshape(-1).float() for p in parts])
    n = torch.tensor([p.numel() for p in parts], device=flat.device)
    seg = torch.repeat_interleave(torch.arange(k, device=flat.device), n)
    nf = n.float()
    mean = torch.bincount(seg, weights=flat, minlength=k) / nf
    c = flat - mean[seg]
    var = torch.bincount(seg, weights=c * c, minlength=k) / (nf - 1).clamp(min=1)
    return var.sqrt().double().cpu().numpy()


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
