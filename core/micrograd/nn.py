"""
micrograd's neural-net library on top of the engine: Neuron, Layer, MLP (lecture 1).
"""

import random

from core.micrograd.engine import Value

# -----------------------------------------------------------------------------
# the neural net library


class Module:

    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0

    def parameters(self):
        return []


class Neuron(Module):

    def __init__(self, nin, nonlin=True):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin
        self.name = "neuron"  # MLP renames it L1.N3 etc. for the graph

    def __call__(self, x):
        act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)
        out = act.relu() if self.nonlin else act
        out._tag = (self, None)  # lets the graph fold this call into one node (see call_nodes)
        return out

    def call_nodes(self, out):
        """ the Values one call made, found by walking back from its output: relu, then
        one (+, *) pair per input, ending at b (sum starts from self.b). Mirrors __call__. """
        nodes = [out]
        act = out._prev[0] if self.nonlin else out
        if self.nonlin:
            nodes.append(act)
        for _ in self.w:
            mul = act._prev[1]
            nodes.append(mul)
            act = act._prev[0]
            if act is not self.b:
                nodes.append(act)
        return nodes

    def parameters(self):
        return self.w + [self.b]

    def __repr__(self):
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class _LayerCall:
    """ one call of a Layer; the neurons' outputs of that call share it """
    __slots__ = ("layer",)

    def __init__(self, layer):
        self.layer = layer


class Layer(Module):

    def __init__(self, nin, nout, **kwargs):
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]
        self.name = "layer"

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        call = _LayerCall(self)
        for n, o in zip(self.neurons, out):
            o._tag = (n, call)
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):

    def __init__(self, nin, nouts):
        sz = [nin] + nouts
        self.layers = [Layer(sz[i], sz[i+1], nonlin=i != len(nouts)-1) for i in range(len(nouts))]
        for i, layer in enumerate(self.layers):  # names for the graph: L1, L1.N1, ...
            layer.name = f"L{i+1}"
            for j, n in enumerate(layer.neurons):
                n.name = f"L{i+1}.N{j+1}"

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self):
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
