"""
Page inputs in a real browser, where a fragment's rerun and the browser's own copy of a
field's value can disagree with the server: the lr finder's "Train at lr = ..." button must
set the learning-rate field that the browser shows and that Start sends.
"""

import re
from urllib.parse import parse_qs, urlparse

import pytest
from browser import chromium_page, need_browser, no_exception_on_page, streamlit_server, wait_idle

from core.runs.db import RunDB

pytestmark = pytest.mark.browser


def run_id_in(url, slot="run"):
    return (parse_qs(urlparse(url).query).get(slot) or [None])[0]


def test_train_at_the_suggested_lr_sets_the_field_and_start_trains_at_it(tmp_path, screenshot_dir):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1400, 3000) as (page, errors):
        page.goto(f"{url}/mlp?steps=1000000")
        page.get_by_text("... ---> e").first.wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("button", name="Sweep the learning rate").click()
        use = page.get_by_role("button", name=re.compile(r"Train at lr = "))
        use.wait_for(timeout=120_000)
        wait_idle(page)
        lr = float(use.inner_text().split("= ")[1])
        assert lr != 0.1  # the preset's own: the test would pass without the button
        use.click()
        wait_idle(page)
        page.wait_for_timeout(1000)
        wait_idle(page)
        field = page.get_by_label("learning rate", exact=True)
        assert float(field.input_value()) == pytest.approx(lr)   # what the browser shows and will send
        assert f"lr={lr:g}" in page.url
        page.get_by_role("button", name="Start", exact=True).click()
        page.wait_for_function("() => location.search.includes('run=')", timeout=30_000)
        run_id = run_id_in(page.url)
        spec = RunDB(tmp_path / "runs.sqlite").get_run(run_id)["spec"]
        assert spec["train"]["lr"] == pytest.approx(lr)
        no_exception_on_page(page)
        page.screenshot(path=str(screenshot_dir / "mlp-lr-finder-used.png"), full_page=True)
        wait_idle(page)
        page.get_by_role("button", name="Stop", exact=True).click()
        page.get_by_text("stopped").first.wait_for(timeout=20_000)
        assert errors == []
