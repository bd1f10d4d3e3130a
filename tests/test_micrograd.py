"""
The lecture 1 engine against its oracle, PyTorch in double precision (as micrograd's own
test does), on the lecture's examples and on a few hundred random expressions; then the
neural net library and the moons demo against the numbers the demo printed.
"""

import gc
import math
import random
import time

import micrograd.engine
import numpy as np
import pytest
import torch

from core.micrograd.engine import Value, topological_order
from core.micrograd.moons import demo_model, make_moons, mlp_scores, moons_loss, train_step
from core.micrograd.nn import MLP, Layer, Neuron


def close(a, b, rel=1e-9, abs_=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def tensor(x):
    return torch.tensor(float(x), dtype=torch.double, requires_grad=True)

# -----------------------------------------------------------------------------
# the lecture's examples


def test_lecture_first_graph_L_is_minus_8_with_the_lectures_grads():
    a, b, c, f = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c"), Value(-2.0, label="f")
    e = a*b
    d = e + c
    L = d * f
    L.backward()
    assert L.data == -8.0
    assert (a.grad, b.grad, c.grad, e.grad, d.grad, f.grad) == (6.0, -4.0, -2.0, -2.0, -2.0, 4.0)


def _neuron(lib, tanh_via_exp=False):
    x1, x2, w1, w2, b = (lib(v) for v in (2.0, 0.0, -3.0, 1.0, 6.8813735870195432))
    n = x1*w1 + x2*w2 + b
    if tanh_via_exp:
        e = (2*n).exp()
        o = (e - 1) / (e + 1)
    else:
        o = n.tanh()
    o.backward()
    return n, o, (x1, w1, x2, w2, b)


@pytest.mark.parametrize("tanh_via_exp", [False, True])
def test_lecture_neuron_matches_torch_and_the_lectures_numbers(tanh_via_exp):
    n, o, leaves = _neuron(Value, tanh_via_exp)
    tn, to, tleaves = _neuron(tensor, tanh_via_exp)
    assert close(n.data, 0.8813735870195432) and close(o.data, 0.7071067811865476)
    assert close(o.data, to.item())
    for v, tv in zip(leaves, tleaves):
        assert close(v.grad, tv.grad.item())
    x1, w1, x2, w2, b = leaves
    assert [round(v.grad, 10) for v in (x1, w1, x2, w2)] == [-1.5, 1.0, 0.5, 0.0]


def test_micrograd_readme_example_matches_torch_and_the_readme():
    def readme(lib):
        a, b = lib(-4.0), lib(2.0)
        c = a + b
        d = a * b + b**3
        c = c + c + 1
        c = c + 1 + c + (-a)
        d = d + d * 2 + (b + a).relu()
        d = d + 3 * d + (b - a).relu()
        e = c - d
        f = e**2
        g = f / 2.0
        g = g + 10.0 / f
        g.backward()
        return g, a, b
    g, a, b = readme(Value)
    tg, ta, tb = readme(tensor)
    assert f"{g.data:.4f} {a.grad:.4f} {b.grad:.4f}" == "24.7041 138.8338 645.5773"
    assert close(g.data, tg.item()) and close(a.grad, ta.grad.item()) and close(b.grad, tb.grad.item())


def test_a_plus_a_accumulates_gradient_to_2():
    a = Value(3.0)
    b = a + a
    b.backward()
    assert b.data == 6.0 and a.grad == 2


def test_a_node_reached_twice_gets_the_sum_of_both_paths():
    a, b = Value(-2.0), Value(3.0)
    f = (a*b) * (a + b)
    f.backward()
    assert (a.grad, b.grad) == (-3.0, -8.0)


def test_reflected_operators_match_torch():
    def expr(lib):
        x = lib(0.7)
        y = 2 + x
        y = 3 - y * x
        y = 1.5 * y
        y = 2 / (y + 5)
        y = y + (-x) - 4 * x**-2
        y.backward()
        return y, x
    y, x = expr(Value)
    ty, tx = expr(tensor)
    assert close(y.data, ty.item()) and close(x.grad, tx.grad.item())


def test_pow_with_a_value_exponent_is_refused():
    with pytest.raises(TypeError):
        Value(2.0) ** Value(3.0)
    with pytest.raises(TypeError):
        2 ** Value(3.0)


def test_sigmoid_of_large_inputs_does_not_overflow():
    for x, expected in ((-1000.0, 0.0), (1000.0, 1.0)):
        a = Value(x)
        s = a.sigmoid()
        s.backward()
        assert s.data == expected and a.grad == 0.0

# -----------------------------------------------------------------------------
# random expressions against torch


UNARY = ["exp", "log", "tanh", "relu", "sigmoid", "neg", "pow"]
BINARY = ["+", "-", "*", "/", "r+", "r-", "r*", "r/"]


def random_spec(rng, depth):
    """ a random expression tree as nested tuples; domains kept safe (log and / of positives) """
    if depth == 0 or rng.random() < 0.2:
        return ("var", rng.randrange(3)) if rng.random() < 0.8 else ("const", rng.uniform(-2, 2))
    if rng.random() < 0.45:
        op = rng.choice(UNARY)
        arg = random_spec(rng, depth - 1)
        if op == "pow":
            return (op, arg, rng.choice([2, 3, -1, 0.5, -1.5, 1.7]))
        return (op, arg)
    return (rng.choice(BINARY), random_spec(rng, depth - 1), random_spec(rng, depth - 1), rng.uniform(0.5, 2))


def evaluate(spec, xs):
    """ the same spec built from engine Values or torch tensors: both have the same methods """
    kind = spec[0]
    if kind == "var":
        return xs[spec[1]]
    if kind == "const":
        return spec[1]
    a = evaluate(spec[1], xs)
    if isinstance(a, float):
        a = xs[0] * a  # keep every node a Value/tensor
    positive = a * a + 0.1  # log, / and fractional powers need a positive argument
    if kind == "exp":
        return a.tanh().exp()  # bounded, so deep trees do not overflow
    if kind == "log":
        return positive.log()
    if kind in ("tanh", "relu", "sigmoid"):
        return getattr(a, kind)()
    if kind == "neg":
        return -a
    if kind == "pow":
        return (positive if spec[2] != int(spec[2]) or spec[2] < 0 else a) ** spec[2]
    b, k = evaluate(spec[2], xs), spec[3]
    if isinstance(b, float):
        b = xs[1] * b
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / (b * b + 0.5),
            "r+": lambda: k + a, "r-": lambda: k - a, "r*": lambda: k * a, "r/": lambda: k / (a * a + 0.5)}[kind]()


