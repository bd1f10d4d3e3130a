"""
Turn what a learner types, like "tanh(x1*w1 + x2*w2 + b)" or the lecture's lines

    e = a*b
    d = e + c
    L = d * f

into a graph of Values. The text is parsed with `ast` and walked by hand against a
whitelist; nothing is ever eval'd, exec'd or compiled to code. Allowed: numbers, names
that have a value, + - * / **, unary + and -, exp/log/tanh/relu/sigmoid of one argument,
and statements `name = expr` and `name += expr` (also -= *= /= **=), one per line or
separated by ';'. The last statement is the output. Every refusal, and every arithmetic
failure (log(0), 1/0, overflow), is one exception, ExpressionError, whose message is
written for the learner.
"""

import ast
import math
import numbers
import warnings
from dataclasses import dataclass, field

from core.micrograd.engine import Value, topological_order

MAX_CHARS = 600     # longer text is refused before parsing, so parsing stays quick
MAX_NODES = 400     # ast nodes (operators and contexts count too)
MAX_DEPTH = 40      # nesting of one expression's ast
MAX_EXPONENT = 100  # |n| in x**n: bigger powers only overflow or underflow

FUNCTIONS = {"exp": Value.exp, "log": Value.log, "tanh": Value.tanh,
             "relu": Value.relu, "sigmoid": Value.sigmoid}
BINARY = {ast.Add: Value.__add__, ast.Sub: Value.__sub__, ast.Mult: Value.__mul__,
          ast.Div: Value.__truediv__}
ALLOWED = "numbers, names, + - * / **, " + ", ".join(FUNCTIONS) + ", and lines like e = a*b"

# why a node type is refused, in the learner's words
REFUSED = {
    ast.Attribute: "attributes like a.b are not allowed",
    ast.Subscript: "indexing like a[0] is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "and/or are not allowed",
    ast.IfExp: "if/else is not allowed",
    ast.NamedExpr: ":= is not allowed",
    ast.JoinedStr: "strings are not allowed, only numbers",
    ast.List: "lists are not allowed", ast.Tuple: "tuples are not allowed",
    ast.Dict: "dicts are not allowed", ast.Set: "sets are not allowed",
    ast.Starred: "* unpacking is not allowed",
    ast.Await: "await is not allowed",
}


class ExpressionError(ValueError):
    """ the only error this module raises; str(e) is a short message for the learner """

# -----------------------------------------------------------------------------
# checking


def _number(node):
    """ the float a Constant (or a signed Constant) stands for, else None """
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            x = sign * float(node.value)
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            raise ExpressionError("a number is too large")
        return x
    return None


def _exponent(node):
    n = _number(node)
    if n is None:
        raise ExpressionError("the exponent must be a plain number, e.g. x**2 (a Value cannot be an exponent)")
    if abs(n) > MAX_EXPONENT:
        raise ExpressionError(f"the exponent must be at most {MAX_EXPONENT} in size")
    return n


def _statements(text):
    """ text -> [(target name or None, augmented op or None, expression node)], syntax checked """
    if not isinstance(text, str):
        raise ExpressionError("the expression must be text")
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"the expression is too long (over {MAX_CHARS} characters)")
    if not text.strip():
        raise ExpressionError("the expression is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "1 is 1": we refuse it anyway
            tree = ast.parse(text.strip(), mode="exec")  # builds a syntax tree only; runs nothing
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        where = f" (line {e.lineno})" if getattr(e, "lineno", None) else ""
        raise ExpressionError(f"that is not a valid expression{where}") from None
    out = []
    for st in tree.body:
        if isinstance(st, ast.Expr):
            out.append((None, None, st.value))
        elif isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            out.append((st.targets[0].id, None, st.value))
        elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
            if not (type(st.op) in BINARY or isinstance(st.op, ast.Pow)):
                raise ExpressionError(f"line {st.lineno}: only += -= *= /= **= are allowed")
            out.append((st.target.id, st.op, st.value))
        else:
            raise ExpressionError(f"line {st.lineno}: only expressions and assignments like e = a*b are allowed")
    if not out:
        raise ExpressionError("the expression is empty")
    return out


def _check_expression(expr, defined, free, budget):
    """ walk one expression (iteratively) against the whitelist; record names not yet
    defined in `free`. Returns how many ast nodes it used. """
    stack = [(expr, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > budget:
            raise ExpressionError(f"the expression is too big (over {MAX_NODES} parts)")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"the expression is nested too deeply (over {MAX_DEPTH} levels)")
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                raise ExpressionError("strings and other constants are not allowed, only numbers")
            _number(node)
            children = []
        elif isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                raise ExpressionError(f"{node.id} is a function: call it, e.g. {node.id}(x)")
            if node.id not in defined and node.id not in free:
                free.append(node.id)
            children = []
        elif isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                _exponent(node.right)
                children = [node.left]
            elif type(node.op) in BINARY:
                children = [node.left, node.right]
            else:
                raise ExpressionError("only + - * / ** are allowed as operators")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.UAdd, ast.USub)):
                raise ExpressionError("only unary + and - are allowed")
            children = [node.operand]
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
                raise ExpressionError(f"only these functions can be called: {', '.join(FUNCTIONS)}")
            if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
                raise ExpressionError(f"{node.func.id}() takes exactly one argument")
            children = [node.args[0]]
        else:
            raise ExpressionError(REFUSED.get(type(node), f"'{type(node).__name__}' is not allowed; use {ALLOWED}"))
        stack.extend((c, depth + 1) for c in reversed(children))  # left first: names in reading order
    return count


