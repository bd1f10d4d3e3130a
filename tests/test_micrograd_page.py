"""
The micrograd page driven headless with AppTest through the real router: presets,
Forward / Backward / Zero grad, the step-through, typed expressions, and the moons MLP trained by
a real worker process (Train, Pause, Step, Apply, New model, AdamW's table against torch).
AppTest never fires run_every by itself, so a tick of Play or of the live graph is another .run().
"""

import json
import math
import re
import time

import numpy as np
import pytest
import torch
from apptest import USE_DATA_DIR, manager
from apptest import page as app_page

from core.micrograd.graph import dot_program
from core.micrograd.live import MoonsConfig, MoonsTrainer, param_names

pytestmark = USE_DATA_DIR
NEURON = "neuron: o = tanh(x1*w1 + x2*w2 + b)"


def page(preset=None):
    at = app_page("micrograd")
    if preset:
        at.selectbox(key="mg_preset").set_value(preset).run()
        ok(at)
    return at


def ok(at):
    assert not at.exception, at.exception


def pending(at):
    """An update waits, and Apply is enabled for it. Not the status alone: the buttons are drawn from the frame the
    script read at its top, the status from the one its live part read a moment later (a busy machine's worker
    can write the pending frame between the two: Apply comes one run later)."""
    return "update pending" in moons_status(at) and not at.button(key="mg_live_apply").disabled


def click(at, key):
    at.button(key=key).click().run()
    ok(at)
    return at


def dot(at, i=0):
    return at.get("graphviz_chart")[i].proto.spec


def box(label, data, grad):
    return f"{label} | {{ data {data} | grad {grad} }}"


def text(at):
    return "\n".join(m.value for m in at.markdown)


def codes(at):
    return [c.value for c in at.code]


def buttons(at):
    return [b.key for b in at.button]

# -----------------------------------------------------------------------------
# the expression


def test_page_opens_on_the_lectures_first_graph():
    at = page()
    assert at.title[0].value == "micrograd" and "Lecture 1" in at.caption[0].value
    g = dot(at)
    assert box("L", "-8.0000", "0.0000") in g and box("a", "2.0000", "0.0000") in g
    assert sorted(n.label for n in at.number_input if n.key.startswith("mg_val_")) == ["a", "b", "c", "f"]
    click(at, "mg_backward")
    g = dot(at)
    assert box("a", "2.0000", "6.0000") in g and box("f", "-2.0000", "4.0000") in g
    assert box("L", "-8.0000", "1.0000") in g


def test_neuron_preset_backward_shows_the_lectures_grads():
    at = click(page(NEURON), "mg_backward")
    g = dot(at)
    for label, data, grad in [("x1", "2.0000", "-1.5000"), ("w1", "-3.0000", "1.0000"), ("x2", "0.0000", "0.5000"),
                              ("w2", "1.0000", "0.0000"), ("o", "0.7071", "1.0000"), ("n", "0.8814", "0.5000")]:
        assert box(label, data, grad) in g, label
    assert re.search(r'"\{ w1 \|[^"]*" fillcolor=khaki', g) and re.search(r'"\{ x1 \|[^"]*" fillcolor=lightblue', g)
    assert "**o = 0.7071** · backward passes on this graph: **1**" in text(at)


def test_backward_twice_accumulates_and_zero_grad_clears():
    at = click(click(page(NEURON), "mg_backward"), "mg_backward")
    assert any("ran 2 times" in w.value for w in at.warning)
    assert box("n", "0.8814", "1.0000") in dot(at)     # 0.5 + 0.5: backward() adds to what is there
    click(at, "mg_zero")
    assert not at.warning and box("x1", "2.0000", "0.0000") in dot(at) and box("o", "0.7071", "0.0000") in dot(at)


def test_forward_with_a_new_value_keeps_the_leaves_grads():
    at = click(page(NEURON), "mg_backward")
    at.number_input(key="mg_val_x1").set_value(1.0).run()
    ok(at)
    g = dot(at)
    assert box("x1", "1.0000", "-1.5000") in g     # the same leaf, its grad untouched
    assert box("n", "3.8814", "0.0000") in g       # a new node from the new forward pass
    assert any("kept their grads" in i.value for i in at.info)


