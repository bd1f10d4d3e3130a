"""
The capture math's inner loops, compiled with numba: per tensor, two passes over its
values give its histogram, mean, std, saturated and zero fractions and NaN/inf
counts. In numpy the same took a dozen passes over a step's ~100k values, which cost
about as much as the lecture-4 model's whole training step; here it is about a fifth.

The kernels read each tensor where torch keeps it (its data pointer: a contiguous
float32 CPU tensor, which the caller keeps alive), so nothing is copied first, and
they release the GIL (nogil): a summarizing thread can run them beside training (the
Python around them still shares the GIL with the training thread). Compiled code is
cached on disk (cache=True): only the first capture on a machine pays for compiling
(a few seconds). core.capture.histogram owns the record format and calls these; core.capture
calls the parameter kernels (copy_params, update_stds_in_place).
"""

import math

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

# reductions may be reordered (vectorized); NaN/inf keep their meaning (no "nnan"/"ninf")
_REDUCE = {"reassoc", "nsz", "contract"}

# the widest and narrowest bucket edges (+-bound): float32 holds 2 * MAX_BOUND, and 64 / (2 * MIN_BOUND)
MAX_BOUND = 1e38
MIN_BOUND = 1e-30
# bucket counts up to which float32 holds every index exactly (the vectorized tally's clamp)
MAX_BINS = 1 << 20


@intrinsic
def _float32_ptr(typingctx, addr):
    """An integer address (torch's data_ptr()) as a float32 pointer, for carray."""
    sig = types.CPointer(types.float32)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.float32)))
    return sig, codegen


@njit(nogil=True, cache=True)
def _values(addr, n):
    return carray(_float32_ptr(addr), (n,))


@njit(nogil=True, cache=True, fastmath=_REDUCE)
def _sums(x, shift):
    """Sum and sum of squares of x - shift (shifted, so the variance does not cancel)."""
    s = 0.0
    ss = 0.0
    for i in range(x.shape[0]):
        d = np.float64(x[i]) - shift
        s += d
        ss += d * d
    return s, ss


@njit(nogil=True, cache=True)
def _sums_finite(x, shift):
    """As _sums over the finite values only, and the NaN and inf counts."""
    s = 0.0
    ss = 0.0
    nnan = 0
    ninf = 0
    for i in range(x.shape[0]):
        v = x[i]
        if math.isnan(v):
            nnan += 1
        elif math.isinf(v):
            ninf += 1
        else:
            d = np.float64(v) - shift
            s += d
            ss += d * d
    return s, ss, nnan, ninf


# values are tallied a chunk at a time: first every value's bucket index (a loop the compiler vectorizes),
# then the increments, spread over SPREAD copies of the counts so that a run of values in one bucket (the
# common case: activations crowd a few buckets) does not wait on its own last increment
CHUNK = 512
SPREAD = 4  # the rows _spread takes in turn (its loop is written out for four)


@njit(nogil=True, cache=True)  # no fastmath: the bucket arithmetic must round as numpy's does
def _indices(x, lo, scale, thr, fbins, idx):
    """idx[i] = the counts' index of x[i], as _bucket gives it (in float32 throughout, which gives the same
    index: the clamping is exact, and a NaN y goes under as there); returns the counts of |x| > thr and of
    zeros. Every value must be finite."""
    sat = 0
    zero = 0
    for i in range(x.shape[0]):
        v = x[i]
        sat += abs(v) > thr
        zero += v == 0
        y = (v - lo) * scale
        y = y if y > np.float32(-1.0) else np.float32(-1.0)  # and NaN
        y = y if y < fbins else fbins
        idx[i] = np.int32(math.floor(y)) + 1
    return sat, zero


@njit(nogil=True, cache=True)
def _spread(idx, m, spread):
    """Count idx[:m] into the SPREAD rows of spread, in turn."""
    i = 0
    while i + 4 <= m:
        spread[0, idx[i]] += 1
        spread[1, idx[i + 1]] += 1
        spread[2, idx[i + 2]] += 1
        spread[3, idx[i + 3]] += 1
        i += 4
    while i < m:
        spread[0, idx[i]] += 1
        i += 1


