"""
The micrograd page's session keys (every one starts with mg_; dashboard/state.py holds the
session), the callbacks its buttons run, and its drawing helpers. The math lives in core/.

The expression graph is rebuilt from the text on every rerun (building it is the forward
pass, and costs microseconds). What the buttons did is kept as counters, and replayed on
the fresh graph, so the page shows exactly what the engine would hold:
    leaves' grads from before      (MG_LEAF_BASE: leaves are the same Values across forward passes)
    + MG_PASSES full backward()    (pressing Backward twice accumulates, as backward() does)
    + MG_STEP nodes of one more    (the step-through: zero grads, then a backward() stopped after k nodes)

The moons MLP trains in a worker (core.runs.micrograd_worker): the buttons only send it commands
(resume, pause, backward, apply, stop) and the page reads the frame it last wrote. The live picture
(graph, boundary, whole net) is drawn by dashboard/plot/net_svg.py and put on the page by a small
st.components.v2 component (live_picture.js).
"""

import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.micrograd.graph import dot_program, step_backward, to_svg
from core.micrograd.live import MoonsTrainer, frame, neuron_names, param_names
from core.micrograd.moons import N_STEPS
from core.micrograd.parse import PRESETS, ExpressionError, parse_with_leaves
from core.runs.db import LIVE_STATES
from core.runs.micrograd_worker import forget_frames, frame_path, read_frame
from dashboard import state
from dashboard.plot import net_svg, svg
from dashboard.ui import live
from dashboard.ui.registry import manager, refusal
from dashboard.ui.run_view import NO_FADE

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
# the moons MLP, trained by a worker (core.runs.micrograd_worker); this session's run is live.current_run()
MG_OPT = "mg_opt"                # segmented control: sgd (micrograd's demo) or adamw
MG_LR = "mg_lr"                  # number_input: the learning rate of the next run
MG_STEPS = "mg_steps"            # number_input: steps of the next run
MG_POINT = "mg_point"            # number_input: the datapoint drawn through the net...
MG_FOLLOW = "mg_follow"          # ...and the one the graph follows: the box's, or the one clicked on the boundary
MG_PICKED = "mg_picked"          # a datapoint was clicked: the next full run puts it in the box
MG_ECHO = "mg_echo"              # (the box's value before a click replaced it, when): see sync_point
MG_EXPAND = "mg_expand"          # selectbox: the neuron opened below the graph
MG_WEIGHT = "mg_weight"          # selectbox: the weight whose update Step writes out
MG_SORT = "mg_sort"              # selectbox: the parameter table's order
MG_SLOT = "mg_slot_"             # + a chart name: (hash of its DOT, which of two positions it is drawn in)

DEFAULT_PRESET = "L = (a*b + c) * f"
PLAY_EVERY = 0.9     # seconds between steps while playing the step-through
FRAME_EVERY = 0.15   # seconds between frames of the live graph while the MLP trains (the worker writes ~10/s)
SLOW_EVERY = 2.0     # the opened neuron, the curves and the table: a table costs the browser the most per draw
ECHO_SECONDS = 2.0   # a stale value of the Datapoint box arrives this soon after a click on the boundary, or never
DEFAULT_LR = {"sgd": 1.0, "adamw": 0.03}
DEFAULT_WEIGHT = "L3.N1.w1"

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
    state.setdefault(MG_OPT, "sgd")
    state.setdefault(MG_LR, DEFAULT_LR["sgd"])
    state.setdefault(MG_STEPS, N_STEPS)
    state.setdefault(MG_POINT, 0)
    state.setdefault(MG_FOLLOW, state.get(MG_POINT))
    state.setdefault(MG_WEIGHT, DEFAULT_WEIGHT)

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

# --- the moons MLP: a run in a worker, commanded from callbacks ---------------------------


def moons_spec():
    """ the run the controls describe (core.runs.spec: the micrograd run kind) """
    opt = state.get(MG_OPT)
    return {"model": "micrograd", "preset": opt, "page": "micrograd",
            "train": {"optimizer": opt, "steps": int(state.get(MG_STEPS)), "lr": float(state.get(MG_LR))}}


