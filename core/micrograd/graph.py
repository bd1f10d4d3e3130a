"""
Graph records for lecture 1's pictures, in roles as the house style asks: capture
(build_graph: a Value graph -> plain records), processing (collapse: fold an MLP's Values
into neuron and layer nodes under a node budget; step_backward: backward() one node at a
time, recording what each step changed) and drawing (to_dot, to_svg: only draw).

Node names are positions, not id(): value nodes are v0, v1, ... in topological order,
folded nodes are named after the neuron or layer by its place in the MLP (L2.N3, L2, with
#k when it is called more than once). Building the same expression twice gives the same
names, so st.graphviz_chart does not re-lay-out the graph on every rerun.
"""

import ast
import functools
import inspect
import re
import shutil
import textwrap
from dataclasses import dataclass, field

import graphviz

from core.micrograd.engine import topological_order

ROLE_COLORS = {"input": "lightblue", "parameter": "khaki", "output": "salmon", "intermediate": "white"}
GROUP_COLOR = "lavender"
HIGHLIGHT = "red"      # the node whose _backward runs in this step
TOUCHED = "blue"       # the nodes whose grad it just changed

# -----------------------------------------------------------------------------
# capture


@dataclass
class GraphRecords:
    # one dict per node: name, label, data, grad, op, role, kind ("value", "neuron" or "layer"),
    # neuron/layer (the call a value belongs to, or None), owner (a parameter's neuron), size
    nodes: list = field(default_factory=list)
    edges: list = field(default_factory=list)  # (child name, parent name): data flows child -> parent
    total: int = 0   # values in the whole graph
    folded: int = 0  # values drawn as part of a neuron or layer node
    hidden: int = 0  # values not drawn at all: parameters inside a closed neuron, or cut by the budget


def mlp_names(model):
    """ the names an MLP's parts get in the pictures, read off its structure: layer i is Li,
    its neuron j is Li.Nj, counting from 1. Returns ({layer: name}, {neuron: name}). """
    layers, neurons = {}, {}
    for i, layer in enumerate(model.layers, 1):
        layers[layer] = f"L{i}"
        for j, n in enumerate(layer.neurons, 1):
            neurons[n] = f"L{i}.N{j}"
    return layers, neurons


def _neuron_call(v, weight_of):
    """ (neuron, the Values its call made, its inputs x) if v is the output of a Neuron call,
    else None. Neuron.__call__ read backwards: relu (when nonlin) of b + w0*x0 + w1*x1 + ...,
    a chain of (+, *) pairs that ends at b. """
    act = v._prev[0] if v._op == "ReLU" else v
    if act._op != "+" or act._prev[1]._op != "*":
        return None
    neuron = weight_of.get(act._prev[1]._prev[0])
    if neuron is None or neuron.nonlin != (act is not v):
        return None  # no neuron's sum, or a ReLU neuron's sum seen without its relu
    nodes, xs = ([v] if act is v else [v, act]), []
    for w in reversed(neuron.w):
        if act._op != "+" or act._prev[1]._op != "*" or act._prev[1]._prev[0] is not w:
            return None  # part of a sum, not a whole call
        mul = act._prev[1]
        nodes.append(mul)
        xs.append(mul._prev[1])
        act = act._prev[0]
        if act is not neuron.b:
            nodes.append(act)
    return (neuron, nodes, xs[::-1]) if act is neuron.b else None


def _input_key(x):
    # a float input is wrapped in a new leaf by each neuron's w*x: equal data is the same input
    return x if x._prev or x.label else x.data


def _numbered(calls):
    """ {call: (module, name)} in topological order -> {call: name}, adding #k (k in that order)
    when a module is called more than once """
    counts, seen, names = {}, {}, {}
    for module, _ in calls.values():
        counts[module] = counts.get(module, 0) + 1
    for call, (module, name) in calls.items():
        seen[module] = seen.get(module, 0) + 1
        names[call] = name if counts[module] == 1 else f"{name}#{seen[module]}"
    return names