@njit(nogil=True, cache=True)
def _tally(x, lo, scale, thr, c, spread, idx):
    """Bucket counts into c (c[0] under lo, c[1..bins] the buckets, c[bins + 1] at or over hi), with
    bucket = floor((x - lo) * scale), (x - lo) * scale in float32 as numpy/torch compute it; and the
    counts of |x| > thr and of zeros. Every value must be finite. spread (SPREAD, bins + 2) and idx
    (CHUNK) are scratch space, made once per step by the caller (a step has dozens of small tensors)."""
    bins = c.shape[0] - 2
    if bins > MAX_BINS:  # float32 would round the top clamp: count one value at a time
        return _tally_finite(x, lo, scale, thr, c)
    fbins = np.float32(bins)
    spread[:] = 0
    sat = 0
    zero = 0
    n = x.shape[0]
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        s, z = _indices(x[start:start + m], lo, scale, thr, fbins, idx)
        sat += s
        zero += z
        _spread(idx, m, spread)
    for b in range(bins + 2):
        for r in range(SPREAD):
            c[b] += spread[r, b]
    return sat, zero


@njit(nogil=True, cache=True)
def _bucket(y, bins):
    """Index into the counts of a value at y = (x - lo) * scale: 0 under, bins + 1 at or over hi. With
    edges inside +-MIN_BOUND..MAX_BOUND, y is never NaN for a finite x; the index is clamped anyway, so no
    value can ever be counted outside the counts."""
    i = np.int64(math.floor(min(max(np.float64(y), -1.0), np.float64(bins)))) + 1
    return min(max(i, 0), bins + 1)


@njit(nogil=True, cache=True)
def _tally_finite(x, lo, scale, thr, c):
    """_tally skipping NaN/inf."""
    bins = c.shape[0] - 2
    sat = 0
    zero = 0
    for i in range(x.shape[0]):
        v = x[i]
        if not math.isfinite(v):
            continue
        sat += abs(v) > thr
        zero += v == 0
        c[_bucket((v - lo) * scale, bins)] += 1
    return sat, zero


@njit(nogil=True, cache=True)
def _summarize_one(x, lo, scale, thr, fixed, c, st, spread, idx):
    """One tensor: counts c (bins + 2) on edges (lo, scale = bins / (hi - lo)) and stats st = mean, std
    (unbiased), fraction above thr, fraction of zeros, NaN count, inf count (moments and fractions over the
    finite values). Returns whether its edges no longer fit: over 0.5% of the values outside, or all of
    them inside the middle eighth (never when `fixed`)."""
    n = x.shape[0]
    bins = c.shape[0] - 2
    c[:] = 0
    if n == 0:
        st[:] = 0.0
        return False
    shift = np.float64(x[0]) if math.isfinite(x[0]) else 0.0
    s, ss = _sums(x, shift)
    nnan = 0
    ninf = 0
    if math.isfinite(s) and math.isfinite(ss):
        sat, zero = _tally(x, lo, scale, thr, c, spread, idx)
    else:
        s, ss, nnan, ninf = _sums_finite(x, shift)
        sat, zero = _tally_finite(x, lo, scale, thr, c)
    nfin = n - nnan - ninf
    m = max(nfin, 1)
    st[0] = shift + s / m if nfin > 0 else 0.0
    st[1] = _std(s, ss, nfin)
    st[2] = sat / m
    st[3] = zero / m
    st[4] = nnan
    st[5] = ninf
    outside = c[0] + c[bins + 1]
    first = -1
    last = -1
    for b in range(bins):
        if c[b + 1] > 0:
            if first < 0:
                first = b
            last = b
    shrunk = first >= bins * 7 // 16 and last < bins * 9 // 16 and outside == 0
    return (not fixed) and nfin > 0 and (outside > 0.005 * nfin or shrunk)


@njit(nogil=True, cache=True)
def nice_bound(m):
    """Smallest 1, 2 or 5 x 10^k at or above m (m > 0); 1 for anything else."""
    if not math.isfinite(m) or m <= 0:
        return 1.0
    e = math.floor(math.log10(m))
    for f in (1.0, 2.0, 5.0, 10.0):
        b = f * 10.0**e
        if b >= m * (1 - 1e-9):
            return b
    return 10.0 ** (e + 1)


@njit(nogil=True, cache=True)
def _fit_edges(x, tanh, relu, edges):
    """Edges for a tensor's values: tanh's (-1, 1); else a round bound 1.5x the largest |finite value|
    (headroom: edges that refit every few steps cost a recount each time), from 0 for ReLU."""
    if tanh:
        edges[0], edges[1] = -1.0, 1.0
        return
    m = -1.0
    for i in range(x.shape[0]):
        v = abs(np.float64(x[i]))
        if v > m and math.isfinite(v):
            m = v
    b = nice_bound((m if m >= 0 else 1.0) * 1.5)  # no finite value: as if the largest were 1
    b = min(max(b, MIN_BOUND), MAX_BOUND)  # hi - lo and bins / (hi - lo) stay finite in float32
    edges[0], edges[1] = (0.0 if relu else -b), b