def moons_run():
    """ this session's micrograd run on this page (a reload re-attaches through ?run=), or None """
    run_id = live.current_run()
    row = manager().db.get_run(run_id) if run_id else None
    return row if row is not None and row["spec"].get("model") == "micrograd" else None


def _live(row):
    return row is not None and row["state"] in LIVE_STATES


def _send(cmd):
    row = moons_run()
    if _live(row):
        if not manager().send(row["id"], cmd):  # another browser's run, or a busy runs file
            state.put(state.FLASH, refusal(row["id"]))
        live.poke()


def on_optimizer():
    state.put(MG_LR, DEFAULT_LR[state.get(MG_OPT)])


def _start():
    forget_frames(manager().db)  # the frames of runs deleted since (the Runs page, retention) go too
    live.start_in_slot(moons_spec(), "run")


def moons_train():
    """ Train: a new run when there is none live, else Resume """
    row = moons_run()
    if _live(row):
        _send("resume")
    else:
        _start()


def moons_pause():
    _send("pause")


def moons_step():
    """ Step: the next step's forward and backward, then the worker waits with the update pending """
    if not _live(moons_run()):
        # a fresh worker reads its command slot before its first step: it starts with this backward()
        _start()
    _send("backward")


def moons_apply():
    _send("apply")


def moons_new():
    """ stop this run; the next Train starts from the demo's fresh model """
    _send("stop")
    state.put(state.page_key(state.RUN_ID), None)
    state.url_set(run=None)


@st.cache_resource(show_spinner=False)
def fresh_frame():
    """ the demo's model before any step: what the page shows until a run starts """
    return frame(MoonsTrainer())


def current_frame(row):
    """ the run's latest frame (read again only when the worker wrote a new one), else the fresh model's """
    if row is None:
        return fresh_frame()
    path = frame_path(manager().db, row["id"])
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return fresh_frame()
    return _read_frame(str(path), mtime) or fresh_frame()


@st.cache_resource(max_entries=4, show_spinner=False)
def _read_frame(path, mtime):
    return read_frame(Path(path))


def status_line(f, row):
    opt = "SGD" if f["optimizer"] == "sgd" else "AdamW"
    where = ("fresh model: press Train or Step" if row is None else
             f"run `{row['id']}` {row['state']}" + (f" ({row['meta']['message']})"
                                                    if row["meta"].get("message") and not _live(row) else ""))
    loss = "" if f["loss"] != f["loss"] else f" · loss **{f['loss']:.4f}** · accuracy **{100 * f['acc']:.0f}%**"
    pending = " · **update pending** (Apply does it)" if f["phase"] == "backward" else ""
    return (f"{opt} · step **{int(f['k'])}** of {int(f['steps'])}{loss} · lr {f['lr']:.4f}{pending} · {where}")


def update_panel(f, weight):
    """ Step's pause between backward and the update: the picked weight's update with its numbers, written
    as the optimizer computes it (the worker computed the same; the table has every weight's) """
    names = param_names(tuple(int(s) for s in f["sizes"]))
    i = names.index(weight)
    d, g, lr, new = f["data"][i], f["grad"][i], f["lr"], f["new"][i]
    k, cfg = int(f["k"]), {"weight_decay": f["weight_decay"]}
    st.markdown(f"**Step {k}: backward() is done, the update is pending.** For `{weight}` "
                "(pick another weight above; its edge is drawn black):")
    if f["optimizer"] == "sgd":
        st.code(f"p.data -= lr * p.grad\n# {weight}.data = {d:.6f} - {lr:.6f} * {g:.6f} = {new:.6f}",
                language="python")
        return
    m0, m, v0, v = f["m"][i], f["new_m"][i], f["v"][i], f["new_v"][i]
    st.code(f"m = beta1 * m + (1 - beta1) * grad     # {m0:.6g} -> {m:.6g}   (grad = {g:.6f})\n"
            f"v = beta2 * v + (1 - beta2) * grad**2  # {v0:.6g} -> {v:.6g}\n"
            f"p.data *= 1 - lr * weight_decay        # lr = {lr:g}, weight_decay = {cfg['weight_decay']:g}\n"
            f"p.data -= lr / (1 - beta1**t) * m / (sqrt(v / (1 - beta2**t)) + eps)   # t = {k + 1}\n"
            f"# {weight}.data = {d:.6f} -> {new:.6f}", language="python")


