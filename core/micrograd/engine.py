"""
Lecture 1's scalar autograd engine (the neural net library on top of it is nn.py),
written in micrograd's style: every op computes `out`, defines its `_backward` right
under the forward, and returns `out`. It knows nothing of drawing: graph.py reads the
graph from `_prev` and `_op`, and each rule it shows from the `_backward` source.

What differs from the lecture's engine, all so the dashboard can use it on big graphs:
- nothing recurses (a 1,000,000-node chain works): the topological sort keeps its own
  stack, and the nodes are __slots__ objects so a big graph stays small and fast;
- `_backward(out)` is handed its node instead of closing over it, so a graph holds no
  reference cycle and is freed the moment the loss is dropped (with cycles, CPython's
  cyclic GC spent more time on a 66k-node graph than the forward pass did);
- `_prev` is a tuple, not a set, so the order of a graph is the same on every run and
  the drawing can name nodes by position instead of by id();
- `-`, `/` and unary minus are ops of their own (micrograd builds them from `+`, `*` and
  `**-1`): smaller drawings, and `a / b` rounds exactly like torch's division.
"""

import gc
import math
import numbers
from contextlib import contextmanager

# -----------------------------------------------------------------------------
# the engine


def _noop(out):
    pass


class Value:
    """ stores a single scalar value and its gradient """

    __slots__ = ("data", "grad", "label", "_op", "_prev", "_backward")

    def __init__(self, data, _children=(), _op="", label=""):
        self.data = data
        self.grad = 0
        self.label = label
        self._op = _op
        self._prev = _children  # a tuple: a + a keeps both edges and the order is stable
        self._backward = _noop

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward(out):
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __sub__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data - other.data, (self, other), "-")

        def _backward(out):
            self.grad += out.grad
            other.grad -= out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward(out):
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __truediv__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data / other.data, (self, other), "/")

        def _backward(out):
            self.grad += out.grad / other.data
            other.grad -= out.data / other.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, other):
        if isinstance(other, Value) or not isinstance(other, numbers.Real):
            raise TypeError(f"Value ** {type(other).__name__}: only int/float exponents are supported")
        out = Value(self.data**other, (self,), f"**{other}")

        def _backward(out):
            self.grad += (other * self.data**(other - 1)) * out.grad
        out._backward = _backward
        return out

    def exp(self):
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward(out):
            self.grad += out.data * out.grad
        out._backward = _backward
        return out

    def log(self):
        out = Value(math.log(self.data), (self,), "log")

        def _backward(out):
            self.grad += (1 / self.data) * out.grad
        out._backward = _backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward(out):
            self.grad += (1 - t**2) * out.grad
        out._backward = _backward
        return out

    def relu(self):
        out = Value(0 if self.data < 0 else self.data, (self,), "ReLU")

        def _backward(out):
            self.grad += (out.data > 0) * out.grad
        out._backward = _backward
        return out

    def sigmoid(self):
        x = self.data  # two forms so exp never overflows
        s = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
        out = Value(s, (self,), "sigmoid")

        def _backward(out):
            self.grad += s * (1 - s) * out.grad
        out._backward = _backward
        return out

    def __neg__(self):
        out = Value(-self.data, (self,), "neg")

        def _backward(out):
            self.grad -= out.grad
        out._backward = _backward
        return out

    def backward(self):
        topo = topological_order(self)
        self.grad = 1
        for v in reversed(topo):
            v._backward(v)

    def __radd__(self, other):  # other + self
        return self + other

    def __rsub__(self, other):  # other - self
        return Value(other) - self

    def __rmul__(self, other):  # other * self
        return self * other

    def __rtruediv__(self, other):  # other / self
        return Value(other) / self

    def __rpow__(self, other):  # other ** self
        raise TypeError(f"{type(other).__name__} ** Value: a Value cannot be an exponent, only int/float can")

    def __repr__(self):
        label = f"label={self.label!r}, " if self.label else ""
        return f"Value({label}data={self.data}, grad={self.grad})"


_DONE = object()  # stack marker: the node under it has all its children in topo


def topological_order(root):
    """ every Value under root, children before parents, root last. An iterative DFS,
    so depth is limited only by memory; the same graph always gives the same order,
    which is also the step-through order. """
    topo, visited = [], set()
    stack = [root]
    while stack:
        v = stack.pop()
        if v is _DONE:
            topo.append(stack.pop())
        elif v not in visited:
            visited.add(v)
            stack.append(v)
            stack.append(_DONE)
            for c in reversed(v._prev):  # reversed: the first child is visited first, as in the lecture
                if c not in visited:
                    stack.append(c)
    return topo


@contextmanager
def gc_paused():
    """ A hack, admitted: pause CPython's cyclic GC while a big graph is built. Each
    generation-2 pass rescans every node built so far, which made the 66k-node moons
    forward ~6x slower; the graph has no cycles, so nothing is lost by not looking. """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

