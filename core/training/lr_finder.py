"""
Lecture 3's learning-rate finder, the reading half. The run itself is an ordinary
Run whose TrainConfig has lre_sweep=(-3, 0): step i trains at lr = 10**lre[i]
(presets.lr_sweep). What is left is reading the curve of loss against lre.

The rule, written out: smooth the per-step loss with a moving mean (the raw
minibatch loss is too noisy to pick a minimum from), take the exponent where the
smoothed loss is lowest, and back off by BACK_OFF in the exponent. Why back off:
the loss at step i belongs to weights that were shaped by every rate up to lrs[i],
so by the time the curve bottoms out the rate is already close to where training
turns unstable. The lecture reads its plot the same way and settles on 10**-1.
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

WINDOW = 50      # steps in the moving mean (5% of the lecture's 1,000-step sweep)
BACK_OFF = 0.3   # a factor of two below the bottom (10**0.3 = 2)


def window_mean(values, window, every=1):
    """
    (ends, means): the mean of each run of `window` consecutive values, for the runs ending at
    index window-1, window-1+every, ... -- every=1 is a moving mean, every=window is the lectures'
    lossi.view(-1, window).mean(1). The project's one smoothing: the dashboard's loss curves use
    it too. Non-finite values are left out of their window's mean (one diverged step does not
    blank its neighbours); a window with nothing finite is NaN.
    """
    y = np.asarray(values, dtype=np.float64)
    if len(y) < window:
        return np.zeros(0, np.int64), np.zeros(0)
    runs = sliding_window_view(y, window)[::every]
    ok = np.isfinite(runs)
    with np.errstate(invalid="ignore"):
        means = np.where(ok, runs, 0.0).sum(1) / ok.sum(1)
    return np.arange(window - 1, len(y), every), means


def smooth_loss(loss, window=WINDOW):
    """Centred moving mean of the loss; the ends, where the window does not fit, are NaN."""
    out = np.full(len(loss), np.nan)
    ends, means = window_mean(loss, window)
    out[ends - (window - 1) + window // 2] = means
    return out


def suggest_lr(lre, loss, window=WINDOW, back_off=BACK_OFF):
    """
    (exponent, lr, bottom): the suggested lre and 10**lre, and the lre where the smoothed
    loss is lowest. None when the sweep is too short to judge (fewer than 2 windows of steps).
    Non-finite losses (a sweep that blew up at the top) count as the worst possible.
    """
    lre = np.asarray(lre, dtype=float)
    loss = np.asarray(loss, dtype=float)
    n = min(len(lre), len(loss))
    if n < 2 * window:
        return None
    lre, loss = lre[:n], loss[:n]
    s = smooth_loss(loss, window)
    s[smooth_loss(~np.isfinite(loss), window) > 0] = np.inf  # a window that blew up is the worst there is
    i = int(np.nanargmin(s))
    bottom = float(lre[i])
    exponent = round(max(bottom - back_off, float(lre[0])), 1)
    return exponent, 10**exponent, bottom


def describe(suggestion):
    """The suggestion in a sentence a learner can act on."""
    if suggestion is None:
        return "The sweep is too short to read: it needs at least 100 steps."
    exponent, lr, bottom = suggestion
    return (f"The smoothed loss is lowest at lre = {bottom:.2f} (lr {10**bottom:.3g}); a factor of two "
            f"below that gives lre ≈ {exponent:.1f}, so train at lr ≈ {lr:.2g}." +
            ("" if math.isclose(exponent, -1.0) else " The lecture, on names.txt, settles on 0.1 (lre = −1)."))