def test_step_through_the_neuron_node_by_node():
    at = click(page(NEURON), "mg_step_btn")
    assert "Step 0 of 5" in text(at) and "`o.grad = 1`" in text(at)
    assert re.search(r"\tv9 \[.* color=red", dot(at))  # the output is where backward starts
    click(at, "mg_step_btn")
    assert "Step 1 of 5" in text(at)
    assert "self.grad += (1 - t**2) * out.grad" in codes(at)
    assert "n.grad += (1 - t**2) * o.grad  # t = o.data = 0.7071" in codes(at)
    g = dot(at)
    assert re.search(r"\tv9 \[.* color=red", g) and re.search(r"\tv8 \[.* color=blue", g)
    assert box("n", "0.8814", "0.5000") in g and box("x1", "2.0000", "0.0000") in g  # x1 not reached yet
    for _ in range(4):
        click(at, "mg_step_btn")
    assert "Step 5 of 5" in text(at) and any("Done" in s.value for s in at.success)
    assert at.button(key="mg_step_btn").disabled
    assert box("x1", "2.0000", "-1.5000") in dot(at) and box("w2", "1.0000", "0.0000") in dot(at)
    click(at, "mg_reset")
    assert not re.search(r"\*\*Step \d+ of", text(at)) and box("x1", "2.0000", "0.0000") in dot(at)


def test_step_through_after_backward_starts_from_zero_grads():
    at = click(click(click(page(NEURON), "mg_backward"), "mg_step_btn"), "mg_step_btn")
    assert box("n", "0.8814", "0.5000") in dot(at)  # not 1.0: the step-through zeroed the grads first


def test_a_plus_a_shows_the_plus_equals_twice():
    at = click(click(page("a + a (why backward uses +=)"), "mg_step_btn"), "mg_step_btn")
    assert "a.grad += b.grad\na.grad += b.grad" in codes(at)
    assert "reached twice in this one step" in text(at)
    assert box("a", "3.0000", "2.0000") in dot(at)
    assert dot(at).count("v0 -> v1_op") == 2


def test_tanh_through_exp_shows_a_node_reached_before():
    at = page("neuron, tanh written with exp")
    for _ in range(4):  # step 0, then o = _2 / _3, _3 = e + 1, _2 = e - 1: e's second +=
        click(at, "mg_step_btn")
    assert "Step 3 of 9" in text(at) and not any("o.grad / _3.data" in c for c in codes(at))  # step 1's rule is gone
    assert "e.grad += _2.grad\n1.grad -= _2.grad" in codes(at)
    assert "reached before: `+=` adds to the grad it already had" in text(at)


def test_play_advances_one_node_per_tick_then_stops():
    at = click(page(NEURON), "mg_play")
    assert "Step 0 of 5" in text(at) and "mg_pause" in buttons(at) and "mg_play" not in buttons(at)
    for k in range(1, 6):
        at.run()  # a tick of the fragment's timer
        ok(at)
        assert f"Step {k} of 5" in text(at)
    assert "mg_play" in buttons(at) and "mg_pause" not in buttons(at) and box("w1", "-3.0000", "1.0000") in dot(at)


def test_typed_expression_with_its_own_values():
    at = page()
    at.text_area(key="mg_text").input("y = relu(p*q) + p**2").run()
    ok(at)
    assert sorted(n.label for n in at.number_input if n.key.startswith("mg_val_")) == ["p", "q"]
    at.number_input(key="mg_val_p").set_value(3.0).run()
    at.number_input(key="mg_val_q").set_value(2.0).run()
    click(at, "mg_backward")
    g = dot(at)
    assert box("y", "15.0000", "1.0000") in g
    assert box("p", "3.0000", "8.0000") in g and box("q", "2.0000", "3.0000") in g
    assert 'label="**2"' in g  # a whole exponent reads as in the lecture
    assert any("Your own expression" in c.value for c in at.caption)


