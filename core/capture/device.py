"""
The capture math where the tensors live, for a GPU: the numbers core.capture.kernels gives on the
CPU -- bucket counts on kept edges, moments, saturated and zero fractions, NaN/inf counts, the update
stds -- as torch operations on the tensors' own device. Nothing waits for the GPU: every decision
(fit the edges, refit them) is made on the device, and the small results are copied to pinned host
memory behind a CUDA event that says when they have arrived. Only the records cross to the host,
never the tensors.

On the CPU the kernels are faster (one pass over memory, no temporaries); the tests run this path on
CPU tensors and compare it with them.
"""

import torch

from core.capture.kernels import MAX_BOUND, MIN_BOUND

# -----------------------------------------------------------------------------
# one tensor at a time: views in, 0-dim device tensors out (no value goes to the host here)


def nice_bound(m):
    """kernels.nice_bound over a float64 tensor: the smallest 1, 2 or 5 x 10^k at or above m; 1 where m
    is not a positive finite number."""
    ok = torch.isfinite(m) & (m > 0)
    m = torch.where(ok, m, 1.0)
    e = torch.floor(torch.log10(m))
    target = m * (1 - 1e-9)
    b = torch.pow(10.0, e + 1)
    for f in (5.0, 2.0, 1.0):  # the smallest that reaches target wins: try from the top down
        c = f * torch.pow(10.0, e)
        b = torch.where(c >= target, c, b)
    return torch.where(ok, b, 1.0)


def fitted_edges(x, fin, tanh, relu):
    """kernels._fit_edges: (lo, hi) float32 for a tensor's values: tanh's (-1, 1), else a round bound
    1.5x the largest |finite value| (1.5 when none is finite), from 0 for ReLU."""
    if tanh:
        one = torch.ones((), device=x.device)  # made on the device: no copy from the host
        return torch.stack([-one, one])
    if x.numel():
        m = torch.where(fin, x.abs(), -1.0).amax().double()
    else:
        m = torch.full((), -1.0, dtype=torch.float64, device=x.device)  # (made there: no copy from the host)
    m = torch.where(m >= 0, m, 1.0)
    b = nice_bound(m * 1.5).clamp(MIN_BOUND, MAX_BOUND).float()
    return torch.stack([torch.zeros_like(b) if relu else -b, b])


def buckets(x, edges, bins):
    """Each value's index into the counts: 0 under lo, 1..bins the buckets, bins + 1 at or over hi, with
    y = (x - lo) * scale in float32 as the kernels compute it (int64)."""
    lo = edges[0]
    scale = edges.new_full((), float(bins)) / (edges[1] - lo)  # one float32 division, as the kernels do
    y = ((x - lo) * scale).clamp(-1.0, float(bins))  # a NaN y (never for a finite x) goes under, as there
    return torch.nan_to_num(y, nan=-1.0).floor_().long() + 1


