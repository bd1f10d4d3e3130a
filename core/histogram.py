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
    Summarizes a fixed list of tensors (same keys every time), one step or many steps
    at once. Each step's tensors are laid end to end in one row of a float32 matrix
    (steps, values) and every statistic is a segmented sum along the rows, so the cost
    is a few dozen array ops per call whatever the number of layers and steps.
    Summarizing K steps in one call gives exactly what K calls would: edges refit at
    the step that outgrows them, and the steps after it are counted on the new edges.
    """

    def __init__(self, bins=BINS):
        self.bins = bins
        self.edges = {}   # key -> (lo, hi), kept between calls
        self._cache = {}  # layout -> segment starts, sizes and per-value vectors

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
        keys, kinds = tuple(keys), tuple(kinds)
        K, k = len(batch), len(keys)
        sizes = tuple(t.numel() for t in batch[0])
        # (K, N) float32: each step's tensors end to end, as a row
        parts = [t.detach().reshape(-1) for ts in batch for t in ts]
        m = torch.cat(parts) if parts else torch.zeros(0)
        if m.dtype != torch.float32:
            m = m.float()
        M = m.cpu().numpy().reshape(K, -1)
        seg = self._segments(keys, kinds, sizes)
        for q, key in enumerate(keys):
            if key not in self.edges:  # a new key: edges from its first step
                self._init_edges(key, self._part(M, 0, seg, q), kinds[q])
        stats = self._stats(M, seg)
        bad = (stats[:, :, 4] + stats[:, :, 5]).sum(axis=1) > 0  # steps with NaN/inf somewhere
        counts = np.zeros((K, k, self.bins + 2), dtype=np.int32)
        edges = np.zeros((K, k, 2), dtype=np.float32)
        # count every step on the current edges; at the first step whose data outgrew them,
        # refit those keys (from that step), recount it, and go on from the next step
        j = 0
        while j < K:
            e = np.array([self.edges[key] for key in keys], dtype=np.float32).reshape(-1, 2)
            c = self._count(M[j:], seg, e, bad[j:])
            need = self._outgrown(c, stats[j:], seg)
            rows = np.nonzero(need.any(axis=1))[0]
            done = K - j if len(rows) == 0 else rows[0]
            counts[j:j + done], edges[j:j + done] = c[:done], e
            j += done
            if j == K:
                break
            for q in np.nonzero(need[done])[0]:
                self._init_edges(keys[q], self._part(M, j, seg, q), kinds[q])
            e = np.array([self.edges[key] for key in keys], dtype=np.float32).reshape(-1, 2)
            counts[j], edges[j] = self._count(M[j:j + 1], seg, e, bad[j:j + 1])[0], e
            j += 1
        return counts, edges, stats

    def _segments(self, keys, kinds, sizes):
        """Where each key's values sit in a row, and which keys have a saturation threshold (cached)."""
        sig = (keys, kinds, sizes)
        if sig not in self._cache:
            if len(self._cache) > 16:
                self._cache.clear()
            n = np.array(sizes, dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
            thr = np.array([TANH_SATURATION if kd == "tanh" else math.inf for kd in kinds], dtype=np.float32)
            self._cache[sig] = dict(sizes=n, starts=starts, thr=thr, nz=n > 0, nzstarts=starts[n > 0],
                                    tanh=[q for q in range(len(keys)) if kinds[q] == "tanh" and n[q] > 0],
                                    fixed=np.array([kd == "tanh" for kd in kinds]), rows={})
        return self._cache[sig]

    @staticmethod
    def _part(M, j, seg, q):
        a = seg["starts"][q]
        return torch.from_numpy(M[j, a:a + seg["sizes"][q]])

    def _init_edges(self, key, x, kind):
        if kind == "tanh":
            self.edges[key] = (-1.0, 1.0)
            return
        x = x[torch.isfinite(x)]
        m = float(x.abs().max()) if x.numel() else 1.0
        b = nice_bound(m * 1.5)  # headroom: edges that refit every few steps cost a recount each time
        self.edges[key] = (0.0, b) if kind in ("relu",) else (-b, b)

    def _segsum(self, x, seg, dtype=np.float64):
        """Per row, the sum of each key's segment: (K, k)."""
        out = np.zeros((x.shape[0], len(seg["sizes"])), dtype=dtype)
        if seg["nz"].any():
            out[:, seg["nz"]] = np.add.reduceat(x, seg["nzstarts"], axis=1, dtype=dtype)
        return out

    def _stats(self, M, seg):
        """mean, std, saturated, zero, nan, inf of every (step, key): (K, k, 6) float32."""
        K, k = M.shape[0], len(seg["sizes"])
        stats = np.zeros((K, k, 6), dtype=np.float64)
        if M.size == 0:
            stats[:, :, 2] = np.nan
            return stats.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # huge values give an inf std, as they should
            return self._stats_all(M, seg, stats)

    def _stats_all(self, M, seg, stats):
        sizes = seg["sizes"]
        total = self._segsum(M, seg)  # NaN or inf in a segment makes its sum non-finite
        bad = ~np.isfinite(total).all(axis=1)
        ok = ~bad
        if ok.any():
            Mo = M[ok] if bad.any() else M
            n = np.maximum(sizes, 1)
            mean = total[ok] / n
            c = np.repeat(mean.astype(np.float32), sizes, axis=1)
            np.subtract(Mo, c, out=c)
            np.multiply(c, c, out=c)
            st = stats[ok] if bad.any() else stats
            st[:, :, 0] = mean
            st[:, :, 1] = np.sqrt(self._segsum(c, seg) / np.maximum(sizes - 1, 1))
            for q in seg["tanh"]:
                a = seg["starts"][q]
                np.abs(Mo[:, a:a + sizes[q]], out=c[:, a:a + sizes[q]])
                st[:, q, 2] = (c[:, a:a + sizes[q]] > seg["thr"][q]).sum(axis=1) / n[q]
            st[:, :, 3] = self._segsum(Mo == 0, seg, np.int64) / n
            if bad.any():
                stats[ok] = st
        for j in np.nonzero(bad)[0]:
            stats[j] = self._stats_nonfinite(M[j], seg)
        stats[:, sizes == 0, :4] = 0
        stats[:, np.isinf(seg["thr"]), 2] = np.nan  # saturation only means something for tanh
        return stats.astype(np.float32)

    def _stats_nonfinite(self, f, seg):
        """One step with NaN/inf somewhere: they are counted, and left out of every other statistic."""
        sizes, thr = seg["sizes"], seg["thr"]
        stats = np.zeros((len(sizes), 6), dtype=np.float64)
        finite = np.isfinite(f)
        stats[:, 4] = segment_sum(np.isnan(f), sizes)
        stats[:, 5] = segment_sum(np.isinf(f), sizes)
        f = np.where(finite, f, np.float32(0))
        n_fin = np.maximum(sizes - stats[:, 4] - stats[:, 5], 1)
        mean = segment_sum(f, sizes) / n_fin
        c = f - np.repeat(mean, sizes).astype(np.float32)
        c[~finite] = 0
        stats[:, 0] = mean
        stats[:, 1] = np.sqrt(segment_sum(c * c, sizes) / np.maximum(n_fin - 1, 1))
        stats[:, 2] = segment_sum(np.abs(f) > np.repeat(thr, sizes), sizes) / n_fin
        stats[:, 3] = segment_sum((f == 0) & finite, sizes) / n_fin
        return stats

    def _count(self, M, seg, edges, bad):
        """Bucket counts of every (step, key) on these edges (k, 2): (K, k, bins + 2); NaN/inf not counted
        (`bad` marks the steps that have some)."""
        K, k = M.shape[0], len(seg["sizes"])
        nb = k * (self.bins + 2)
        if M.size == 0:
            return np.zeros((K, k, self.bins + 2), dtype=np.int32)
        lo, scale, offset = self._rows(seg, edges)
        # bucket = floor((x - lo) * scale) in float32, clipped to [-1, bins] (under / over), plus
        # the key's offset; the offset is added as a float (exact: < 2**24) to save an integer pass
        idx = np.subtract(M, lo)
        np.multiply(idx, scale, out=idx)
        np.floor(idx, out=idx)
        np.clip(idx, -1, self.bins, out=idx)
        np.add(idx, offset, out=idx)
        ti = torch.from_numpy(idx).to(torch.int32)
        out = np.empty((K, k, self.bins + 2), dtype=np.int32)
        for j in range(K):
            r = ti[j][torch.from_numpy(np.isfinite(M[j]))] if bad[j] else ti[j]
            out[j] = torch.bincount(r, minlength=nb).numpy().reshape(k, self.bins + 2)
        return out

    def _rows(self, seg, edges):
        """Per value: lo, scale and the key's offset in the flat counts, for these edges (cached)."""
        sig = edges.tobytes()
        rows = seg["rows"]
        if sig not in rows:
            if len(rows) > 8:
                rows.clear()
            lo, hi = edges[:, 0], edges[:, 1]
            scale = (self.bins / (hi - lo)).astype(np.float32)
            offset = (np.arange(len(lo)) * (self.bins + 2) + 1).astype(np.float32)
            sizes = seg["sizes"]
            rows[sig] = (np.repeat(lo, sizes), np.repeat(scale, sizes), np.repeat(offset, sizes))
        return rows[sig]

    def _outgrown(self, counts, stats, seg):
        """(K, k) bool: which keys' edges no longer fit that step's data (over 0.5% outside, or shrunk)."""
        sizes = seg["sizes"]
        n_fin = sizes - stats[:, :, 4] - stats[:, :, 5]
        outside = counts[:, :, 0] + counts[:, :, -1]
        inner = counts[:, :, 1:-1] > 0
        anyin = inner.any(axis=2)
        first = inner.argmax(axis=2)
        last = self.bins - 1 - inner[:, :, ::-1].argmax(axis=2)
        shrunk = anyin & (first >= self.bins * 7 // 16) & (last < self.bins * 9 // 16) & (outside == 0)
        need = (n_fin > 0) & ((outside > 0.005 * n_fin) | shrunk)
        need[:, seg["fixed"] | (sizes == 0)] = False
        return need


def segment_sum(x, sizes):
    """Sum of each consecutive segment of x (lengths `sizes`, zeros allowed), in float64."""
    out = np.zeros(len(sizes), dtype=np.float64)
    nz = sizes > 0
    if nz.any():
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[nz]
        out[nz] = np.add.reduceat(x, starts, dtype=np.float64)
    return out


def segment_std(rows, sizes):
    """
    std (unbiased) of each consecutive segment (lengths `sizes`) of each row of a float32
    matrix, in one pass: (R, len(sizes)) float64. A non-finite value gives a NaN std, not a crash.
    """
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, int(np.sum(sizes)))
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.zeros((rows.shape[0], len(sizes)))
    if len(sizes) == 0 or rows.shape[0] == 0:
        return out
    nz = sizes > 0
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[nz]
    n = np.maximum(sizes, 1)
    with np.errstate(invalid="ignore", over="ignore"):
        mean = np.zeros_like(out)
        mean[:, nz] = np.add.reduceat(rows, starts, axis=1, dtype=np.float64)
        mean /= n
        c = rows - np.repeat(mean.astype(np.float32), sizes, axis=1)
        np.multiply(c, c, out=c)
        out[:, nz] = np.add.reduceat(c, starts, axis=1, dtype=np.float64)
        return np.sqrt(out / np.maximum(sizes - 1, 1))


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
