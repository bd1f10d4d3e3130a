import time

import streamlit as st

from core.micrograd.graph import backward_order, build_graph, collapse, mlp_names, to_dot
from core.micrograd.moons import N_STEPS, datapoint_score, decision_grid, learning_rate, make_moons
from core.micrograd.parse import PRESETS, ExpressionError, free_names, parse_expression, slope_check
from dashboard import state
from dashboard.ui import micrograd_view as mv

st.title("micrograd")
st.caption("Lecture 1 · *The spelled-out intro to neural networks and backpropagation: building micrograd*. "
           "A scalar autograd engine you can watch: build an expression, run backward() node by node, "
           "then train the demo's little MLP on two moons.")
mv.init()


expr_tab, moons_tab = st.tabs(["① An expression, by hand", "② An MLP on two moons"])

# =========================================================================================
# ① an expression: forward, backward, and backward one node at a time
def expression_part():
    """ a function, so a bad expression can end this tab with `return` and leave the other tab alone """
    c1, c2, c3 = st.columns([1.1, 1.6, 1.6])
    c1.selectbox("Lecture example", list(PRESETS), key=mv.MG_PRESET, on_change=mv.load_preset)
    preset = PRESETS[state.get(mv.MG_PRESET)]
    edited = state.get(mv.MG_TEXT) != preset.text
    c1.caption("Your own expression: each name gets a value box. Pick an example to go back to the lecture's."
               if edited else preset.note)
    c2.text_area("Expression (one per line; the last line is the output)", key=mv.MG_TEXT, height=170,
                 on_change=mv.on_text, help="Numbers, names, + - * / **, exp log tanh relu sigmoid, "
                 "and lines like `e = a*b` or `c += 1`. The last line is the output.")
    text = state.get(mv.MG_TEXT)
    try:
        names = free_names(text)
    except ExpressionError as e:
        st.error(f"**That expression cannot be built:** {e}", icon=":material/error:")
        return
    values = {}
    with c3:
        st.markdown("**Values**")
        cols = st.columns(2)
        for i, name in enumerate(names):
            mv.value_box_default(name)
            values[name] = cols[i % 2].number_input(name, key=mv.MG_VAL + name, step=0.1, format="%.4f",
                                                    on_change=mv.forward)
    mv.remember_values(values)
    try:
        root = parse_expression(text, values)
    except ExpressionError as e:
        st.error(f"**That expression cannot be built:** {e}", icon=":material/error:")
        return

    # --- controls: the three phases of the lecture, then the step-through ----------------
    n_total = len(backward_order(root))
    state.put(mv.MG_STEPS_TOTAL, n_total)
    k, playing = state.get(mv.MG_STEP), state.get(mv.MG_PLAYING)
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button("Forward", key="mg_forward", on_click=mv.forward, icon=":material/arrow_forward:",
                  help="Build the graph again from the values: new nodes with grad 0. The leaves are the same "
                       "Values and keep their grads, like parameters between training steps.")
        st.button("Backward", key="mg_backward", on_click=mv.backward, type="primary", icon=":material/arrow_back:",
                  help="root.backward(): the output's grad is set to 1, then every node hands its grad to its "
                       "inputs. During a step-through: finish it.")
        st.button("Zero grad", key="mg_zero", on_click=mv.zero_grad, icon=":material/exposure_zero:")
        st.space("small")
        st.button("Step", key="mg_step_btn", on_click=mv.step, icon=":material/skip_next:",
                  disabled=k is not None and k >= n_total,
                  help="backward() one node at a time, from zeroed grads, in reverse topological order.")
        if playing:
            st.button("Pause", key="mg_pause", on_click=mv.pause, icon=":material/pause:")
        else:
            st.button("Play", key="mg_play", on_click=mv.play, icon=":material/play_arrow:")
        st.button("Reset", key="mg_reset", on_click=mv.reset_steps, icon=":material/restart_alt:",
                  disabled=k is None, help="Leave the step-through (grads back to 0).")
        st.space("small")
        st.toggle("Colour by |grad|", key=mv.MG_COLOR_GRAD)

    @st.fragment(run_every=mv.PLAY_EVERY if playing else None)
    def expression_graph():
        if state.get(mv.MG_PLAYING) and mv.advance_play():
            st.rerun()  # the pass is done: a full rerun stops the timer and updates the buttons
        try:
            output, leaves, steps = mv.expression(text, values)
        except ExpressionError as e:
            st.error(f"**Backward failed:** {e}", icon=":material/error:")
            return
        k, passes = state.get(mv.MG_STEP), state.get(mv.MG_PASSES, 0)
        st.markdown(f"**{output.label} = {output.data:.4f}**" + (f" · backward passes on this graph: **{passes}**"
                                                        if k is None else " · stepping through backward()"))
        params = [leaves[p] for p in preset.parameters if p in leaves] if text == preset.text else []
        records = build_graph(output, parameters=params)
        current = steps[-1] if steps else None
        highlight = current.name if current else (f"v{len(records.nodes) - 1}" if k == 0 else None)
        touched = [c["name"] for c in current.changes] if current else []
        if k is not None:
            mv.step_panel(k, n_total, steps, output)
        shown = collapse(records, budget=300)
        dot = to_dot(shown, highlight=highlight, touched=touched, color_by_grad=state.get(mv.MG_COLOR_GRAD))
        mv.graph_chart(dot, "expression")
        fills = ("Fill: white (no gradient) to orange (the largest |grad|)." if state.get(mv.MG_COLOR_GRAD) else
                 "Blue: inputs · khaki: parameters · salmon: the output · white: intermediate values.")
        st.caption(fills + " Circles: the operation that made the value they point to."
                   + (" Red: the node running its _backward; blue outline: the grads it just changed."
                      if k is not None else ""))
        if passes >= 2 and k is None:
            st.warning(f"backward() ran {passes} times on this graph without Zero grad, so the grads "
                       "accumulated: every `+=` added to what was already there. This is why the training "
                       "loop calls zero_grad() before backward().", icon=":material/warning:")
        elif passes == 0 and k is None and any(v.grad for v in leaves.values()):
            kept = ", ".join(f"{n}.grad = {v.grad:.4g}" for n, v in leaves.items())
            st.info(f"The leaves kept their grads through Forward ({kept}): nothing zeroed them, so the next "
                    "Backward adds to them. Press Zero grad first, as the training loop does.",
                    icon=":material/info:")
        mv.downloads(dot, "micrograd-expression", "mg_expr")

    expression_graph()

    # --- the lecture's numerical check ---------------------------------------------------
    with st.expander("Check a gradient numerically: nudge an input by h"):
        if not names:
            st.info("This expression has no inputs to nudge.")
        else:
            n1, n2, n3 = st.columns([1, 1, 3])
            who = n1.selectbox("Input", names, key=mv.MG_NUDGE)
            h = n2.number_input("h", key=mv.MG_H, min_value=1e-9, max_value=1.0, step=0.0001, format="%.6f")
            try:
                check = slope_check(text, values, who, h)  # fresh graphs: the page's own grads are not touched
                n3.markdown(f"L = **{check['L']:.6f}**, with {who} + h: **{check['L_nudged']:.6f}**  \n"
                            f"(L(x + h) − L(x)) / h = **{check['slope']:.6f}** · backward() says "
                            f"d{root.label}/d{who} = **{check['grad']:.6f}**")
            except ExpressionError as e:
                n3.error(str(e))