def summarize_tensor(x, edges, tanh, relu, thr, bins):
    """One tensor (flattened float32) against its layout's edges (2,) float32 on the device (NaN: not
    fitted yet). Returns counts (bins + 2) int64, the edges it was counted on (which the layout keeps:
    refitted when the data outgrew the old ones) and stats (6) float64 -- mean, std, saturated fraction,
    zero fraction, NaN count, inf count -- as kernels._summarize_one."""
    dev = x.device
    n = x.numel()
    if n == 0:  # as the kernels: a new key still gets fitted edges (those of no values)
        fin = torch.isfinite(x)
        used = torch.where(torch.isnan(edges[0]), fitted_edges(x, fin, tanh, relu), edges)
        return torch.zeros(bins + 2, dtype=torch.int64, device=dev), used, torch.zeros(6, dtype=torch.float64,
                                                                                      device=dev)
    fin = torch.isfinite(x)
    nfin = fin.sum()
    m = nfin.clamp(min=1).double()
    x0 = torch.where(fin, x, 0.0)
    mean = x0.sum(dtype=torch.float64) / m
    d = torch.where(fin, x0.double() - mean, 0.0)
    var = (d * d).sum() / (nfin - 1).clamp(min=1).double()
    nnan = torch.isnan(x).sum()
    sat = (x0.abs() > thr).sum() if tanh else torch.zeros((), dtype=torch.int64, device=dev)
    zero = ((x == 0) & fin).sum()
    stats = torch.stack([torch.where(nfin > 0, mean, 0.0), var.sqrt(), sat / m, zero / m, nnan.double(),
                         (n - nfin - nnan).double()])

    fitted = fitted_edges(x, fin, tanh, relu)
    old = torch.where(torch.isnan(edges[0]), fitted, edges)  # a new key is fitted at its first step
    if not tanh:
        # refit as the kernels do: over 0.5% of the values outside, or all of them in the middle eighth
        idx = buckets(x, old, bins)
        inside = fin & (idx > 0) & (idx <= bins)
        outside = nfin - inside.sum()
        first = torch.where(inside, idx, bins + 1).amin() - 1
        last = torch.where(inside, idx, 0).amax() - 1
        shrunk = (first >= bins * 7 // 16) & (last < bins * 9 // 16) & (outside == 0)
        refit = (nfin > 0) & ((outside > 0.005 * nfin) | shrunk)
        old = torch.where(refit, fitted, old)
    idx = torch.where(fin, buckets(x, old, bins), bins + 2)  # non-finite values go to a slot dropped below
    counts = torch.zeros(bins + 3, dtype=torch.int64, device=dev).index_add_(0, idx, torch.ones_like(idx))
    return counts[:bins + 2], old, stats


def std_pair(after, before):
    """Unbiased std of after and of after - before (the difference in float32, as the kernels take it),
    float64 0-dim tensors; NaN if either holds a NaN/inf."""
    if after.numel() < 2:  # the kernels' std of one value (or none): 0, NaN for a NaN or inf
        return after.double().sum() * 0.0, (after - before).double().sum() * 0.0
    return after.double().std(), (after - before).double().std()


# -----------------------------------------------------------------------------
# a step's results on their way to the host


class Transfer:
    """Device tensors copied to (pinned) host memory without waiting; done() says whether they arrived."""

    def __init__(self, tensors):
        cuda = any(t.is_cuda for t in tensors)
        self.host = []
        for t in tensors:
            h = torch.empty(t.shape, dtype=t.dtype, pin_memory=cuda)
            h.copy_(t, non_blocking=cuda)
            self.host.append(h)
        self.event = None
        if cuda:
            self.event = torch.cuda.Event()
            self.event.record()

    def done(self):
        return self.event is None or self.event.query()

    def wait(self):
        if self.event is not None:
            self.event.synchronize()
        return [h.numpy() for h in self.host]


def summarize(tensors, edges, tanh, relu, thr, bins):
    """A step's tensors on the device (a list, in the layout's order) against the layout's edges (k, 2)
    float32 device tensor, updated in place. Returns device tensors counts (k, bins + 2) int32,
    used edges (k, 2) float32, stats (k, 6) float64: what kernels.summarize fills in."""
    counts, used, stats = [], [], []
    for q, t in enumerate(tensors):
        x = t.detach().reshape(-1).float()
        c, e, s = summarize_tensor(x, edges[q], bool(tanh[q]), bool(relu[q]), float(thr[q]), bins)
        counts.append(c)
        used.append(e)
        stats.append(s)
    used = torch.stack(used) if used else edges.new_zeros((0, 2))
    edges.copy_(used)
    dev = edges.device
    return (torch.stack(counts).int() if counts else torch.zeros((0, bins + 2), dtype=torch.int32, device=dev),
            used, torch.stack(stats) if stats else torch.zeros((0, 6), dtype=torch.float64, device=dev))


def update_stds(after, before):
    """Per parameter (lists of device tensors): std(after), std(after - before), a (w, 2) float64 tensor."""
    rows = [torch.stack(std_pair(a.detach().reshape(-1).float(), b.reshape(-1))) for a, b in zip(after, before)]
    if not rows:
        return torch.zeros((0, 2), dtype=torch.float64)
    return torch.stack(rows)

