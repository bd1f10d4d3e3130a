"""
Presentation mode in a real browser at a projector's 1280x720: a live chart at least 300 px tall
above the fold seconds after Start, its labels >= 14 px and drawn as text, the diagnosis beside it,
the buttons with their words. Screenshots are saved for a person to look at.
"""

import time

import pytest
from browser import chromium_page, need_browser, no_exception_on_page, streamlit_server
from test_browser_live import panel_box

pytestmark = pytest.mark.browser

FOLD = 720


def test_a_projector_sees_the_live_chart_and_the_diagnosis_without_scrolling(tmp_path, screenshot_dir):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1280, FOLD) as (page, errors):
        page.goto(f"{url}/activations?model=mlp&preset=raw&steps=1000000&capture_every=100&present=1")
        page.get_by_role("button", name="Start").click()
        t0 = time.time()
        # the worker loads torch and the data first (a few seconds; longer on a busy machine)
        page.wait_for_function("() => document.querySelector('svg[data-panel=\"loss\"]')", timeout=30_000)
        seconds = time.time() - t0
        box = panel_box(page, "loss")
        assert box["top"] < FOLD and box["height"] >= 300, box
        assert box["top"] + 300 <= FOLD, box                 # at least 300 px of it in view, not just its top
        assert box["ticks"] >= 3 and box["tick_px"] >= 14, box   # drawn as <text>, >= 14 px on screen
        # the diagnosis beside the chart, above the fold
        page.locator("strong", has_text="The softmax is confidently wrong").first.wait_for(timeout=30_000)
        diag = page.get_by_text("Diagnosis", exact=True).first.bounding_box()
        assert diag["x"] >= box["right"] - 1 and diag["y"] < FOLD, (diag, box)
        # compact controls, but the buttons keep their words, above the fold
        for name in ("Start", "Pause", "Stop"):
            b = page.get_by_role("button", name=name)
            assert b.count() == 1 and b.inner_text().split()[-1] == name   # its word after its icon
            assert b.bounding_box()["y"] + b.bounding_box()["height"] <= FOLD
        assert not page.get_by_text("Model", exact=True).is_visible()   # the scenario is folded away
        no_exception_on_page(page)
        page.screenshot(path=str(screenshot_dir / "present-1280x720-live.png"))
        print(f"the loss chart appeared {seconds:.1f} s after Start")

        # paused: the still view's Plotly charts keep projector-sized labels
        page.get_by_role("button", name="Pause").click()
        page.get_by_role("button", name="Resume").wait_for(timeout=30_000)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .xtick text').length > 0",
                               timeout=30_000)
        sizes = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot .xtick text')]
                                       .map(t => parseFloat(getComputedStyle(t).fontSize))""")
        assert min(sizes) >= 14, sizes
        page.screenshot(path=str(screenshot_dir / "present-1280x720-paused.png"))
        page.get_by_role("button", name="Stop").click()
        assert errors == []
