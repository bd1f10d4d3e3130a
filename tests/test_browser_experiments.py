"""
The Experiments page in a real browser: a spec typed into the page starts a real experiment (a coordinator
process, worker runs); the table and plots fill in live; the test split is evaluated once and a reload (a new
session) shows the recorded number and no button; a trial opens in the Activations & gradients view.
"""

import re

import pytest
from browser import chromium_page, need_browser, no_exception_on_page, streamlit_server, wait_idle
from conftest import data_dir_env

from core.experiments import study as studies

pytestmark = pytest.mark.browser

TINY = """name = "page-tiny"
model = "mlp"
preset = "kaiming"
trials = 3
goal = 2.9
[fixed]
steps = 300
[space]
lr = {log = [0.05, 0.5]}
n_hidden = [50, 100]
"""


def shoot(page, name):
    """The page at a desktop size and at a projector's 1280x720, top and scrolled down, into /tmp for a person."""
    for w, h in ((1400, 1000), (1280, 720)):
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_timeout(500)
        page.screenshot(path=f"/tmp/experiments-{name}-{w}x{h}.png")
        page.mouse.move(w // 2, h // 2)
        page.mouse.wheel(0, 900)
        page.wait_for_timeout(500)
        page.screenshot(path=f"/tmp/experiments-{name}-{w}x{h}-down.png")
        page.mouse.wheel(0, -5000)
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_define_start_watch_evaluate_once_and_open_a_trial(tmp_path, names_path):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page() as (page, errors):
        page.goto(f"{url}/experiments?data={names_path}")
        wait_idle(page, 60)
        page.get_by_text("No experiment yet").wait_for(timeout=30_000)
        # a bad spec: one line naming the line, nothing started
        area = page.locator("textarea").first
        area.fill(TINY.replace("n_hidden = [50, 100]", "n_hiden = [50, 100]"))
        area.press("Control+Enter")
        wait_idle(page)
        page.get_by_role("button", name="Start").click()
        page.get_by_text(re.compile(r"the spec line 10: unknown hyperparameter 'n_hiden'")).wait_for(timeout=30_000)
        assert not (tmp_path / "experiments" / "page-tiny").exists()
        area.fill(TINY)
        area.press("Control+Enter")
        wait_idle(page)
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(re.compile(r"experiment=page-tiny"), timeout=30_000)
        page.get_by_text(re.compile(r"^(starting|running)$")).first.wait_for(timeout=30_000)
        shoot(page, "running")
        # live: the trials arrive without a reload, the table sorted by dev loss
        page.get_by_text("3 of 3").wait_for(timeout=180_000)
        page.locator("[data-testid='stMetricValue']", has_text="finished").wait_for(timeout=60_000)
        wait_idle(page)
        shoot(page, "finished")
        with data_dir_env(tmp_path):  # read the study the page's coordinator wrote
            s = studies.summary("page-tiny")
        assert s["status"] == "finished" and len(s["trials"]) == 3 and s["best"] is not None
        assert page.locator(".js-plotly-plot").count() >= 3  # dev loss vs each knob, parallel coordinates, curves
        # the test split, once: the warning, the number, then a reload shows the record and no button
        page.get_by_text("look at it once").first.wait_for(timeout=10_000)
        page.get_by_role("button", name="Evaluate the best trial on test, once").click()
        page.get_by_text(re.compile(r"computed once at .* and recorded")).wait_for(timeout=60_000)
        with data_dir_env(tmp_path):
            first = studies.summary("page-tiny")["test"]
        assert first["trial"] == s["best"]["number"]
        page.reload()
        wait_idle(page, 60)
        page.get_by_text(re.compile(r"computed once at .* and recorded")).wait_for(timeout=60_000)
        assert page.get_by_role("button", name="Evaluate the best trial on test, once").count() == 0
        with data_dir_env(tmp_path):
            assert studies.summary("page-tiny")["test"] == first  # not computed again
        # open the best trial with every panel
        page.get_by_role("button", name="Open in Activations & gradients").click()
        page.wait_for_url(re.compile(rf"/activations\?.*run={s['best']['run']}"), timeout=30_000)
        wait_idle(page, 60)
        no_exception_on_page(page)
        assert errors == []