def test_random_expressions_match_torch_in_double():
    rng = random.Random(1337)
    checked = 0
    for _ in range(300):
        spec = ("+", random_spec(rng, depth=5), ("var", 2), 1.0)  # the root always a Value
        data = [rng.uniform(-2, 2) for _ in range(3)]
        xs = [Value(d) for d in data]
        out = evaluate(spec, xs)
        txs = [tensor(d) for d in data]
        tout = evaluate(spec, txs)
        if not math.isfinite(out.data) or abs(out.data) > 1e8:
            continue
        out.backward()
        tout.backward()
        assert close(out.data, tout.item()), spec
        for x, tx in zip(xs, txs):
            g = 0.0 if tx.grad is None else tx.grad.item()
            assert close(x.grad, g, rel=1e-8, abs_=1e-10), (spec, x.grad, g)
        checked += 1
    assert checked > 250


def test_every_op_appears_in_the_random_expressions():
    rng = random.Random(1337)
    seen = set()
    for _ in range(300):
        stack = [random_spec(rng, depth=5)]
        while stack:
            s = stack.pop()
            seen.add(s[0])
            stack.extend(c for c in s[1:] if isinstance(c, tuple))
    assert set(UNARY) | set(BINARY) <= seen

# -----------------------------------------------------------------------------
# big graphs


def test_a_million_node_chain_runs_forward_and_backward_without_recursion():
    x = Value(0.5)
    v = x
    for _ in range(1_000_000):
        v = v.relu()
    v.backward()
    assert v.data == 0.5 and x.grad == 1
    del v  # freeing a million-deep chain must not overflow the C stack either