@pytest.mark.parametrize("bad, message", [
    ("__import__('os').system('ls')", "only these functions can be called"),
    ("a.__class__", "attributes"),
    ("a ** b", "exponent must be a plain number"),
    ("log(a - 2)", "outside its domain"),  # a is still 2 from the first example: log(0)
])
def test_bad_expressions_show_the_parsers_message_not_a_traceback(bad, message):
    at = page()
    at.text_area(key="mg_text").input(bad).run()
    ok(at)
    assert len(at.error) == 1 and message in at.error[0].value
    assert "step **0** of 100" in moons_status(at)  # the moons tab is still there


def test_nudge_compares_the_slope_with_grad():
    at = page()
    m = next(m.value for m in at.markdown if "(L(x + h) − L(x)) / h" in m.value)
    assert "**6.000000** · backward() says dL/da = **6.000000**" in m


def test_downloads_dot_and_says_where_svg_needs_dot():
    at = page()
    labels = [b.label for b in at.get("download_button")]
    needs_dot = any("needs Graphviz's `dot` program" in c.value for c in at.caption)
    assert "Download DOT" in labels
    assert ("Download SVG" in labels, needs_dot) == ((True, False) if dot_program() else (False, True))

# -----------------------------------------------------------------------------
# the moons MLP: a worker trains it, the page shows its frames


def moons_status(at):
    return next((m.value for m in at.markdown if " · step **" in m.value and "of" in m.value), "")


def graph(at):
    """ the live picture's HTML (the graph, the boundary, the whole net), as the page sends it to the browser """
    return json.loads(at.get("bidi_component")[0].proto.json)


def tick_until(at, pred, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        time.sleep(0.2)
        at.run()  # a tick of the live fragments
        ok(at)
        if pred(at):
            return at
    raise AssertionError(f"timed out; status: {moons_status(at)}")


def table(at):
    return next(d.value for d in at.dataframe if "parameter" in d.value.columns)


def test_moons_opens_on_the_fresh_demo_model_without_a_run():
    at = page()
    assert "step **0** of 100" in moons_status(at) and "fresh model" in moons_status(at)
    g = graph(at)
    assert "data-step='0'" in g and g.count("class='node'") == 2 + 33
    assert g.count("class='w'") == 2 * (32 + 256 + 16)  # every weight an edge, in the graph and in the whole net
    assert g.count("data-pick=") == 100  # every datapoint on the boundary can be clicked
    assert at.button(key="mg_live_apply").disabled and at.button(key="mg_live_new").disabled
    t = table(at)
    assert len(t) == 337 and list(t.columns[:5]) == ["#", "parameter", "value", "grad", "change"]


def test_train_runs_in_a_worker_and_pause_holds_it():
    at = click(page(), "mg_live_train")
    run = manager().db.get_run(at.query_params["run"])
    assert run["spec"]["model"] == "micrograd" and run["spec"]["train"]["optimizer"] == "sgd"
    tick_until(at, lambda at: int(re.search(r"step \*\*(\d+)\*\*", moons_status(at)).group(1)) >= 3)
    assert "loss **" in moons_status(at) and "running" in moons_status(at)
    click(at, "mg_live_pause")
    tick_until(at, lambda at: "paused" in moons_status(at))
    k = moons_status(at)
    time.sleep(1)
    at.run()
    assert moons_status(at) == k and "mg_live_train" in buttons(at)  # paused: Resume, and no steps
    assert at.button(key="mg_live_train").label == "Resume"
    click(at, "mg_live_new")
    assert "fresh model" in moons_status(at)


def test_step_shows_the_update_with_the_engines_numbers_then_apply_moves_the_boundary():
    at = page()
    at.selectbox(key="mg_weight").set_value("L2.N3.w5").run()
    click(at, "mg_live_step")  # a fresh run, held after its first backward()
    tick_until(at, pending)
    t = MoonsTrainer()
    t.backward()
    i = param_names((2, 16, 16, 1)).index("L2.N3.w5")
    p = t.params[i]
    line = f"# L2.N3.w5.data = {p.data:.6f} - {1.0:.6f} * {p.grad:.6f} = {p.data - 1.0 * p.grad:.6f}"
    assert any(line in c for c in codes(at)), codes(at)
    assert "data-phase='backward'" in graph(at) and "L2.N3.w5" in graph(at)
    boundary = re.search(r"<image href='([^']+)'", graph(at)).group(1)  # the sign of the score on the grid
    click(at, "mg_live_apply")
    tick_until(at, lambda at: "step **1** of" in moons_status(at) and "pending" not in moons_status(at))
    t.apply()
    row = table(at).set_index("parameter").loc["L2.N3.w5"]
    assert row["value"] == p.data and row["change"] == t.delta[i] != 0  # the engine's own numbers, to the bit
    assert re.search(r"<image href='([^']+)'", graph(at)).group(1) != boundary  # the boundary moved with the update


def test_adamw_table_moments_equal_torch_adamw_in_double():
    at = page()
    at.segmented_control(key="mg_opt").set_value("adamw").run()
    assert at.number_input(key="mg_lr").value == 0.03
    click(at, "mg_live_step")
    tick_until(at, pending)
    click(at, "mg_live_apply")
    tick_until(at, lambda at: "step **1** of" in moons_status(at) and "pending" not in moons_status(at))
    click(at, "mg_live_step")
    tick_until(at, pending)
    click(at, "mg_live_apply")
    tick_until(at, lambda at: "step **2** of" in moons_status(at) and "pending" not in moons_status(at))
    t = table(at).set_index("parameter")
    # the oracle: torch's AdamW in double on the same parameters, fed the engine's grads
    eng = MoonsTrainer(MoonsConfig(optimizer="adamw"))
    ref = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in eng.params]
    opt = torch.optim.AdamW(ref, lr=0.03, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4, foreach=False)
    for _ in range(2):
        eng.backward()
        for r, p in zip(ref, eng.params):
            r.grad = torch.tensor(float(p.grad), dtype=torch.float64)
        opt.step()
        eng.apply()
    names = param_names((2, 16, 16, 1))
    m = np.array([opt.state[r]["exp_avg"].item() for r in ref])
    v = np.array([opt.state[r]["exp_avg_sq"].item() for r in ref])
    assert np.allclose(t.loc[names, "m"].to_numpy(), m, rtol=1e-12, atol=0)
    assert np.allclose(t.loc[names, "v"].to_numpy(), v, rtol=1e-12, atol=0)
    assert np.allclose(t.loc[names, "value"].to_numpy(), [r.item() for r in ref], rtol=1e-12, atol=1e-15)
    assert (t["m"] != 0).sum() > 300


