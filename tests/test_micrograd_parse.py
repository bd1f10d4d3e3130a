"""
The expression parser: the lecture's expressions come out right, and everything outside
the whitelist is refused with one exception type, quickly, without running anything.
"""

import builtins
import math
import time

import pytest

from core.micrograd.engine import topological_order
from core.micrograd.parse import (
    MAX_CHARS,
    MAX_DEPTH,
    PRESETS,
    ExpressionError,
    free_names,
    parse_expression,
    parse_with_leaves,
    slope_check,
)


def labels(root):
    return [v.label for v in topological_order(root)]

# -----------------------------------------------------------------------------
# what is allowed


def test_presets_give_the_lectures_numbers():
    root, leaves = parse_with_leaves(PRESETS["L = (a*b + c) * f"].text, PRESETS["L = (a*b + c) * f"].values)
    root.backward()
    assert root.data == -8.0 and sorted(labels(root)) == sorted("abcdefL")
    assert {k: v.grad for k, v in leaves.items()} == dict(a=6.0, b=-4.0, c=-2.0, f=4.0)
    for name in ("neuron: o = tanh(x1*w1 + x2*w2 + b)", "neuron, tanh written with exp"):
        p = PRESETS[name]
        root, leaves = parse_with_leaves(p.text, p.values)
        root.backward()
        assert math.isclose(root.data, 0.7071067811865476, rel_tol=1e-12)
        assert [round(leaves[k].grad, 10) for k in ("x1", "w1", "x2", "w2")] == [-1.5, 1.0, 0.5, 0.0]
    root, leaves = parse_with_leaves(PRESETS["a + a (why backward uses +=)"].text, dict(a=3.0))
    root.backward()
    assert root.data == 6.0 and leaves["a"].grad == 2
    p = PRESETS["micrograd README"]
    root, leaves = parse_with_leaves(p.text, p.values)
    root.backward()
    assert f"{root.data:.4f} {leaves['a'].grad:.4f} {leaves['b'].grad:.4f}" == "24.7041 138.8338 645.5773"


def test_every_preset_names_exactly_the_values_it_needs():
    for p in PRESETS.values():
        assert sorted(free_names(p.text)) == sorted(p.values)
        assert set(p.parameters) <= set(p.values)


def test_one_line_expression_with_functions_powers_and_unary_minus():
    root = parse_expression("-tanh(x)**2 + exp(-x) / sigmoid(y) - log(relu(y) + 1)", dict(x=0.5, y=2.0))
    expected = -math.tanh(0.5)**2 + math.exp(-0.5) / (1 / (1 + math.exp(-2))) - math.log(2 + 1)
    assert math.isclose(root.data, expected, rel_tol=1e-12)


def test_free_names_in_order_of_first_use_skipping_assigned_names():
    assert free_names("e = a*b\nd = e + c\nL = d * f") == ["a", "b", "c", "f"]
    assert free_names("c += 1") == ["c"]  # c is read before it is written
    assert free_names("x = 2; y = x * k") == ["k"]


def test_labels_assigned_names_versions_and_numbers():
    root = parse_expression("c = a + 1\nc += c * 2\nc", dict(a=1.0))
    assert labels(root) == ["a", "1", "c", "2", "_1", "c'"]
    assert labels(parse_expression("a*b + c", dict(a=1, b=2, c=3))) == ["a", "b", "_1", "c", "_2"]
    assert labels(parse_expression("y = x\ny * 3", dict(x=2.0)))[0] == "x"  # y = x is another name for x


def test_same_text_gives_the_same_graph_every_time():
    p = PRESETS["micrograd README"]
    assert labels(parse_expression(p.text, p.values)) == labels(parse_expression(p.text, p.values))


def test_x_times_x_is_one_leaf_with_both_gradients():
    root, leaves = parse_with_leaves("x*x", dict(x=3.0))
    root.backward()
    assert leaves["x"].grad == 6.0


def test_slope_check_agrees_with_backward():
    p = PRESETS["neuron: o = tanh(x1*w1 + x2*w2 + b)"]
    for name in p.values:
        s = slope_check(p.text, p.values, name, h=1e-6)
        assert math.isclose(s["slope"], s["grad"], abs_tol=1e-5), (name, s)
    s = slope_check("a*b", dict(a=2.0, b=-3.0), "a", h=0.001)
    assert s["L"] == -6.0 and math.isclose(s["L_nudged"], -6.003) and s["grad"] == -3.0

# -----------------------------------------------------------------------------
# what is refused