def build_graph(root, parameters=None, model=None):
    """ records for every Value under root. Leaves in `parameters` are parameters, the rest
    inputs; with parameters=None, the model's parameters count. With an MLP as `model`, each
    value a neuron's call made is marked with that neuron call and its layer call, so collapse
    can fold them. """
    topo = topological_order(root)
    index = {v: i for i, v in enumerate(topo)}
    layer_names, neuron_names = mlp_names(model) if model is not None else ({}, {})
    layer_of_neuron = {n: layer for layer in layer_names for n in layer.neurons}
    weight_of = {w: n for n in neuron_names for w in n.w}
    owner = {p: neuron_names[n] for n in neuron_names for p in n.parameters()}  # parameter -> neuron name
    params = set(owner) if parameters is None else set(parameters)

    # a layer call is its neurons' calls on the same inputs; when a layer runs twice on the
    # same inputs, the k-th call of each neuron belongs to its k-th call
    neuron_calls, layer_calls, members, calls_so_far = {}, {}, {}, {}
    for v in topo:
        call = _neuron_call(v, weight_of)
        if call is None:
            continue
        neuron, nodes, xs = call
        layer, inputs = layer_of_neuron[neuron], tuple(_input_key(x) for x in xs)
        k = calls_so_far[neuron, inputs] = calls_so_far.get((neuron, inputs), 0) + 1
        neuron_calls[v] = (neuron, neuron_names[neuron])
        layer_calls.setdefault((layer, inputs, k), (layer, layer_names[layer]))
        members[v] = (nodes, (layer, inputs, k))
    neuron_call_names, layer_call_names = _numbered(neuron_calls), _numbered(layer_calls)
    neuron_of, layer_of = {}, {}
    for out, (nodes, layer_call) in members.items():
        for v in nodes:
            neuron_of[v] = neuron_call_names[out]
            layer_of[v] = layer_call_names[layer_call]

    records = GraphRecords()
    for i, v in enumerate(topo):
        if v is root:
            role = "output"
        elif not v._prev:
            role = "parameter" if v in params else "input"
        else:
            role = "intermediate"
        records.nodes.append(dict(
            name=f"v{i}", label=v.label, data=v.data, grad=v.grad, op=v._op, role=role, kind="value",
            neuron=neuron_of.get(v), layer=layer_of.get(v), owner=owner.get(v), size=1))
        for c in v._prev:  # a + a keeps two arrows from a: it is why backward must use +=
            records.edges.append((f"v{index[c]}", f"v{i}"))
    records.total = len(records.nodes)
    return records

# -----------------------------------------------------------------------------
# processing


LEVELS = ("values", "neurons", "layers")


def _fold(records, level, expand):
    """ map each value node's name to the name of the node that shows it (None: hidden) """
    expanded_neurons = {expand} if expand is not None and any(n["neuron"] == expand for n in records.nodes) else set()
    expanded_owners = {name.split("#")[0] for name in expanded_neurons}  # L2.N3#4 -> L2.N3
    show = {}
    for n in records.nodes:
        if level == "values" or n["neuron"] in expanded_neurons:
            show[n["name"]] = n["name"]
        elif n["owner"] is not None:  # a parameter lives inside its neuron unless that neuron is open
            show[n["name"]] = n["name"] if n["owner"] in expanded_owners else None
        elif n["neuron"] is None:
            show[n["name"]] = n["name"]
        elif level == "neurons" or n["layer"] == expand:
            show[n["name"]] = n["neuron"]
        else:
            show[n["name"]] = n["layer"]
    return show


def collapse(records, budget=300, expand=None, level=None):
    """ a copy of records with at most `budget` nodes. With level=None the finest level that
    fits is used: every value, then one node per neuron call, then one per layer call. `expand`
    names one neuron call (e.g. "L2.N3") or layer call ("L2") to keep open at any level. If even
    layers do not fit, the `budget` nodes closest to the output are kept. """
    if expand is not None and not any(expand in (n["neuron"], n["layer"]) for n in records.nodes):
        raise ValueError(f"no neuron or layer called {expand!r} in this graph")
    for lvl in ([level] if level else LEVELS):
        show = _fold(records, lvl, expand)
        if len({s for s in show.values() if s is not None}) <= budget:
            break

    out = GraphRecords()
    groups = {}  # folded node name -> its record
    layer_neurons = {}  # folded node name -> the neuron calls inside it
    for n in records.nodes:
        box = show[n["name"]]
        if box == n["name"]:
            out.nodes.append(n)
        elif box is not None:
            if box not in groups:
                kind = "neuron" if box == n["neuron"] else "layer"
                groups[box] = dict(name=box, label=box, data=None, grad=None, op="", role="intermediate", kind=kind,
                                   neuron=n["neuron"] if kind == "neuron" else None, layer=n["layer"], owner=None,
                                   size=0)
                out.nodes.append(groups[box])
            group = groups[box]
            group["size"] += 1
            layer_neurons.setdefault(box, set()).add(n["neuron"])
            if group["kind"] == "neuron":  # the last member in topological order is the neuron's output
                group["data"], group["grad"], group["op"] = n["data"], n["grad"], n["op"]
            if n["role"] == "output":
                group["role"] = "output"
    for box, group in groups.items():
        group["count"] = len(layer_neurons[box])  # neurons inside: 1 for a neuron node
    seen = set()
    for a, b in records.edges:
        edge = (show[a], show[b])
        if edge == (a, b):  # value to value: kept as is, so a + a still draws two arrows
            out.edges.append(edge)
        elif None not in edge and edge[0] != edge[1] and edge not in seen:  # into or out of a box: once
            seen.add(edge)
            out.edges.append(edge)

    if len(out.nodes) > budget:  # still too many: keep what is nearest the output
        children = {}
        for a, b in out.edges:
            children.setdefault(b, []).append(a)
        root = next(n["name"] for n in out.nodes if n["role"] == "output")
        keep, queue = {root}, [root]
        for name in queue:  # breadth first; queue grows while we walk it
            for c in children.get(name, []):
                if len(keep) < budget and c not in keep:
                    keep.add(c)
                    queue.append(c)
        out.nodes = [n for n in out.nodes if n["name"] in keep]
        out.edges = [e for e in out.edges if e[0] in keep and e[1] in keep]
    out.total = records.total
    out.folded = sum(n["size"] for n in out.nodes if n["kind"] != "value")
    out.hidden = records.total - sum(n["size"] for n in out.nodes)
    return out


