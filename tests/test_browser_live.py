"""
The live page in a real browser: Start, watch the step and the histograms change,
pause, reload and find the same run, stop. Screenshots are saved for a person to look at.
"""

import re
import time

import pytest
from browser import chromium_page, need_browser, no_exception_on_page, streamlit_server

pytestmark = pytest.mark.browser


def shown_step(page):
    text = page.locator("text=/· step [0-9,]+ of/").first.inner_text(timeout=30_000)
    return int(re.search(r"step ([0-9,]+) of", text).group(1).replace(",", ""))


# the live panels are one server-drawn SVG, inline in the page
PANELS = """() => [...document.querySelectorAll('svg[data-panel]')]"""


def live_panels(page):
    return page.evaluate(f"() => ({PANELS})().map(s => s.getAttribute('data-panel'))")


def act_chart_data(page):
    # the activation histogram panel as the browser has it: its title carries the capture's step,
    # its lines the histogram's points
    return page.evaluate(f"""() => {{
        const s = ({PANELS})().find(s => s.getAttribute('data-panel') === 'act');
        if (!s) return null;
        return {{title: s.querySelector('text').textContent,
                 lines: [...s.querySelectorAll('path[fill="none"][stroke-width="2"]')]
                        .map(p => p.getAttribute('d')).join('|')}};
    }}""")


def panel_box(page, name):
    """A live panel's box on screen and the size its tick labels are drawn at, in CSS px (the SVG is
    scaled to its column: font-size times the scale)."""
    return page.evaluate(f"""() => {{
        const s = ({PANELS})().find(s => s.getAttribute('data-panel') === '{name}');
        if (!s) return null;
        const r = s.getBoundingClientRect();
        const ticks = [...s.querySelectorAll('text[text-anchor="end"]')];
        const px = ticks.map(t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a);
        return {{top: r.top, height: r.height, left: r.left, right: r.right, tick_px: Math.min(...px),
                 ticks: ticks.length}};
    }}""")


def test_start_watch_pause_reload_stop(tmp_path, screenshot_dir):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1400, 3000) as (page, errors):
        page.goto(f"{url}/activations?model=mlp&preset=raw&steps=1000000&capture_every=100")
        page.get_by_role("button", name="Start").click()
        first = shown_step(page)
        page.wait_for_function(f"() => ({PANELS})().filter(s => ['act', 'ud'].includes("
                               "s.getAttribute('data-panel'))).length == 2", timeout=30_000)
        assert live_panels(page) == ["loss", "ud", "act", "agrad", "wgrad", "raster"]
        box = panel_box(page, "loss")   # readable without presentation mode: ~13 px labels, ~300 px tall
        assert box["ticks"] >= 3 and box["tick_px"] >= 12 and box["height"] >= 280, box
        h1 = act_chart_data(page)
        time.sleep(3)
        second = shown_step(page)
        h2 = act_chart_data(page)
        assert second > first                      # the step shown advances while training runs
        assert h1 and h2 and h1["title"] != h2["title"]   # the panel shows a newer capture
        assert h1["lines"] != h2["lines"]                  # and the histogram lines moved with it
        assert page.get_by_text("The softmax is confidently wrong").count() > 0
        assert page.get_by_text("tanh units are saturated").count() > 0
        no_exception_on_page(page)
        page.screenshot(path=str(screenshot_dir / "live-raw-running.png"), full_page=True)
        # samples while it trains: the worker answers in ~0.2 s and the refreshing part of the page shows them
        page.get_by_role("button", name="Sample 10 names").click()
        page.get_by_text(re.compile(r"at step [0-9,]+, eval mode")).first.wait_for(timeout=10_000)
        assert page.get_by_role("button", name="Pause").count() == 1   # still training, not paused
        page.get_by_role("button", name="Pause").click()
        page.get_by_role("button", name="Resume").wait_for(timeout=30_000)   # a busy machine reruns slowly
        time.sleep(1.5)
        paused_at = shown_step(page)
        run_id = re.search(r"run=([0-9a-f]+)", page.url).group(1)
        page.reload()                               # a reload is a new session: it must re-attach
        page.get_by_text(f"run {run_id}").first.wait_for(timeout=30_000)
        assert abs(shown_step(page) - paused_at) <= 1 and page.get_by_text("`paused`").count() == 0
        assert page.get_by_text("paused").count() > 0
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("stopped").first.wait_for(timeout=10_000)
        page.wait_for_timeout(1500)
        no_exception_on_page(page)
        assert page.locator(".js-plotly-plot").count() >= 5   # stopped: every panel on its own, zoomable
        page.screenshot(path=str(screenshot_dir / "live-raw-stopped.png"), full_page=True)
        # the sidebar's shared settings are on this page too
        assert page.get_by_text("Dataset").count() > 0
        assert errors == []