UNSAFE = {
    "attribute": "a.__class__",
    "attribute call": "a.__class__.__bases__[0].__subclasses__()",
    "subscript": "a[0]",
    "lambda": "(lambda: a)()",
    "list comprehension": "[a for a in b]",
    "generator": "sum(a for a in b)",
    "dict comprehension": "{a: a for a in b}",
    "string": "'rm -rf /'",
    "f-string": "f'{a}'",
    "bytes": "b'x'",
    "import call": "__import__('os').system('touch /tmp/zth-mg-pwned')",
    "eval call": "eval('1')",
    "unknown name": "a + zzz",
    "builtins name": "__builtins__",
    "compare": "a < b",
    "boolop": "a and b",
    "ifexp": "a if b else c",
    "walrus": "(z := 1)",
    "list": "[a, b]",
    "tuple": "a, b",
    "ellipsis": "...",
    "complex": "1j * a",
    "bool": "True + a",
    "none": "None",
    "matmul": "a @ b",
    "floordiv": "a // b",
    "modulo": "a % b",
    "bitwise": "a ^ b",
    "not": "not a",
    "invert": "~a",
    "unknown function": "abs(a)",
    "print": "print(a)",
    "two arguments": "exp(a, b)",
    "keyword argument": "exp(x=a)",
    "starred": "exp(*a)",
    "function as value": "exp + 1",
    "value exponent": "a ** b",
    "nested exponent": "a ** 2 ** 3",
    "huge exponent": "a ** 1000",
    "huge augmented exponent": "a **= 101",
    "huge number": "a * 1e999",
    "import statement": "import os",
    "def": "def f(): pass",
    "for loop": "for i in a: pass",
    "while loop": "while True: pass",
    "del": "del a",
    "chained assignment": "x = y = a",
    "tuple unpacking": "x, y = a, b",
    "attribute assignment": "a.x = 1",
    "assign to a function name": "exp = a",
    "augmented matmul": "a @= b",
    "annotated": "x: int = 1",
    "with": "with a: pass",
    "syntax error": "a +* b",
    "null byte": "a\x00",
    "empty": "   ",
    "too long": "a + " * (MAX_CHARS // 4) + "a",
    "too many parts": "+".join(["a"] * 290),
    "nested sums": "(" * 60 + "a" + " + 1)" * 60,
    "parentheses past python's limit": "(" * 250 + "a" + ")" * 250,
    "nested too deeply": "-" * (MAX_DEPTH + 5) + "a",
    "nested calls": "tanh(" * 50 + "a" + ")" * 50,
}


@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_unsafe_or_unknown_input_is_refused_quickly_with_a_message(name):
    text = UNSAFE[name]
    t0 = time.perf_counter()
    with pytest.raises(ExpressionError) as e:
        parse_expression(text, dict(a=1.0, b=2.0, c=3.0))
    assert time.perf_counter() - t0 < 0.05
    assert 5 < len(str(e.value)) < 200 and "\n" not in str(e.value)  # one short line for the learner


def test_refusals_explain_what_is_wrong():
    def msg(text, values=None):
        with pytest.raises(ExpressionError) as e:
            parse_expression(text, values if values is not None else dict(a=1.0, b=2.0))
        return str(e.value)
    assert "zzz" in msg("a + zzz") and "has no value" in msg("a + zzz")
    assert "attributes" in msg("a.b")
    assert "exp, log, tanh, relu, sigmoid" in msg("abs(a)")
    assert "exponent" in msg("a ** b")
    assert "too long" in msg(UNSAFE["too long"])
    assert "nested too deeply" in msg(UNSAFE["nested too deeply"])
    assert "line 2" in msg("x = a\ny = ")


def test_nothing_is_executed(monkeypatch, tmp_path):
    calls = []

    def trap(*args, **kw):
        calls.append(args)
        raise AssertionError("eval/exec must never run")
    monkeypatch.setattr(builtins, "eval", trap)
    monkeypatch.setattr(builtins, "exec", trap)
    marker = tmp_path / "pwned"
    for text in [f"__import__('os').system('touch {marker}')", f"open('{marker}', 'w')",
                 "a.__class__.__init__.__globals__"] + list(UNSAFE.values()):
        with pytest.raises(ExpressionError):
            parse_expression(text, dict(a=1.0, b=2.0, c=3.0))
    for p in PRESETS.values():
        parse_expression(p.text, p.values)
    assert not calls and not marker.exists()


@pytest.mark.parametrize("text, values", [
    ("log(a)", dict(a=0.0)),
    ("log(a)", dict(a=-1.0)),
    ("a / b", dict(a=1.0, b=0.0)),
    ("exp(a)", dict(a=1000.0)),
    ("a ** 0.5", dict(a=-8.0)),
    ("a ** -1", dict(a=0.0)),
    ("a * 1e308 * 10", dict(a=1.0)),
    ("a ** 100", dict(a=1e10)),
])
def test_arithmetic_failures_are_expression_errors(text, values):
    with pytest.raises(ExpressionError):
        parse_expression(text, values)


@pytest.mark.parametrize("bad", ["two", None, float("nan"), float("inf"), True, [1.0]])
def test_values_must_be_finite_numbers(bad):
    with pytest.raises(ExpressionError):
        parse_expression("a + 1", dict(a=bad))


def test_not_text_is_refused():
    with pytest.raises(ExpressionError):
        parse_expression(b"a + 1", dict(a=1.0))
