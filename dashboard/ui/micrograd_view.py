"""
The micrograd page's session keys (every one starts with mg_; dashboard/state.py holds the
session), the callbacks its buttons run, and its drawing helpers. The math lives in core/.

The expression graph is rebuilt from the text on every rerun (building it is the forward
pass, and costs microseconds). What the buttons did is kept as counters, and replayed on
the fresh graph, so the page shows exactly what the engine would hold:
    leaves' grads from before      (MG_LEAF_BASE: leaves are the same Values across forward passes)
    + MG_PASSES full backward()    (pressing Backward twice accumulates, as backward() does)
    + MG_STEP nodes of one more    (the step-through: zero grads, then a backward() stopped after k nodes)
"""

import hashlib
import math

import streamlit as st

from core.micrograd.graph import dot_program, step_backward, to_svg
from core.micrograd.moons import N_STEPS, demo_model, train_step
from core.micrograd.parse import PRESETS, ExpressionError, parse_with_leaves
from dashboard import state

# --- session keys ------------------------------------------------------------------------
MG_PRESET = "mg_preset"          # selectbox: the lecture expression last loaded
MG_TEXT = "mg_text"              # text_area: the expression as typed
MG_VAL = "mg_val_"               # + a name: the number_input of that variable
MG_VALUES = "mg_values"          # {name: value} last seen, so a name keeps its value while the text changes
MG_LEAF_BASE = "mg_leaf_base"    # {name: grad} the leaves held when this graph was built
MG_LEAF_NOW = "mg_leaf_now"      # {name: grad} the leaves hold now (read by the next Forward)
MG_PASSES = "mg_passes"          # full backward passes run on this graph
MG_STEP = "mg_step"              # step-through: nodes run in the current pass, or None when not stepping
MG_STEPS_TOTAL = "mg_steps_total"  # nodes with a _backward in this graph (the step-through's length)
MG_PLAYING = "mg_playing"        # the step-through advances on a timer
MG_PLAY_HOLD = "mg_play_hold"    # Play was just pressed: the next tick shows step 0 instead of moving on
MG_COLOR_GRAD = "mg_color_grad"  # toggle: fill nodes by |grad| instead of by role
MG_NUDGE = "mg_nudge"            # selectbox: the input nudged by h
MG_H = "mg_h"                    # number_input: h
# the moons MLP
MG_MODEL = "mg_model"            # the MLP(2, [16, 16, 1]) being trained
MG_HIST = "mg_hist"              # [(k, loss, accuracy)] one per training step, before its update
MG_TRAINING = "mg_training"      # the live fragment trains while this is True
MG_POINT = "mg_point"            # number_input: the datapoint drawn through the net
MG_LEVEL = "mg_level"            # segmented control: fold into neurons or layers
MG_EXPAND = "mg_expand"          # selectbox: the neuron or layer kept open
MG_SLOT = "mg_slot_"             # + a chart name: (hash of its DOT, which of two positions it is drawn in)

DEFAULT_PRESET = "L = (a*b + c) * f"
PLAY_EVERY = 0.9     # seconds between steps while playing the step-through
TRAIN_EVERY = 1.0    # seconds between ticks of live training
TRAIN_BUDGET = 0.6   # seconds of training per tick (at least one step): the page stays responsive


def value_box_default(name):
    """ a new name's value box starts at the value it last had, else 1.0 """
    state.setdefault(MG_VAL + name, state.get(MG_VALUES, {}).get(name, 1.0))


def remember_values(values):
    state.put(MG_VALUES, {**state.get(MG_VALUES, {}), **values})


def init():
    """ first visit: the lecture's first expression, and a fresh demo model """
    if not state.has(MG_TEXT):
        load_preset(DEFAULT_PRESET)
    state.setdefault(MG_PRESET, DEFAULT_PRESET)
    state.setdefault(MG_COLOR_GRAD, False)
    state.setdefault(MG_H, 0.001)
    if not state.has(MG_MODEL):
        new_model()

# --- the expression: callbacks -----------------------------------------------------------


def load_preset(name=None):
    p = PRESETS[name or state.get(MG_PRESET)]
    state.put(MG_TEXT, p.text)
    state.put(MG_VALUES, dict(p.values))
    for k, v in p.values.items():
        state.put(MG_VAL + k, v)
    _fresh_graph()


def _fresh_graph():
    """ new text: new leaves, so nothing carries over """
    state.put(MG_LEAF_BASE, {})
    _reset_passes()


def _reset_passes():
    state.put(MG_PASSES, 0)
    state.put(MG_STEP, None)
    state.put(MG_PLAYING, False)


def on_text():
    _fresh_graph()


def forward():
    """ a new forward pass: new intermediate nodes (grad 0), the same leaves, which keep
    their grads until zero_grad, like parameters in a training loop """
    state.put(MG_LEAF_BASE, dict(state.get(MG_LEAF_NOW, {})))
    _reset_passes()


