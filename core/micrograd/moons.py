"""
micrograd's demo notebook (demo.ipynb): two moons, MLP(2, [16, 16, 1]) and an SVM
max-margin loss, trained 100 steps with plain SGD. With the demo's seeds the first
loss is 0.8958441028683222 at 50% accuracy and the last step reaches 100%.
"""

import random

import numpy as np

from core.micrograd.engine import Value, gc_paused
from core.micrograd.nn import MLP

N_STEPS = 100    # the demo's loop: for k in range(100)
ALPHA = 1e-4     # L2 regularization strength in the demo's loss

# -----------------------------------------------------------------------------
# data


def make_moons(n_samples=100, noise=0.1, seed=1337):
    """ sklearn's make_moons (shuffle=True) after np.random.seed(seed), labels -1/+1.
    sklearn's order: upper half circle, then the lower one shifted by (1, -0.5); shuffle
    the rows; then add gaussian noise, all from the one seeded RandomState (the global one
    in the demo, a private one here: same numbers, no global state touched).
    Returns X (n,2) float64 and y (n,) int in {-1, +1}. """
    n_out = n_samples // 2
    n_in = n_samples - n_out
    rng = np.random.RandomState(seed)
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.concatenate([
        np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
        np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], axis=1),
    ])  # (n,2)
    y = np.concatenate([np.zeros(n_out, dtype=int), np.ones(n_in, dtype=int)])  # (n,)
    order = np.arange(n_samples)
    rng.shuffle(order)
    X, y = X[order], y[order]
    X = X + rng.normal(scale=noise, size=X.shape)
    return X, y * 2 - 1


def demo_model(seed=1337):
    """ MLP(2, [16, 16, 1]) after random.seed(seed), as the demo builds it: 337 parameters.
    The caller's `random` state is put back afterwards. """
    saved = random.getstate()
    random.seed(seed)
    try:
        return MLP(2, [16, 16, 1])
    finally:
        random.setstate(saved)

# -----------------------------------------------------------------------------
# loss and training


def moons_loss(model, X, y, alpha=ALPHA, value=Value):
    """ the demo's loss(): mean SVM max-margin loss + alpha * L2, and the accuracy.
    `value` is the Value class that wraps the inputs (the benchmark passes micrograd's). """
    with gc_paused():
        inputs = [[value(xi) for xi in xrow] for xrow in X.tolist()]  # python floats: faster than np.float64
        scores = [model(x) for x in inputs]
        losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(y.tolist(), scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        reg_loss = alpha * sum((p*p for p in model.parameters()))
        total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y.tolist(), scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def learning_rate(k, steps=N_STEPS):
    """ the demo's schedule: 1.0 at k = 0 down to 0.109 at k = 99 """
    return 1.0 - 0.9*k/steps


def train_step(model, X, y, k):
    """ one iteration of the demo's loop; returns (loss, accuracy) before the update, as it prints them """
    total_loss, acc = moons_loss(model, X, y)
    model.zero_grad()
    total_loss.backward()
    lr = learning_rate(k)
    for p in model.parameters():
        p.data -= lr * p.grad
    return total_loss.data, acc

# -----------------------------------------------------------------------------
# the decision boundary: the same net evaluated on a grid, in numpy


def mlp_scores(model, X):
    """ model(x).data for every row of X (n,2), without building graphs: the weights are
    copied into matrices, so a 10,000-point grid costs milliseconds, not a million Values. """
    h = np.asarray(X, dtype=np.float64)  # (n,nin)
    for layer in model.layers:
        W = np.array([[w.data for w in n.w] for n in layer.neurons])  # (nout,nin)
        b = np.array([n.b.data for n in layer.neurons])  # (nout,)
        h = h @ W.T + b  # (n,nout)
        if layer.neurons[0].nonlin:
            h = np.maximum(h, 0)
    return h[:, 0]  # (n,)


def decision_grid(model, X, h=0.05, margin=1.0):
    """ the demo's meshgrid (min - 1 .. max + 1) of scores: xs (nx,), ys (ny,), Z (ny,nx).
    The boundary is Z = 0; the demo plots Z > 0 as one colour. """
    xs = np.arange(X[:, 0].min() - margin, X[:, 0].max() + margin, h)
    ys = np.arange(X[:, 1].min() - margin, X[:, 1].max() + margin, h)
    xx, yy = np.meshgrid(xs, ys)
    Z = mlp_scores(model, np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
    return xs, ys, Z


def datapoint_score(model, xrow):
    """ one datapoint through the net, as a graph: its score Value after backward(), so the
    graph shows d score / d node everywhere. The inputs are labelled x1, x2. This zeroes
    the parameters' grads first (a training step does the same before its own backward). """
    x = [Value(float(v), label=f"x{i+1}") for i, v in enumerate(xrow)]
    score = model(x)
    score.label = "score"
    model.zero_grad()
    score.backward()
    return score
