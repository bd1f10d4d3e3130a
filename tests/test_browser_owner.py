"""
Who may stop a run, in real browsers: the browser that started it, also after a reload (a new
Streamlit session); another browser opening the same link may watch it but not stop it.
"""

import re
import time

import pytest
from browser import ARGS, CHROMIUM, need_browser, no_exception_on_page, streamlit_server, wait_idle
from playwright.sync_api import sync_playwright

pytestmark = pytest.mark.browser


def state_of(page):
    return page.locator("code").filter(has_text=re.compile(r"^(running|paused|stopped|finished|starting)$")) \
        .first.inner_text(timeout=30_000)


def test_the_starting_browser_keeps_stop_across_a_reload_and_another_browser_cannot(tmp_path):
    need_browser()
    with streamlit_server(tmp_path) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # two browser contexts: two browsers as far as the server can tell (their own cookies)
        a, b = (browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2))
        errors_a, errors_b = [], []
        a.on("pageerror", lambda e: errors_a.append(str(e)))
        b.on("pageerror", lambda e: errors_b.append(str(e)))
        a.goto(f"{url}/activations?model=mlp&preset=kaiming&steps=1000000")
        wait_idle(a)
        a.get_by_role("button", name="Start").click()
        a.wait_for_url(re.compile(r"run=[0-9a-f]+"), timeout=30_000)
        a.locator("code", has_text=re.compile("^running$")).first.wait_for(timeout=60_000)
        link = a.url
        b.goto(link)                       # another learner opens the same link
        b.get_by_text(re.compile(r"· step [0-9,]+ of")).first.wait_for(timeout=30_000)
        wait_idle(b)
        stop_b = b.get_by_role("button", name="Stop")
        if stop_b.is_enabled():
            stop_b.click()
            b.get_by_text("belongs to another browser session").first.wait_for(timeout=10_000)
        time.sleep(2)
        assert state_of(a) == "running"
        a.reload()                         # a new session in the same browser: still its run
        a.get_by_text(re.compile(r"· step [0-9,]+ of")).first.wait_for(timeout=30_000)
        wait_idle(a)
        a.get_by_role("button", name="Stop").click()
        a.get_by_text("stopped by the user").first.wait_for(timeout=15_000)
        no_exception_on_page(a)
        assert errors_a == [] and errors_b == []
        browser.close()