def neuron_detail(f, point, name):
    """ the opened neuron as micrograd's graph holds it for this datapoint: b + sum of w_k * x_k, its ReLU,
    and each weight's grad for this datapoint alone (x_k times d score / d w·x+b) """
    sizes = tuple(int(s) for s in f["sizes"])
    names = neuron_names(sizes)
    c = names.index(name)
    layer = int(name[1:name.index(".")])
    nonlin = layer < len(sizes) - 1
    g_act = f["dout"][point, c] * (f["out"][point, c] > 0 if nonlin else 1.0)
    if layer == 1:
        inputs = [(f"x{k + 1}", f["X"][point, k]) for k in range(sizes[0])]
    else:
        first = sum(sizes[1:layer - 1])  # the previous layer's first neuron
        inputs = [(names[first + k], f["out"][point, first + k]) for k in range(sizes[layer - 1])]
    pnames = {n: j for j, n in enumerate(param_names(sizes))}
    rows = []
    for k, (src, x) in enumerate(inputs, 1):
        w = f["data"][pnames[f"{name}.w{k}"]]
        rows.append({"term": f"w{k} · {src}", "w": w, "x": x, "w·x": w * x, "d score/d w (this point)": x * g_act})
    b = f["data"][pnames[f"{name}.b"]]
    rows.append({"term": "b", "w": b, "x": None, "w·x": b, "d score/d w (this point)": g_act})
    st.markdown(f"**{name}** for datapoint {point}: w·x+b = **{f['act'][point, c]:.4f}**"
                + (f", ReLU → **{f['out'][point, c]:.4f}**" if nonlin else " (linear: this is the score)")
                + f", d score / d output = **{f['dout'][point, c]:.4f}**")
    st.dataframe(pd.DataFrame(rows), hide_index=True, height=min(36 + 35 * len(rows), 420),
                 column_config={k: st.column_config.NumberColumn(format="%.4f")
                                for k in ("w", "x", "w·x", "d score/d w (this point)")})


SORTS = {"moved most this step": "|change|", "natural order (L1.N1.w1 ...)": "#", "|grad|": "|grad|",
         "value": "value"}


def param_table(f, sort, top=10):
    """ every parameter: value, grad (of the last backward), its change in the last step, AdamW's m and v,
    and while an update is pending the value it will get; the `top` that moved most are highlighted """
    sizes = tuple(int(s) for s in f["sizes"])
    df = pd.DataFrame({"#": np.arange(1, len(f["data"]) + 1), "parameter": param_names(sizes),
                       "value": f["data"], "grad": f["grad"], "change": f["delta"]})
    if f["optimizer"] == "adamw":
        df["m"], df["v"] = f["m"], f["v"]
    if f["phase"] == "backward":
        df["after the update"] = f["new"]
    moved = set(np.argsort(-np.abs(f["delta"]))[:top]) if np.abs(f["delta"]).max() > 0 else set()
    key = SORTS[sort]
    if key == "#":
        df = df.sort_values("#")
    else:
        col = {"|change|": "change", "|grad|": "grad", "value": "value"}[key]
        df = df.iloc[np.argsort(-(np.abs(df[col]) if key.startswith("|") else df[col]).to_numpy(), kind="stable")]
    styled = df.style.apply(lambda r: ["background-color: #fde2c8" if r.name in moved else ""] * len(r), axis=1)
    styled = styled.format({c: "{:.6g}" for c in df.columns if c not in ("#", "parameter")})
    st.dataframe(styled, hide_index=True, height=420, width="stretch")


# the live picture: one element per frame, put on the page by a few lines of JS (live_picture.js) instead of
# Streamlit's markdown, which parsed ~90 KB of SVG per frame; a click on a datapoint comes back as "picked"
LIVE_PICTURE = st.components.v2.component("zth.live_picture", isolate_styles=False,
                                          js=(Path(__file__).parent / "live_picture.js").read_text())