@dataclass
class Step:
    """ one node's _backward during backward(): which node, its rule, what it changed """
    name: str        # record name of the node (v12), as build_graph names it
    label: str
    op: str
    rule: str        # the body of this op's _backward, read from the engine's source
    here: str        # the rule with this node's names put in for self, other and out
    data: float      # the node's data and grad when its _backward ran
    grad: float
    changes: list    # per child: name, label, before, after, earlier (+= in earlier steps), times (+= in this step)


def backward_order(root):
    """ the nodes backward() visits, as record names: reversed topological order, leaves
    left out (their _backward does nothing). The step-through walks this list. """
    topo = topological_order(root)
    return [f"v{i}" for i in range(len(topo) - 1, -1, -1) if topo[i]._prev]


def step_backward(root, k):
    """ root.backward() stopped after k nodes: root.grad = 1, then the _backward of the
    first k nodes of backward_order(root). Returns one Step per node run. Like backward(),
    it adds to whatever grads the graph already holds (that is the lesson of zero_grad). """
    topo = topological_order(root)
    index = {v: i for i, v in enumerate(topo)}
    root.grad = 1
    reached = {}  # child -> how many += it has received in this pass
    steps = []
    for v in [v for v in reversed(topo) if v._prev][:k]:
        children = list(dict.fromkeys(v._prev))  # a + a: a once, with times = 2
        before = [c.grad for c in children]
        v._backward(v)
        changes = []
        for c, b in zip(children, before):
            times = v._prev.count(c)
            changes.append(dict(name=f"v{index[c]}", label=c.label, before=b, after=c.grad,
                                earlier=reached.get(c, 0), times=times))
            reached[c] = reached.get(c, 0) + times
        rule = backward_rule(v)
        steps.append(Step(name=f"v{index[v]}", label=v.label, op=v._op, rule=rule, here=_rule_here(v, rule),
                          data=v.data, grad=v.grad, changes=changes))
    return steps


def backward_rule(v):
    """ the body of the _backward that v's op defined, e.g. for tanh "self.grad += (1 - t**2) * out.grad" """
    return _rule_source(v._backward.__code__)


@functools.cache
def _rule_source(code):
    # read from the engine's source, so the page shows exactly the code backward() runs
    src = textwrap.dedent(inspect.getsource(code))
    return "\n".join(ast.get_source_segment(src, stmt) for stmt in ast.parse(src).body[0].body)


def _rule_here(v, rule):
    """ the rule with names: self.grad += (1 - t**2) * out.grad -> n.grad += (1 - t**2) * o.grad """
    names = {"self": v._prev[0].label or "self", "out": v.label or "out"}
    if len(v._prev) > 1:
        names["other"] = v._prev[1].label or "other"
    elif v._op.startswith("**"):
        names["other"] = v._op[2:]  # the exponent is a number, not a Value
    return re.sub(r"\b(self|other|out)\b", lambda m: names.get(m.group(1), m.group(1)), rule)

# -----------------------------------------------------------------------------
# drawing


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.3e}"


def _escape(text):
    for ch in "\\{}|<>\"":
        text = text.replace(ch, "\\" + ch)
    return text


def _grad_color(grad, biggest):
    """ white (no gradient) to orange (the largest |grad| in the picture): hue, saturation, value """
    return f"0.08 {min(abs(grad) / biggest, 1.0):.3f} 1.0"


