"""
The micrograd page in a real browser: the graph is laid out (SVG nodes exist), the neuron
shows the lecture's grads after Backward, Step advances the step-through, and the moons tab
draws the folded network. A screenshot is saved for a person to look at.
"""

import time

import pytest
from browser import chromium_page, need_browser, streamlit_server, wait_idle
from playwright.sync_api import TimeoutError as PlaywrightTimeout

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


def test_graph_backward_step_and_moons(tmp_path):
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

        # the moons tab: the network folded into neuron boxes, and the two charts
        page.get_by_role("tab", name="An MLP on two moons").click()
        wait_for_node(page, "L3.N1 linear", nth=1)
        assert len(svg_texts(page, 1)) == 35
        page.get_by_role("button", name="One step").click()
        page.get_by_text("0.8958").first.wait_for(timeout=30_000)
        assert page.locator(".js-plotly-plot").count() == 2
        page.screenshot(path=str(tmp_path / "micrograd-moons.png"), full_page=True)
        print("screenshots in", tmp_path)
        assert not errors, errors