def backward():
    """ one more backward(); during a step-through, finish that pass instead """
    state.put(MG_PASSES, state.get(MG_PASSES, 0) + 1)
    state.put(MG_STEP, None)
    state.put(MG_PLAYING, False)


def zero_grad():
    state.put(MG_LEAF_BASE, {})
    _reset_passes()


def step():
    k = state.get(MG_STEP)
    if k is None:
        _start_stepping()
    else:
        state.put(MG_STEP, min(k + 1, state.get(MG_STEPS_TOTAL, 0)))


def _start_stepping():
    """ a step-through starts from clean grads (Zero grad, then backward one node at a time),
    so every number it shows comes from this pass alone """
    zero_grad()
    state.put(MG_STEP, 0)


def play():
    if state.get(MG_STEP) is None or state.get(MG_STEP) >= state.get(MG_STEPS_TOTAL, 0):
        _start_stepping()
        state.put(MG_PLAY_HOLD, True)  # show step 0 before the first tick moves on
    state.put(MG_PLAYING, True)


def pause():
    state.put(MG_PLAYING, False)


def reset_steps():
    """ leave the step-through with the grads zeroed, as it started """
    zero_grad()


def advance_play():
    """ one tick of Play: the next node; True when the pass is done (the caller stops the timer) """
    if state.get(MG_PLAY_HOLD):
        state.put(MG_PLAY_HOLD, False)
        return False
    step()
    if state.get(MG_STEP) >= state.get(MG_STEPS_TOTAL, 0):
        state.put(MG_PLAYING, False)
        return True
    return False

# --- the expression: the graph the counters describe -------------------------------------


def expression(text, values):
    """ (root, leaves, steps) for the page's state; raises ExpressionError with a message """
    root, leaves = parse_with_leaves(text, values)
    for name, g in state.get(MG_LEAF_BASE, {}).items():
        if name in leaves:
            leaves[name].grad = g
    steps = []
    try:
        for _ in range(state.get(MG_PASSES, 0)):
            root.backward()
        if state.get(MG_STEP) is not None:
            steps = step_backward(root, state.get(MG_STEP))
    except (ZeroDivisionError, OverflowError, ValueError):
        raise ExpressionError("backward() failed: a local derivative here divides by zero or overflows "
                              "(e.g. x**0.5 at x = 0)") from None
    state.put(MG_LEAF_NOW, {name: v.grad for name, v in leaves.items()})
    return root, leaves, steps

# --- the moons MLP: callbacks and the training tick --------------------------------------


def new_model():
    state.put(MG_MODEL, demo_model())
    state.put(MG_HIST, [])
    state.put(MG_TRAINING, False)


def train():
    if len(state.get(MG_HIST, [])) >= N_STEPS:
        new_model()  # the demo's schedule is 100 steps long: start again
    state.put(MG_TRAINING, True)


def stop_training():
    state.put(MG_TRAINING, False)


def one_step(X, y):
    hist = state.get(MG_HIST)
    if len(hist) < N_STEPS:
        k = len(hist)
        hist.append((k, *train_step(state.get(MG_MODEL), X, y, k)))


def train_tick(X, y, clock):
    """ steps for about TRAIN_BUDGET seconds (at least one); True when the 100 steps are done """
    t0 = clock()
    while len(state.get(MG_HIST)) < N_STEPS:
        one_step(X, y)
        if clock() - t0 > TRAIN_BUDGET:
            break
    if len(state.get(MG_HIST)) >= N_STEPS:
        state.put(MG_TRAINING, False)
        return True
    return False

# --- drawing -----------------------------------------------------------------------------


def graph_chart(dot, name):
    """ st.graphviz_chart that draws a changed graph from scratch. A hack, admitted: the
    browser keeps one d3-graphviz instance per chart position, and an update animates every
    edge from the old drawing to the new one; for the 35-box MLP view and its ~300 edges that
    took ~6 s, a fresh drawing ~0.3 s. So a chart moves between two positions each time its
    DOT changes, and stays put (no redraw at all) while it does not. """
    h = hashlib.blake2b(dot.encode(), digest_size=8).hexdigest()
    last = state.get(MG_SLOT + name)
    slot = 0 if last is None else (last[1] if last[0] == h else 1 - last[1])
    state.put(MG_SLOT + name, (h, slot))
    with st.container():
        if slot:
            st.empty()  # takes position 0, so the chart gets a new element id
        st.graphviz_chart(dot, width="stretch")


LAYOUT = dict(margin=dict(l=10, r=10, t=36, b=10), height=330, template="plotly_white", uirevision="keep")


