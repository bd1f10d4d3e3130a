import streamlit as st

from core.micrograd.graph import backward_order, build_graph, collapse, to_dot
from core.micrograd.live import neuron_names, param_names
from core.micrograd.parse import PRESETS, ExpressionError, free_names, parse_expression, slope_check
from core.runs.db import LIVE_STATES
from dashboard import state
from dashboard.ui import live
from dashboard.ui import micrograd_view as mv
from dashboard.ui.registry import manager

st.title("micrograd")
st.caption("Lecture 1 · *The spelled-out intro to neural networks and backpropagation: building micrograd*. "
           "A scalar autograd engine you can watch: build an expression, run backward() node by node, "
           "then watch the demo's little MLP learn two moons, its graph live.")
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
# ② the demo notebook: MLP(2, [16, 16, 1]) on two moons, trained by a worker while the graph follows one datapoint
def moons_part():
    st.caption("micrograd's demo: 100 points from make_moons (noise 0.1, seed 1337), `MLP(2, [16, 16, 1])` with "
               "`random.seed(1337)` (337 parameters), the SVM max-margin loss `relu(1 - y·score)` plus 1e-4·L2, and "
               "100 steps of SGD with `lr = 1.0 - 0.9·k/100`: the first loss is 0.8958 at 50% accuracy, by step 100 "
               "every point is right. Or AdamW on the same grads. A worker process trains it; this page watches.")
    row = mv.moons_run()
    live_now = row is not None and row["state"] in LIVE_STATES
    f = mv.current_frame(row)
    live.show_flash()

    # --- controls: the next run's optimizer, then the run's buttons --------------------------
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.segmented_control("Optimizer", ["sgd", "adamw"], key=mv.MG_OPT, required=True, on_change=mv.on_optimizer,
                             format_func={"sgd": "SGD (micrograd)", "adamw": "AdamW"}.get,
                             help="For the next Train or Step on a fresh model. AdamW: torch.optim.AdamW's update, "
                                  "betas (0.9, 0.999), weight decay 1e-4 instead of the L2 term.")
        st.number_input("lr", key=mv.MG_LR, min_value=1e-6, max_value=100.0, format="%.4g", step=None, width=90,
                        help="SGD: the first step's rate, decayed as the demo does. AdamW: constant.")
        st.number_input("steps", key=mv.MG_STEPS, min_value=1, max_value=100_000, step=50, width=100)
        if live_now and row["state"] != "paused":
            st.button("Pause", key="mg_live_pause", on_click=mv.moons_pause, icon=":material/pause:")
        else:
            st.button("Resume" if live_now else "Train", key="mg_live_train", on_click=mv.moons_train, type="primary",
                      icon=":material/play_arrow:")
        st.button("Step", key="mg_live_step", on_click=mv.moons_step, icon=":material/skip_next:",
                  help="One step in two halves: forward and backward() now, then the run waits and shows "
                       "p.data -= lr * p.grad for the weight you pick; Apply does the update.")
        st.button("Apply", key="mg_live_apply", on_click=mv.moons_apply, icon=":material/check:",
                  help="Do the update Step showed, for every parameter, then wait again.",
                  disabled=not (live_now and f["phase"] == "backward"))
        st.button("New model", key="mg_live_new", on_click=mv.moons_new, icon=":material/restart_alt:",
                  disabled=row is None)
    c1, c2, c3 = st.columns([1, 1, 1])
    mv.sync_point()
    c1.number_input("Datapoint (or click it on the boundary)", min_value=0, max_value=99, step=1,
                    key=mv.MG_POINT, on_change=mv.on_point)
    sizes = tuple(int(s) for s in f["sizes"])
    c2.selectbox("Open a neuron", [None] + neuron_names(sizes), key=mv.MG_EXPAND,
                 format_func=lambda n: "none" if n is None else n)
    c3.selectbox("Weight to follow through Step", param_names(sizes), key=mv.MG_WEIGHT)

    d = live.run_data(row["id"]) if row is not None else None
    if d is not None:
        live.keep_alive([d])
    ticking = d is not None and live.needs_ticks(d)

    # --- the datapoint's graph, the boundary and the whole net, live ---------------------------
    @st.fragment(run_every=mv.FRAME_EVERY if ticking else None)
    def live_graph():
        r = mv.moons_run()
        if r is not None and r["state"] in LIVE_STATES:
            manager().db.heartbeat(r["id"])  # a watched run keeps training; an orphaned one stops
        if ticking and not live.needs_ticks(live.run_data(r["id"])):
            st.rerun()  # it paused or ended: a full rerun stops the timer and redraws the buttons
        if state.get(mv.MG_PICKED):
            st.rerun()  # a datapoint was clicked on the boundary: the whole page follows it
        f = mv.current_frame(r)
        weight = state.get(mv.MG_WEIGHT)
        st.markdown(mv.status_line(f, r))
        if f["phase"] == "backward":
            mv.update_panel(f, weight)
        mv.live_picture(f, state.get(mv.MG_FOLLOW), state.get(mv.MG_EXPAND), weight)

    live_graph()

    # --- the opened neuron, the curves and every parameter (every 2 s: tables cost the browser the most) ---
    @st.fragment(run_every=mv.SLOW_EVERY if ticking else None)
    def details():
        f = mv.current_frame(mv.moons_run())
        left, right = st.columns([1, 1])
        with left:
            if state.get(mv.MG_EXPAND):
                mv.neuron_detail(f, state.get(mv.MG_FOLLOW), state.get(mv.MG_EXPAND))
            else:
                st.info("Open a neuron above to see its sum b + Σ w·x term by term, as micrograd's graph holds it.",
                        icon=":material/account_tree:")
        with right:
            mv.curves_svg(f)
        st.subheader("Every parameter")
        sort = st.selectbox("Order", list(mv.SORTS), key=mv.MG_SORT)
        mv.param_table(f, sort)
        st.caption("grad: of the last backward(). change: what the last update did (the 10 largest |change| are "
                   "highlighted). " + ("m, v: AdamW's first and second moments. " if f["optimizer"] == "adamw" else "")
                   + "Click a column's header to sort by it.")

    details()


with moons_tab:
    moons_part()