PICTURE_CSS = ("<style>.zth-picture:fullscreen{background:#fff;overflow:auto;padding:12px}"
               ".zth-picture:fullscreen svg.mg-graph{max-height:calc(100vh - 40px);width:auto !important;margin:0 auto}"
               ".zth-picture .mg-row{display:grid;grid-template-columns:1fr 1fr;gap:16px;align-items:start}"
               ".zth-picture .mg-note{font:14px sans-serif;color:#555;margin:4px 0 10px}"
               ".zth-picture button{float:right;font:13px sans-serif;padding:2px 8px;cursor:pointer}</style>")


def live_picture(f, point, opened, weight):
    """ the datapoint's graph, the decision boundary and the whole net, as one picture """
    note = (f"Datapoint {point}: x = ({f['X'][point, 0]:.3f}, {f['X'][point, 1]:.3f}), y = {int(f['y'][point]):+d}. "
            "Each box: its w·x + b, its ReLU, and grad = d score / d output for this datapoint (grey: the ReLU is "
            "off here). Edges: blue w &gt; 0, red w &lt; 0, as wide as |w|; orange under an edge: the weights that "
            "moved most in the last step.")
    html = (PICTURE_CSS + "<button data-fullscreen title='Show the picture on the whole screen (Esc leaves)'>"
            "Fullscreen</button>" + net_svg.datapoint_svg(f, point, opened, weight)
            + f"<div class='mg-note'>{note}</div><div class='mg-row'><div>{net_svg.boundary_svg(f, point)}</div>"
            "<div><div class='mg-note'><b>The whole net</b>: every weight an edge; a neuron's circle is as full as "
            "the share of the 100 datapoints its ReLU passes (empty: dead).</div>"
            f"{net_svg.layer_svg(f)}</div></div>")
    LIVE_PICTURE(data=html, key="mg_picture", on_picked_change=on_pick)


def on_pick():
    """ a click on a datapoint of the boundary: the graph follows it, and a full rerun puts it in the box """
    picked = ((state.get("mg_picture") or {}).get("picked") or {}).get("point")
    if isinstance(picked, int) and 0 <= picked < 100:
        state.put(MG_FOLLOW, picked)
        state.put(MG_PICKED, True)


def on_point():
    echo = state.get(MG_ECHO)  # kept for its whole window: several fragment reruns may bring the old value back
    if echo and state.get(MG_POINT) == echo[0] and time.time() - echo[1] < ECHO_SECONDS:
        state.put(MG_POINT, state.get(MG_FOLLOW))  # the box's old value coming back, not a learner's typing
        return
    state.put(MG_FOLLOW, state.get(MG_POINT))


def sync_point():
    """ before the Datapoint box is drawn: a click on the boundary since the last full run sets it. (The box's
    own key cannot be the graph's datapoint: a live fragment's rerun sends the box's old value back.) """
    if state.take(MG_PICKED):
        # a live fragment's rerun the browser sent before it saw the new box may still bring the old value back:
        # on_point knows it for a moment and keeps the clicked datapoint (the graph once jumped back under load)
        state.put(MG_ECHO, (state.get(MG_POINT), time.time()))
        state.put(MG_POINT, state.get(MG_FOLLOW))


def curves_svg(f):
    """ loss and accuracy per step so far, drawn by the server (dashboard/plot/svg.py): cheap to redraw """
    ks = list(range(len(f["lossi"])))
    n = max(int(f["steps"]), 1)
    loss = dict(data=[dict(type="scatter", x=ks, y=f["lossi"].tolist(), mode="lines", name="loss",
                           line=dict(color="#d1495b", width=2))],
                layout=dict(title=dict(text="loss (before each update)"), height=260, showlegend=False,
                            xaxis=dict(title="step k", range=[0, n])))
    acc = dict(data=[dict(type="scatter", x=ks, y=(100 * f["acci"]).tolist(), mode="lines", name="accuracy",
                          line=dict(color="#3b6ea5", width=2))],
               layout=dict(title=dict(text="accuracy %"), height=260, showlegend=False,
                           xaxis=dict(title="step k", range=[0, n]), yaxis=dict(range=[0, 102])))
    st.markdown(svg.grid_svg([("loss", loss), ("accuracy", acc)], cols=1, tall=0.62) + NO_FADE,
                unsafe_allow_html=True)

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


def fmt(x):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


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