def _check(statements):
    """ the names that need a value, in order of first use """
    defined, free, used = set(), [], 0
    for target, aug, expr in statements:
        if target is not None and target in FUNCTIONS:
            raise ExpressionError(f"{target} is a function name; pick another name")
        if aug is not None:
            if target not in defined and target not in free:
                free.append(target)  # c += 1 reads c first
            if isinstance(aug, ast.Pow):
                _exponent(expr)
        used += _check_expression(expr, defined, free, MAX_NODES - used)
        if target is not None:
            defined.add(target)
    return free


def free_names(text):
    """ the names in text that need a value (not assigned before they are used), in order """
    return _check(_statements(text))

# -----------------------------------------------------------------------------
# building


def _value_of(name, values):
    x = values[name]
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
        raise ExpressionError(f"'{name}' needs a finite number, not {x!r}"[:120])
    return float(x)


def _build(expr, env, values, leaves):
    """ the Value of one checked expression; post-order without recursion """
    results = []
    stack = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        n = _number(node)
        if n is not None:  # a number, maybe signed: one leaf, labelled at the end
            results.append(Value(n))
        elif isinstance(node, ast.Name):
            if node.id not in env:
                env[node.id] = leaves[node.id] = Value(_value_of(node.id, values), label=node.id)
            results.append(env[node.id])
        elif not ready:
            stack.append((node, True))
            if isinstance(node, ast.BinOp):
                if not isinstance(node.op, ast.Pow):
                    stack.append((node.right, False))
                stack.append((node.left, False))
            elif isinstance(node, ast.UnaryOp):
                stack.append((node.operand, False))
            else:  # ast.Call
                stack.append((node.args[0], False))
        elif isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                results.append(_finite(results.pop() ** _power(node.right)))
            else:
                right, left = results.pop(), results.pop()
                results.append(_finite(BINARY[type(node.op)](left, right)))
        elif isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                results.append(_finite(-results.pop()))
        else:
            results.append(_finite(FUNCTIONS[node.func.id](results.pop())))
    return results.pop()


def _power(node):
    """ the exponent, an int when it is whole: the node then reads **2, as in the lecture """
    n = _number(node)
    return int(n) if n.is_integer() else n


def _finite(out):
    if isinstance(out.data, complex):
        raise ExpressionError("a negative number to a fractional power is not a real number")
    if not math.isfinite(out.data):
        raise ExpressionError(f"the result overflowed ({out.data})")
    return out


def parse_with_leaves(text, values):
    """ like parse_expression, and also {name: leaf Value} for the names given values """
    statements = _statements(text)
    missing = [name for name in _check(statements) if name not in values]
    if missing:
        more = f" (nor {', '.join(missing[1:])})" if missing[1:] else ""
        raise ExpressionError(f"'{missing[0]}' has no value{more}")
    env, leaves, versions = {}, {}, {}
    out = None
    try:
        for target, aug, expr in statements:
            if aug is None:
                out = _build(expr, env, values, leaves)
            elif isinstance(aug, ast.Pow):
                out = _finite(_build(ast.Name(id=target), env, values, leaves) ** _power(expr))
            else:
                left = _build(ast.Name(id=target), env, values, leaves)
                out = _finite(BINARY[type(aug)](left, _build(expr, env, values, leaves)))
            if target is not None:
                if not out.label:  # e = a*b names the node e; y = x leaves x's name alone
                    versions[target] = versions.get(target, 0 if target in leaves else -1) + 1
                    out.label = target + "'" * versions[target]  # c += 1 makes a new node: c, then c', c''
                env[target] = out
    except ExpressionError:
        raise
    except ZeroDivisionError:
        raise ExpressionError("division by zero") from None
    except OverflowError:
        raise ExpressionError("a number overflowed") from None
    except (ValueError, TypeError):  # math domain errors, e.g. log(0)
        raise ExpressionError("a function got a value outside its domain (e.g. log of 0 or less)") from None
    # the rest get names too, in topological order, so the same text always draws the same
    k = 0
    for v in topological_order(out):
        if not v.label:
            if v._prev:
                k += 1
                v.label = f"_{k}"  # a temporary, as a Python programmer would name it
            else:
                v.label = f"{v.data:g}"
    return out, leaves


