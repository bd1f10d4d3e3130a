"""
The micrograd page in a real browser: the graph is laid out (SVG nodes exist), the neuron
shows the lecture's grads after Backward, Step advances the step-through; the moons MLP trains in a
worker while its graph's labels change and its nodes stay put, the graph follows a typed or clicked
datapoint, and Step writes a weight's update with the engine's numbers. Screenshots are saved in the
test's tmp folder for a person to look at.
"""

import time

import pytest
from browser import chromium_page, need_browser, streamlit_server, wait_idle
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from core.micrograd.live import MoonsTrainer, param_names

pytestmark = pytest.mark.browser


def svg_texts(page, nth=0):
    """ the text of every node of the nth graphviz chart, as the browser drew it """
    return page.evaluate("""(nth) => {
        const svgs = [...document.querySelectorAll('[data-testid="stGraphVizChart"] svg')];
        const svg = svgs[nth];
        return svg ? [...svg.querySelectorAll('g.node')].map(g => g.textContent.replace(/\\s+/g, ' ').trim()) : [];
    }""", nth)


def step_to(page, k):
    """Press Step until the page says "Step k of 5": a click that lands while the previous click's
    rerun is still running can be dropped by Streamlit, so it is pressed again (never past k)."""
    for _ in range(4):
        wait_idle(page)
        if page.get_by_text(f"Step {k} of 5").count():
            return
        page.get_by_role("button", name="Step", exact=True).click()
        try:
            page.get_by_text(f"Step {k} of 5").wait_for(timeout=8_000)
            return
        except PlaywrightTimeout:
            if page.get_by_text(f"Step {k + 1} of 5").count():
                raise AssertionError(f"stepped past {k}") from None
    raise AssertionError(f"never reached Step {k} of 5")


def wait_for_node(page, needle, nth=0, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(needle in t for t in svg_texts(page, nth)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no graph node with {needle!r}; nodes: {svg_texts(page, nth)[:12]}")


def test_graph_backward_step_and_play(tmp_path):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1400, 1100) as (page, errors):
        page.goto(f"{url}/micrograd")
        page.wait_for_selector('[data-testid="stGraphVizChart"] svg g.node', timeout=60_000)
        assert len(svg_texts(page)) == 10  # L = (a*b + c) * f: 7 values and 3 ops
        wait_for_node(page, "L data -8.0000")

        # the neuron: pick it, Backward, read the lecture's grads on the graph
        page.get_by_label("Lecture example").click()
        page.keyboard.type("neuron: o = tanh")
        page.keyboard.press("Enter")
        wait_for_node(page, "x1w1x2w2")
        page.get_by_role("button", name="Backward").click()
        for grads in ("x1 data 2.0000 grad -1.5000", "w1 data -3.0000 grad 1.0000",
                      "x2 data 0.0000 grad 0.5000", "w2 data 1.0000 grad 0.0000"):
            wait_for_node(page, grads)

        # step through backward: each Step moves on one node, shown in red
        step_to(page, 0)
        step_to(page, 1)
        wait_for_node(page, "n data 0.8814 grad 0.5000")
        wait_for_node(page, "x1 data 2.0000 grad 0.0000")  # not reached yet
        assert page.locator('[data-testid="stGraphVizChart"] svg g.node [stroke="red"]').count() >= 1
        page.screenshot(path=str(tmp_path / "micrograd-step.png"), full_page=True)
        page.get_by_role("button", name="Play").click()  # the timer moves on by itself to the last node
        page.get_by_text("Step 5 of 5").wait_for(timeout=20_000)
        page.get_by_role("button", name="Play").wait_for(timeout=10_000)  # and stops there
        wait_for_node(page, "x1 data 2.0000 grad -1.5000")

        print("screenshots in", tmp_path)
        assert not errors, errors

# -----------------------------------------------------------------------------
# the moons MLP, live


GRAPH_STATE = """(sel) => { const s = document.querySelector(sel); if (!s) return null;
    const nodes = {}, edges = {};
    for (const g of s.querySelectorAll('g[data-node]')) {
        const c = g.querySelector('circle');
        nodes[g.dataset.node] = {pos: g.getAttribute('transform') || (c.getAttribute('cx') + ' ' + c.getAttribute('cy')),
                                 text: g.textContent};
    }
    for (const p of s.querySelectorAll('path.w')) edges[p.dataset.w] = {d: p.getAttribute('d'),
                                                                      width: p.getAttribute('stroke-width')};
    return {step: +s.dataset.step, phase: s.dataset.phase, point: +(s.dataset.point || -1), nodes, edges}; }"""


def graph_state(page, sel="svg.mg-graph"):
    return page.evaluate(GRAPH_STATE, sel)


def wait_graph(page, js, timeout=60_000):
    page.wait_for_function(f"() => {{ const s = document.querySelector('svg.mg-graph'); return s && ({js}); }}",
                           timeout=timeout)


def open_moons(page, url, **query):
    page.goto(f"{url}/micrograd")
    page.get_by_role("tab", name="An MLP on two moons").click()
    page.wait_for_selector("svg.mg-graph", timeout=60_000)
    wait_idle(page)


def pick(page, label, value):
    page.get_by_label(label).click()
    page.keyboard.type(value)
    page.keyboard.press("Enter")
    wait_idle(page)


def click_datapoint(page, i):
    """Click datapoint i on the decision boundary (an SVG circle) and wait for the graph to follow it."""
    page.locator(f"svg.mg-boundary circle[data-pick='{i}']").click()
    wait_graph(page, f"s.dataset.point === '{i}'", timeout=10_000)


def test_live_graph_labels_change_while_every_node_stays_put(tmp_path):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1400, 1000) as (page, errors):
        open_moons(page, url)
        page.get_by_role("button", name="Train").click()
        wait_graph(page, "+s.dataset.step >= 3")
        a, la = graph_state(page), graph_state(page, "svg.mg-layers")
        wait_graph(page, f"+s.dataset.step >= {a['step'] + 2}")
        b, lb = graph_state(page), graph_state(page, "svg.mg-layers")
        assert len(a["nodes"]) == 35 and len(a["edges"]) == 304
        assert {n: v["pos"] for n, v in a["nodes"].items()} == {n: v["pos"] for n, v in b["nodes"].items()}
        assert {n: v["pos"] for n, v in la["nodes"].items()} == {n: v["pos"] for n, v in lb["nodes"].items()}
        assert {w: e["d"] for w, e in a["edges"].items()} == {w: e["d"] for w, e in b["edges"].items()}
        changed = [n for n in a["nodes"] if n.startswith("L") and a["nodes"][n]["text"] != b["nodes"][n]["text"]]
        assert len(changed) >= 20, changed  # the labels are the numbers of a new step
        assert sum(a["edges"][w]["width"] != b["edges"][w]["width"] for w in a["edges"]) > 100
        page.screenshot(path=str(tmp_path / "moons-live-1400.png"))

        # the graph follows a new datapoint while training goes on: typed, then clicked on the boundary
        box = page.get_by_role("spinbutton", name="Datapoint")
        box.fill("42")
        box.press("Enter")
        wait_graph(page, "s.dataset.point === '42'")
        step = graph_state(page)["step"]
        wait_graph(page, f"+s.dataset.step > {step}")  # still training
        click_datapoint(page, 63)
        time.sleep(2.5)  # a dozen live frames later the click still stands: the box's old value never wins it back
        assert page.locator("svg.mg-boundary").get_attribute("data-point") == "63"
        assert page.locator("svg.mg-graph").get_attribute("data-point") == "63" and box.input_value() == "63"
        assert not errors, errors