def fmt(x):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def curves_figure(hist):
    """ the demo's printout as two curves: loss (left axis) and accuracy (right axis) per step """
    ks = [h[0] for h in hist]
    return dict(data=[
        dict(type="scatter", x=ks, y=[h[1] for h in hist], mode="lines+markers", name="loss",
             line=dict(color="#d1495b", width=2), marker=dict(size=4)),
        dict(type="scatter", x=ks, y=[100 * h[2] for h in hist], mode="lines", name="accuracy %",
             yaxis="y2", line=dict(color="#3b6ea5", width=2)),
    ], layout=dict(**LAYOUT, title=dict(text="loss and accuracy", font=dict(size=14)),
                   xaxis=dict(title="step k", range=[0, N_STEPS]),
                   yaxis=dict(title="loss", rangemode="tozero"),
                   yaxis2=dict(title="accuracy %", overlaying="y", side="right", range=[0, 102],
                               showgrid=False, tickmode="array", tickvals=[0, 50, 100]),
                   legend=dict(orientation="h", y=-0.2)))


def boundary_figure(xs, ys, Z, X, y, point):
    """ the demo's last plot: the sign of the score on a grid, the boundary at 0, the points """
    inside = [i for i in range(len(y)) if y[i] > 0]
    outside = [i for i in range(len(y)) if y[i] < 0]
    return dict(data=[
        dict(type="heatmap", x=xs.tolist(), y=ys.tolist(), z=(Z > 0).astype(int).tolist(), showscale=False,
             hoverinfo="skip", zmin=0, zmax=1, colorscale=[[0, "#f8d3c5"], [1, "#c9dcec"]]),
        dict(type="contour", x=xs.tolist(), y=ys.tolist(), z=Z.tolist(), showscale=False, hoverinfo="skip",
             contours=dict(start=0, end=0, size=1, coloring="none"), line=dict(color="#333", width=2),
             name="score = 0"),
        dict(type="scatter", x=X[outside, 0].tolist(), y=X[outside, 1].tolist(), mode="markers", name="y = -1",
             marker=dict(color="#d1495b", size=7, line=dict(color="white", width=0.5))),
        dict(type="scatter", x=X[inside, 0].tolist(), y=X[inside, 1].tolist(), mode="markers", name="y = +1",
             marker=dict(color="#3b6ea5", size=7, line=dict(color="white", width=0.5))),
        dict(type="scatter", x=[X[point, 0]], y=[X[point, 1]], mode="markers", name=f"datapoint {point}",
             marker=dict(color="rgba(0,0,0,0)", size=16, line=dict(color="black", width=2.5))),
    ], layout=dict(**LAYOUT, title=dict(text="decision boundary (score > 0 is blue)", font=dict(size=14)),
                   xaxis=dict(range=[float(xs[0]), float(xs[-1])], constrain="domain"),
                   yaxis=dict(range=[float(ys[0]), float(ys[-1])], scaleanchor="x"),
                   legend=dict(orientation="h", y=-0.12)))


def step_panel(k, n_total, steps, root):
    """ the step-through's text: the node running, its rule as the engine writes it and with this
    graph's names, and the grads it changed """
    left, right = st.columns([1, 1])
    if k == 0:
        left.markdown(f"**Step 0 of {n_total}** · backward() starts at the output: `{root.label}.grad = 1` "
                      f"(d{root.label}/d{root.label} = 1).")
        right.markdown("Each Step runs the next node's `_backward`, in reverse topological order: a node "
                       "passes its grad on only after every node that uses it has passed theirs.")
        return
    current = steps[-1]
    with left:
        st.markdown(f"**Step {k} of {n_total}** · node `{current.label}` (op `{current.op}`) runs its `_backward`, "
                    "the code right under the op's forward in the engine:")
        st.code(current.rule, language="python")
    with right:
        st.markdown("With this graph's names:")
        where = {"tanh": f"  # t = {current.label}.data = {current.data:.4f}",
                 "sigmoid": f"  # s = {current.label}.data = {current.data:.4f}"}
        st.code(current.here + where.get(current.op, ""), language="python")
        lines = []
        for c in current.changes:
            line = f"`{c['label']}.grad`: {fmt(c['before'])} → **{fmt(c['after'])}**"
            if c["times"] > 1:
                line += (f" · reached twice in this one step: `{c['label']}` is both self and other, "
                         "so `+=` runs twice")
            elif c["earlier"]:
                line += " · reached before: `+=` adds to the grad it already had"
            lines.append("- " + line)
        st.markdown("\n".join(lines))
    if k >= n_total:
        st.success("Done: every node has passed its grad on. These are the grads backward() computes.",
                   icon=":material/check:")


def downloads(dot, name, key):
    """ DOT always; SVG where Graphviz's dot program exists, and where it does not, say so """
    c1, c2 = st.columns([1, 3])
    c1.download_button("Download DOT", dot, file_name=f"{name}.dot", mime="text/vnd.graphviz", key=f"{key}_dot",
                       icon=":material/download:")
    if dot_program():
        c2.download_button("Download SVG", to_svg(dot), file_name=f"{name}.svg", mime="image/svg+xml",
                           key=f"{key}_svg", icon=":material/download:")
    else:
        c2.caption("SVG download needs Graphviz's `dot` program, which this server does not have "
                   "(`apt-get install graphviz`). The DOT file opens in any Graphviz viewer.")