def parse_expression(text, values):
    """ text like "a*b + c", values like {"a": 2.0, "b": -3.0, "c": 10.0} -> the output Value.
    Named leaves carry their names, assigned nodes the name they were assigned to, numbers
    their value and other ops _1, _2, ... Raises ExpressionError for anything else. """
    return parse_with_leaves(text, values)[0]


def slope_check(text, values, name, h=0.001):
    """ the lecture's numerical check of one gradient: nudge `name` by h and compare
    (L(name + h) - L(name)) / h with the grad backward() gives. """
    root, leaves = parse_with_leaves(text, values)
    try:
        root.backward()
    except (ZeroDivisionError, OverflowError, ValueError):
        raise ExpressionError("backward failed here (a gradient divides by zero or overflows)") from None
    nudged = parse_expression(text, {**values, name: values[name] + h})
    slope = (nudged.data - root.data) / h
    return dict(L=root.data, L_nudged=nudged.data, slope=slope,
                grad=leaves[name].grad if name in leaves else 0.0)

# -----------------------------------------------------------------------------
# the lecture's expressions


@dataclass(frozen=True)
class ExpressionPreset:
    text: str                                      # what the learner would type
    values: dict = field(default_factory=dict)     # the lecture's numbers for the free names
    parameters: tuple = ()                         # leaves drawn as parameters (the rest are inputs)
    note: str = ""                                 # what to look at


def _neuron(activation, note):
    """ the lecture's neuron n = x1*w1 + x2*w2 + b, one line per node as in the lecture, then
    `activation`. b is chosen so n = 0.8813... and o = tanh(n) = 1/sqrt(2): round numbers. """
    return ExpressionPreset("x1w1 = x1*w1\nx2w2 = x2*w2\nx1w1x2w2 = x1w1 + x2w2\nn = x1w1x2w2 + b\n" + activation,
                            dict(x1=2.0, x2=0.0, w1=-3.0, w2=1.0, b=6.8813735870195432),
                            parameters=("w1", "w2", "b"), note=note)


PRESETS = {
    # the first graph of the lecture; L.grad = 1, then dL/dd = f = -2, dL/da = -2 * b = 6, ...
    "L = (a*b + c) * f": ExpressionPreset(
        "e = a*b\nd = e + c\nL = d * f",
        dict(a=2.0, b=-3.0, c=10.0, f=-2.0),
        note="The lecture's first graph: L = -8.0. Backward gives dL/da = 6, dL/db = -4, dL/dc = dL/de = -2, "
             "dL/dd = -2, dL/df = 4."),
    # the neuron with tanh as one op, as the lecture first writes it
    "neuron: o = tanh(x1*w1 + x2*w2 + b)": _neuron(
        "o = tanh(n)",
        note="o = 0.7071. Backward: n.grad = 1 - o² = 0.5, and x1 -1.5, w1 1.0, x2 0.5, w2 0.0 "
             "(w2 gets nothing because x2 = 0)."),
    # the same neuron with tanh spelled out: same output, same grads, more nodes; e is used twice
    "neuron, tanh written with exp": _neuron(
        "e = exp(2*n)\no = (e - 1) / (e + 1)",
        note="tanh(n) = (e^2n - 1) / (e^2n + 1): the same o and the same grads on x1, w1, x2, w2. "
             "e feeds two nodes, so in the step-through its grad arrives in two += steps."),
    # the bug: with `self.grad = out.grad` instead of +=, a.grad would be 1, not 2
    "a + a (why backward uses +=)": ExpressionPreset(
        "b = a + a", dict(a=3.0),
        note="b = 2a, so db/da = 2. The + node hands out.grad to self and to other, which are both a: "
             "with = the second write would overwrite the first and give 1; with += they add up to 2."),
    # the lecture's second example of the same bug: a and b each feed two nodes
    "f = (a*b) * (a+b)": ExpressionPreset(
        "d = a*b\ne = a + b\nf = d * e", dict(a=-2.0, b=3.0),
        note="a and b each feed two nodes, so each is reached twice; their grads are the sums "
             "df/da = b*e + d = -3, df/db = a*e + d = -8."),
    # the example from micrograd's README
    "micrograd README": ExpressionPreset(
        "c = a + b\nd = a*b + b**3\nc += c + 1\nc += 1 + c + (-a)\nd += d*2 + relu(b + a)\n"
        "d += 3*d + relu(b - a)\ne = c - d\nf = e**2\ng = f / 2.0\ng += 10.0 / f",
        dict(a=-4.0, b=2.0),
        note="The README prints g = 24.7041, dg/da = 138.8338, dg/db = 645.5773."),
}