def test_step_writes_the_weights_update_with_the_engines_numbers_and_apply_moves_the_boundary(tmp_path):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1280, 720) as (page, errors):
        open_moons(page, url)
        pick(page, "Weight to follow through Step", "L2.N3.w5")
        page.get_by_role("button", name="Step").click()
        wait_graph(page, "s.dataset.phase === 'backward'")
        t = MoonsTrainer()
        t.backward()
        p = t.params[param_names((2, 16, 16, 1)).index("L2.N3.w5")]
        line = f"# L2.N3.w5.data = {p.data:.6f} - {1.0:.6f} * {p.grad:.6f} = {p.data - 1.0 * p.grad:.6f}"
        page.get_by_text(line).wait_for(timeout=10_000)
        label = page.locator("svg.mg-graph text.update").text_content()
        assert f"L2.N3.w5 (the black dashed edge) {p.data:.6f} → {p.data - 1.0 * p.grad:.6f}" in label
        page.get_by_text("backward() is done").scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "moons-step-1280.png"))
        boundary = page.locator("svg.mg-boundary image").get_attribute("href")
        before = graph_state(page)
        wait_idle(page)
        page.get_by_role("button", name="Apply").click()
        wait_graph(page, "+s.dataset.step === 1 && s.dataset.phase === 'applied'")
        t.apply()
        after = graph_state(page)
        assert after["edges"]["L2.N3.w5"]["width"] != before["edges"]["L2.N3.w5"]["width"] or p.data == 0
        assert page.locator("svg.mg-boundary image").get_attribute("href") != boundary  # the boundary moved
        # the picture in fullscreen: the graph fills the screen's width, its labels stay page text
        page.locator("button[data-fullscreen]").click()
        page.wait_for_function("() => document.fullscreenElement && document.fullscreenElement.querySelector('svg.mg-graph')")
        page.screenshot(path=str(tmp_path / "moons-fullscreen-1280.png"))
        assert not errors, errors
