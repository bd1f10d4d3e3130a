"""
The diagnosis as a learner reads it in a real browser: a run at learning rate 1e6 is called a
blow-up with "lower the learning rate", a Kaiming run stays green, and the deep stack's fixes
name its own layers and gain.
"""

import re

import pytest
from browser import chromium_page, need_browser, no_exception_on_page, streamlit_server, wait_idle

pytestmark = pytest.mark.browser


def run_to_the_end(page, url, query, steps):
    page.goto(f"{url}/activations?{query}&steps={steps}")
    wait_idle(page)
    page.get_by_role("button", name="Start").click()
    # the status line: "name · `finished` · step N of N"
    page.get_by_text(re.compile(rf"finished · step {steps:,} of {steps:,}")).first.wait_for(timeout=120_000)
    # the once-a-second part of the page draws the finished run's findings on its next tick; the heading
    # says which capture they read: the last one
    page.get_by_text(re.compile(rf"Diagnosis.*step {steps - 1:,}\b")).first.wait_for(timeout=30_000)
    wait_idle(page)
    no_exception_on_page(page)
    return page.locator("[data-testid='stAlert']").all_inner_texts()


def test_the_diagnosis_a_learner_reads(tmp_path, screenshot_dir):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1400, 2400) as (page, errors):
        alerts = run_to_the_end(page, url, "model=mlp&preset=kaiming&lr=1000000&capture_every=50", 400)
        text = "\n".join(alerts)
        assert "The loss blew up" in text and "Lower the learning rate" in text, text
        assert "Raise the learning rate" not in text
        page.screenshot(path=str(screenshot_dir / "diagnosis-blowup.png"), full_page=True)

        alerts = run_to_the_end(page, url, "model=mlp&preset=kaiming&capture_every=100", 2000)
        text = "\n".join(alerts)
        assert "tanh layers are in their active range" in text and "Update:data ratios are near" in text, text
        assert "saturated" not in text.replace("saturated (|t| > 0.97)", ""), text   # green, not yellow
        assert "preset 'kaiming'" not in text

        alerts = run_to_the_end(page, url, "model=deep&preset=deep-tanh&gain=3&capture_every=1", 1)
        text = "\n".join(alerts)
        assert "tanh units are saturated" in text and "'0 Linear.weight'" in text and "now 3.00" in text, text
        assert "W1" not in text and "preset 'kaiming'" not in text
        page.screenshot(path=str(screenshot_dir / "diagnosis-deep-gain-3.png"), full_page=True)
        assert errors == []