def test_topological_order_is_the_same_every_time_and_ends_at_the_root():
    def build():
        a, b = Value(1.0, label="a"), Value(2.0, label="b")
        c = a * b
        return (c + a).tanh() * c
    orders = [[v.label or v._op for v in topological_order(build())] for _ in range(3)]
    assert orders[0] == orders[1] == orders[2]
    assert orders[0][-1] == "*"


def test_a_dropped_graph_is_freed_without_the_cyclic_gc():
    # _backward takes its node as an argument, so no graph holds a reference cycle; the
    # PyPI micrograd's closures refer to their own node, so its graphs are all cycles
    def garbage_cycles(value_class):
        gc.collect()
        gc.disable()
        try:
            a = value_class(1.0)
            out = ((a * 2 + 1).relu() * 3 + a) ** 2
            out.backward()
            del a, out
            return gc.collect()
        finally:
            gc.enable()
    assert garbage_cycles(Value) == 0
    assert garbage_cycles(micrograd.engine.Value) > 0

# -----------------------------------------------------------------------------
# the neural net library


def test_mlp_forward_and_backward_match_torch():
    random.seed(0)
    model = MLP(3, [4, 4, 1])
    x = [0.5, -1.2, 2.0]
    out = model([Value(v) for v in x])
    out.backward()
    W = [torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.double, requires_grad=True)
         for layer in model.layers]
    B = [torch.tensor([n.b.data for n in layer.neurons], dtype=torch.double, requires_grad=True)
         for layer in model.layers]
    h = torch.tensor(x, dtype=torch.double)
    for i, (w, b) in enumerate(zip(W, B)):
        h = w @ h + b
        if i < 2:
            h = h.relu()
    h.sum().backward()
    assert close(out.data, h.item())
    for layer, w, b in zip(model.layers, W, B):
        for j, n in enumerate(layer.neurons):
            assert all(close(wi.grad, w.grad[j, i].item()) for i, wi in enumerate(n.w))
            assert close(n.b.grad, b.grad[j].item())


def test_parameters_zero_grad_and_counts():
    random.seed(1337)
    model = MLP(2, [16, 16, 1])
    assert len(model.parameters()) == 337
    assert len(Layer(3, 4).parameters()) == 16 and len(Neuron(5).parameters()) == 6
    model([Value(1.0), Value(-1.0)]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 for p in model.parameters())


def test_one_datapoint_through_the_demo_mlp_is_979_nodes():
    model = demo_model()
    assert len(topological_order(model([Value(0.3), Value(-0.2)]))) == 979

# -----------------------------------------------------------------------------
# the moons demo


def test_make_moons_is_two_balanced_half_circles_with_labels_plus_minus_one():
    X, y = make_moons()
    assert X.shape == (100, 2) and y.shape == (100,)
    assert set(y.tolist()) == {-1, 1} and (y == 1).sum() == 50
    assert np.array_equal(make_moons()[0], X)                     # seeded: the same every time
    assert not np.array_equal(make_moons(seed=1)[0], X)


def test_demo_first_loss_and_accuracy_are_the_demos_numbers():
    X, y = make_moons()
    model = demo_model()
    loss, acc = moons_loss(model, X, y)
    assert loss.data == 0.8958441028683222 and acc == 0.5
    n = len(topological_order(loss))
    assert 60_000 < n < 70_000, n


def test_numpy_scores_equal_the_engines_scores():
    X, y = make_moons()
    model = demo_model()
    ours = np.array([model([Value(a), Value(b)]).data for a, b in X.tolist()])
    assert np.allclose(mlp_scores(model, X), ours, rtol=1e-12, atol=1e-12)


@pytest.mark.long
def test_demo_training_reaches_100_percent_in_100_steps():
    X, y = make_moons()
    model = demo_model()
    t0 = time.time()
    history = [train_step(model, X, y, k) for k in range(100)]
    assert history[0] == (0.8958441028683222, 0.5)
    assert history[-1][1] == 1.0 and history[-1][0] < 0.012
    assert (np.sign(mlp_scores(model, X)) == y).all()  # the final model classifies every point
    print(f"100 steps in {time.time() - t0:.1f} s")