with expr_tab:
    expression_part()

# =========================================================================================
# ② the demo notebook: MLP(2, [16, 16, 1]) on two moons, max-margin loss
X, y = make_moons()  # 100 points, noise 0.1, np.random.seed(1337), labels -1/+1

with moons_tab:
    st.caption("micrograd's demo: 100 points from make_moons (noise 0.1, seed 1337), `MLP(2, [16, 16, 1])` "
               "with `random.seed(1337)` (337 parameters), the SVM max-margin loss `relu(1 - y·score)` plus "
               "1e-4·L2, and 100 steps of SGD with `lr = 1.0 - 0.9·k/100`. The first loss is 0.8958 at 50% "
               "accuracy; by step 100 every point is classified right.")
    training = state.get(mv.MG_TRAINING)
    hist = state.get(mv.MG_HIST)
    t1, t2, t3, _ = st.columns([1.2, 1, 1, 3])
    if training:
        t1.button("Pause training", key="mg_train_pause", on_click=mv.stop_training, icon=":material/pause:")
    else:
        t1.button("Train 100 steps" if len(hist) < N_STEPS else "Train again", key="mg_train", type="primary",
                  on_click=mv.train, icon=":material/play_arrow:")
    t2.button("One step", key="mg_train_step", on_click=mv.one_step, args=(X, y), icon=":material/skip_next:",
              disabled=training or len(hist) >= N_STEPS)
    t3.button("New model", key="mg_new_model", on_click=mv.new_model, icon=":material/restart_alt:")

    @st.fragment(run_every=mv.TRAIN_EVERY if training else None)
    def live_training():
        if state.get(mv.MG_TRAINING):
            if mv.train_tick(X, y, time.perf_counter):
                st.rerun()  # done: a full rerun stops the timer and redraws the graph below
        hist = state.get(mv.MG_HIST)
        model = state.get(mv.MG_MODEL)
        m = st.columns(4)
        last = f" at step {hist[-1][0]}" if hist else ""
        m[0].metric("steps done", f"{len(hist)} / {N_STEPS}")
        m[1].metric("loss" + last, f"{hist[-1][1]:.4f}" if hist else "—",
                    help="Measured before that step's update, as the demo prints it: step 0 is the fresh model.")
        m[2].metric("accuracy" + last, f"{100 * hist[-1][2]:.0f}%" if hist else "—")
        m[3].metric("next learning rate", f"{learning_rate(len(hist)):.3f}" if len(hist) < N_STEPS else "—")
        left, right = st.columns(2)
        with left:
            st.plotly_chart(mv.curves_figure(hist), key="mg_curves", width="stretch")
        with right:
            xs, ys, Z = decision_grid(model, X)
            st.plotly_chart(mv.boundary_figure(xs, ys, Z, X, y, state.get(mv.MG_POINT, 0)), key="mg_boundary",
                            width="stretch")

    live_training()

    # --- one datapoint through the net, folded into neurons --------------------------------
    st.subheader("One datapoint through the net")
    model = state.get(mv.MG_MODEL)
    d1, d2, d3 = st.columns([1, 1, 2])
    point = d1.number_input("Datapoint", min_value=0, max_value=len(X) - 1, step=1, key=mv.MG_POINT,
                            help="Circled on the decision boundary.")
    level = d2.segmented_control("Fold into", ["neurons", "layers"], default="neurons", key=mv.MG_LEVEL,
                                 required=True)
    layer_names, neuron_names = mlp_names(model)
    layers = list(layer_names.values()) if level == "layers" else []  # folded into neurons: all open
    openable = [None] + layers + list(neuron_names.values())
    expand = d3.selectbox("Open one neuron" + (" or layer" if layers else ""), openable, key=mv.MG_EXPAND,
                          format_func=lambda n: "none" if n is None else n)
    score = datapoint_score(model, X[point])
    records = build_graph(score, model=model)
    shown = collapse(records, budget=300, expand=expand, level=level)
    dot = to_dot(shown)
    st.caption(f"x = ({X[point, 0]:.3f}, {X[point, 1]:.3f}), label y = {y[point]:+d}, score = {score.data:.4f}: "
               f"{records.total:,} Values drawn as {len(shown.nodes)} boxes. A neuron box holds w·x + b and "
               "its ReLU, and shows its output's data and d score / d output as grad. An opened neuron is a "
               "chain of 16 multiply-adds: the chart's fullscreen button or the DOT file reads best."
               + (" It shows the model as it was when training last paused." if state.get(mv.MG_TRAINING) else ""))
    mv.graph_chart(dot, "datapoint")
    mv.downloads(dot, f"micrograd-datapoint-{point}", "mg_moons")
