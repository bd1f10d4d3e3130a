"""
A bounded store for one run: per-step scalars (loss, lr), evaluations and
Capture records, thinned as the run grows so that memory stays flat however
long it trains, and readable from another thread at any moment.

Thinning, as TensorBoard keeps its reservoirs: scalar series hold at most
`max_points`; when full, all but the newest `keep_recent` points are merged in
pairs (later step, mean of the raw values both stand for, weighted by count), so old history gets coarser while the recent
tail stays exact. Captures keep at most `max_captures`; when full, every other
old capture is dropped (the first one, step 0, always stays).
"""

import threading
import numpy as np


class Series:
    """(step, value) pairs with pairwise-mean thinning of the old part."""

    def __init__(self, max_points=20_000, keep_recent=2_000):
        assert max_points > 2 * keep_recent
        self.max_points = max_points
        self.keep_recent = keep_recent
        self.steps = np.zeros(max_points, dtype=np.int64)
        self.values = np.zeros(max_points, dtype=np.float64)
        self.counts = np.zeros(max_points, dtype=np.int64)  # raw points each entry stands for
        self.n = 0
        self.stride = 1  # how many raw steps the oldest points stand for (grows as we thin)

    def append(self, step, value):
        if self.n == self.max_points:
            self._thin()
        self.steps[self.n] = step
        self.values[self.n] = value
        self.counts[self.n] = 1
        self.n += 1

    def _thin(self):
        old = self.n - self.keep_recent
        old -= old % 2
        s = self.steps[:old].reshape(-1, 2)[:, 1]
        c = self.counts[:old].reshape(-1, 2)
        v = (self.values[:old].reshape(-1, 2) * c).sum(1) / c.sum(1)
        h = old // 2
        self.steps[:h], self.values[:h], self.counts[:h] = s, v, c.sum(1)
        for a in (self.steps, self.values, self.counts):
            a[h:h + self.n - old] = a[old:self.n]
        self.n = h + self.n - old
        self.stride *= 2

    def arrays(self):
        return self.steps[:self.n].copy(), self.values[:self.n].copy()

    def nbytes(self):
        return self.steps.nbytes + self.values.nbytes + self.counts.nbytes


class RunStore:

    def __init__(self, max_points=20_000, keep_recent=2_000, max_captures=1_000, keep_recent_captures=100):
        self._lock = threading.Lock()
        self.loss = Series(max_points, keep_recent)
        self.lr = Series(max_points, keep_recent)
        self.evals = []        # (step, train_loss, val_loss): few, never thinned
        self.captures = []     # Capture records, oldest first
        self.max_captures = max_captures
        self.keep_recent_captures = keep_recent_captures
        self.meta = {}         # model, preset, config, params, state, ...
        self.version = 0       # bumps on every change: a reader can skip unchanged snapshots
        self.last_step = -1

    # --- writer side (the training loop) -----------------------------------------

    def add_step(self, step, loss, lr, capture=None):
        """One training step, and its Capture record if it has one, in one atomic change."""
        with self._lock:
            self.loss.append(step, loss)
            self.lr.append(step, lr)
            self.last_step = step
            if capture is not None:
                self._add_capture(capture)
            self.version += 1

    def add_eval(self, step, train_loss, val_loss):
        with self._lock:
            self.evals.append((step, train_loss, val_loss))
            self.version += 1

    def add_capture(self, capture):
        with self._lock:
            self._add_capture(capture)
            self.version += 1

    def _add_capture(self, capture):
        self.captures.append(capture)
        if len(self.captures) > self.max_captures:
            old = len(self.captures) - self.keep_recent_captures
            self.captures = self.captures[:old:2] + self.captures[old:]

    def set_meta(self, **kw):
        with self._lock:
            self.meta.update(kw)
            self.version += 1

    # --- reader side ------------------------------------------------------------

    def snapshot(self):
        """A consistent copy: arrays copied, captures (immutable) shared. Safe from any thread."""
        with self._lock:
            steps, loss = self.loss.arrays()
            _, lr = self.lr.arrays()
            return dict(version=self.version, last_step=self.last_step, steps=steps, loss=loss, lr=lr,
                        evals=list(self.evals), captures=list(self.captures), meta=dict(self.meta))

    def latest_capture(self):
        with self._lock:
            return self.captures[-1] if self.captures else None

    def nbytes(self):
        """Approximate memory held (the arrays and capture records)."""
        with self._lock:
            return (self.loss.nbytes() + self.lr.nbytes() + 64 * len(self.evals)
                    + sum(c.nbytes() for c in self.captures))