def test_datapoint_neuron_and_order_controls():
    at = page()
    at.number_input(key="mg_point").set_value(7).run()
    ok(at)
    assert "data-point='7'" in graph(at)
    at.selectbox(key="mg_expand").set_value("L2.N3").run()
    ok(at)
    assert "stroke='#111' stroke-width='2.5'" in graph(at) and any("**L2.N3** for datapoint 7" in m.value
                                                                    for m in at.markdown)
    detail = next(d.value for d in at.dataframe if "term" in d.value.columns)
    assert detail["term"].tolist()[:2] == ["w1 · L1.N1", "w2 · L1.N2"] and detail["term"].tolist()[-1] == "b"
    # the oracle: the engine's own neuron on datapoint 7 (the fresh demo model)
    t = MoonsTrainer()
    h1 = [n(list(map(float, t.X[7]))).data for n in t.model.layers[0].neurons]
    n3 = t.model.layers[1].neurons[2]
    assert np.allclose(detail["x"].tolist()[:16], h1, rtol=1e-12, atol=1e-15)
    assert np.allclose(detail["w"].tolist(), [p.data for p in n3.parameters()])
    act = sum((w.data * x for w, x in zip(n3.w, h1)), n3.b.data)
    assert math.isclose(detail["w·x"].sum(), act, rel_tol=1e-9) and f"w·x+b = **{act:.4f}**" in text(at)
    at.selectbox(key="mg_sort").set_value("natural order (L1.N1.w1 ...)").run()
    names = table(at)["parameter"].tolist()
    assert names[:4] == ["L1.N1.w1", "L1.N1.w2", "L1.N1.b", "L1.N2.w1"] and names.index("L1.N10.w1") > names.index(
        "L1.N9.b")  # natural: N9 before N10