@njit(nogil=True, cache=True)
def summarize(addrs, sizes, tanh, relu, thr, edges, counts, stats, used):
    """
    One step's tensors (sizes[q] float32 values at address addrs[q]) into counts (k, bins + 2) and
    stats (k, 6). `edges` (k, 2) float32 is the layout's state, updated in place: NaN edges are fitted
    to this step's values (a new key), and edges this step outgrew are refitted and the tensor counted
    again. used (k, 2) gets the edges each tensor was counted on.
    """
    bins = np.float32(counts.shape[1] - 2)
    spread = np.zeros((SPREAD, counts.shape[1]), dtype=np.int32)
    idx = np.empty(CHUNK, dtype=np.int32)
    for q in range(addrs.shape[0]):
        x = _values(addrs[q], sizes[q])
        if math.isnan(edges[q, 0]):
            _fit_edges(x, tanh[q], relu[q], edges[q])
        for attempt in range(2):
            lo = edges[q, 0]
            scale = bins / (edges[q, 1] - lo)
            if not _summarize_one(x, lo, scale, thr[q], tanh[q], counts[q], stats[q], spread, idx) or attempt == 1:
                break
            _fit_edges(x, tanh[q], relu[q], edges[q])
        used[q, 0], used[q, 1] = edges[q, 0], edges[q, 1]


@njit(nogil=True, cache=True)
def _std(s, ss, n):
    """Unbiased std from the sum and sum of squares of n shifted values (NaN stays NaN)."""
    var = (ss - s * s / max(n, 1)) / max(n - 1, 1)
    return math.sqrt(var) if not var < 0 else 0.0  # rounding can leave a tiny negative


@njit(nogil=True, cache=True, fastmath=_REDUCE)
def _std_pair(x, y):
    """Unbiased std of x and of x - y, the difference taken in float32 (NaN if either has a NaN/inf)."""
    n = x.shape[0]
    if n == 0:
        return 0.0, 0.0
    sx = np.float64(x[0])
    sd = np.float64(x[0] - y[0])
    ax = 0.0
    axx = 0.0
    ad = 0.0
    add = 0.0
    for i in range(n):
        dx = np.float64(x[i]) - sx
        dd = np.float64(x[i] - y[i]) - sd
        ax += dx
        axx += dx * dx
        ad += dd
        add += dd * dd
    return _std(ax, axx, n), _std(ad, add, n)


@njit(nogil=True, cache=True)
def update_stds(after, before, starts, sizes, out):
    """Per parameter (a span of the flat vectors, which the caller checked are as long as sizes say):
    out[q] = std(after), std(after - before)."""
    for q in range(starts.shape[0]):
        a = starts[q]
        b = a + sizes[q]
        out[q, 0], out[q, 1] = _std_pair(after[a:b], before[a:b])


@njit(nogil=True, cache=True)
def copy_params(addrs, sizes, starts, theta):
    """Parameters (sizes[q] float32 values at address addrs[q]) laid end to end into theta."""
    for q in range(addrs.shape[0]):
        x = _values(addrs[q], sizes[q])
        a = starts[q]
        for i in range(sizes[q]):
            theta[a + i] = x[i]


@njit(nogil=True, cache=True)
def update_stds_in_place(addrs, sizes, starts, theta, out):
    """As update_stds with `after` read where the parameters are and `before` in theta (as copy_params laid
    it out), which then gets `after`: the next step's "before"."""
    for q in range(addrs.shape[0]):
        x = _values(addrs[q], sizes[q])
        a = starts[q]
        y = theta[a:a + sizes[q]]
        out[q, 0], out[q, 1] = _std_pair(x, y)
        for i in range(sizes[q]):
            y[i] = x[i]


@njit(nogil=True, cache=True, error_model="numpy")
def finish(stats, tanh, std, wgrad, out_stats, wratio):
    """A step's record from its numbers: out_stats = stats in float32, the saturated fraction NaN where it
    means nothing (all but tanh); per weight w, wratio[w] = std(theta), std(grad) / std(theta),
    log10(std(delta theta) / std(theta)), with std = (std(theta), std(delta theta)) rows and the weight's
    gradient at stats row wgrad[w]; anything not finite (no update, theta all equal) is NaN."""
    for q in range(stats.shape[0]):
        for j in range(stats.shape[1]):
            out_stats[q, j] = stats[q, j]
        if not tanh[q]:
            out_stats[q, 2] = np.nan
    for w in range(wgrad.shape[0]):
        d = std[w, 0]
        r = (d, stats[wgrad[w], 1] / d, math.log10(std[w, 1] / d))
        for j in range(3):
            v = np.float32(r[j])
            wratio[w, j] = v if math.isfinite(v) else np.nan