def depth(records):
    """ the number of value/neuron/layer nodes on the longest path to the output """
    parents, indegree = {}, {n["name"]: 0 for n in records.nodes}
    for a, b in set(records.edges):
        parents.setdefault(a, []).append(b)
        indegree[b] += 1
    longest = {name: 1 for name, d in indegree.items() if d == 0}
    ready = list(longest)
    while ready:  # Kahn's order: a node is final once all its inputs are
        a = ready.pop()
        for b in parents.get(a, []):
            longest[b] = max(longest.get(b, 0), longest[a] + 1)
            indegree[b] -= 1
            if indegree[b] == 0:
                ready.append(b)
    return max(longest.values(), default=0)


DEEP = 7  # deeper than this, the graph is drawn top to bottom: left to right it would be too small to read


def to_dot(records, highlight=None, touched=(), color_by_grad=False, rankdir=None):
    """ DOT source, as the lecture's draw_dot: a record `label | data x | grad y` per value (data
    over grad, so a deep graph stays narrow enough to read when the browser fits it to the page)
    and a small node per op; fills by role (inputs blue, parameters khaki, output salmon) or, with
    color_by_grad, white to orange by |grad|. `highlight` (a name or names) gets a thick red
    outline, `touched` a blue one: in the step-through, the node running and the nodes it feeds.
    rankdir: "LR" as in the lecture, "TB", or None: LR unless the graph is deeper than DEEP. """
    highlight = {highlight} if isinstance(highlight, str) else set(highlight or ())
    touched = set(touched)
    biggest = max((abs(n["grad"]) for n in records.nodes if n["grad"] is not None), default=0) or 1
    # tight spacing: the browser scales the drawing to the page's width, so less air means bigger text
    rankdir = rankdir or ("TB" if depth(records) > DEEP else "LR")
    box = "{{ {} }}" if rankdir == "LR" else "{}"  # either way: the label, then data over grad
    dot = graphviz.Digraph(graph_attr={"rankdir": rankdir, "ranksep": "0.2", "nodesep": "0.12"},
                           node_attr={"fontsize": "11", "fontname": "Helvetica", "height": "0.3"},
                           edge_attr={"arrowsize": "0.6"})
    if records.folded or records.hidden:
        dot.attr(label=f"{records.total:,} values: {records.folded:,} folded into neuron/layer boxes, "
                       f"{records.hidden:,} not drawn (parameters inside closed neurons, or past the node budget)",
                 labelloc="t", fontsize="10")
    has_op = set()
    for n in records.nodes:
        if n["kind"] == "value":
            text = box.format(f"{_escape(n['label'])} | {{ data {_fmt(n['data'])} | grad {_fmt(n['grad'])} }}")
            color = ROLE_COLORS[n["role"]]
        elif n["kind"] == "neuron":
            kind = "ReLU" if n["op"] == "ReLU" else "linear"
            text = box.format(f"{_escape(n['label'])} {kind}\\n{n['size']} values | {{ data {_fmt(n['data'])} "
                              f"| grad {_fmt(n['grad'])} }}")
            color = ROLE_COLORS["output"] if n["role"] == "output" else GROUP_COLOR
        else:
            text = box.format(f"{_escape(n['label'])}: {n['count']} neurons | {n['size']:,} values")
            color = ROLE_COLORS["output"] if n["role"] == "output" else GROUP_COLOR
        if color_by_grad and n["grad"] is not None:
            color = _grad_color(n["grad"], biggest)
        attrs = {}
        if n["name"] in highlight:
            attrs = {"color": HIGHLIGHT, "penwidth": "3"}
        elif n["name"] in touched:
            attrs = {"color": TOUCHED, "penwidth": "2.5"}
        dot.node(n["name"], label=text, shape="record", style="filled", fillcolor=color, **attrs)
        if n["kind"] == "value" and n["op"]:
            has_op.add(n["name"])
            op_attrs = {"color": HIGHLIGHT, "penwidth": "3"} if n["name"] in highlight else {}
            dot.node(n["name"] + "_op", label=n["op"], shape="circle", width="0.35", fixedsize="true", **op_attrs)
            dot.edge(n["name"] + "_op", n["name"])
    for a, b in records.edges:
        dot.edge(a, b + "_op" if b in has_op else b)
    return dot.source


def dot_program():
    """ the path of Graphviz's `dot`, or None: the page draws without it (the browser lays
    the graph out), only the SVG download needs it """
    return shutil.which("dot")


def to_svg(source):
    """ SVG text for DOT source; needs dot_program() """
    return graphviz.Source(source).pipe(format="svg", encoding="utf-8")
