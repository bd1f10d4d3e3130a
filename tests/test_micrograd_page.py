"""
The micrograd page driven headless with AppTest through the real router: presets,
Forward / Backward / Zero grad, the step-through, typed expressions, the moons MLP.
AppTest never fires run_every by itself, so a tick of Play or of training is another .run().
"""

import re

import pytest
from apptest import USE_DATA_DIR
from apptest import page as app_page

from core.micrograd.graph import dot_program

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
    assert "Step" not in text(at) and box("x1", "2.0000", "0.0000") in dot(at)


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
    assert metric(at, "steps done") == "0 / 100"  # the moons tab is still there


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
# the moons MLP


def metric(at, label):
    return next(m.value for m in at.metric if m.label.startswith(label))


def test_moons_first_step_prints_the_demos_first_loss_then_trains_live():
    at = click(page(), "mg_train_step")
    assert metric(at, "loss at step 0") == "0.8958" and metric(at, "accuracy at step 0") == "50%"
    assert metric(at, "steps done") == "1 / 100"
    click(at, "mg_train")
    done = int(metric(at, "steps done").split()[0])
    at.run()  # a tick of the live fragment
    ok(at)
    assert int(metric(at, "steps done").split()[0]) > done > 1
    click(at, "mg_train_pause")
    paused = metric(at, "steps done")
    at.run()
    assert metric(at, "steps done") == paused  # paused: reruns do not train
    assert len(at.get("plotly_chart")) == 2  # curves and decision boundary


def test_moons_datapoint_graph_folds_and_expands():
    at = page()
    g = dot(at, 1)
    assert "L3.N1 linear\\n32 values" in g and g.count("ReLU\\n") == 32
    assert any("979 Values drawn as 35 boxes" in c.value for c in at.caption)
    at.selectbox(key="mg_expand").set_value("L2.N3").run()
    ok(at)
    assert any("979 Values drawn as 84 boxes" in c.value for c in at.caption)
    at.selectbox(key="mg_expand").set_value(None).run()
    at.segmented_control(key="mg_level").set_value("layers").run()
    ok(at)
    assert "L2: 16 neurons | 528 values" in dot(at, 1)
    at.number_input(key="mg_point").set_value(7).run()
    ok(at)
    assert any("979 Values drawn as 5 boxes" in c.value for c in at.caption)
