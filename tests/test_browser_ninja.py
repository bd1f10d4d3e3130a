"""
The Backprop ninja page in a real browser, on makemore's names.txt: the lecture's numbers
are on screen, a link opens a tensor, its heatmaps are drawn, the table lists all 26 checks,
and the closed-form tab draws dlogits. A screenshot is saved for a person to look at.
"""

import pytest
from browser import chromium_page, need_browser, streamlit_server, wait_idle

pytestmark = pytest.mark.browser


def test_ninja_page_draws_the_lectures_checks(tmp_path, names_path, screenshot_dir):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1400, 2400) as (page, errors):
        page.goto(f"{url}/backprop-ninja?data={names_path}&tensor=hpreact")
        page.get_by_text("4,137 parameters").wait_for(timeout=90_000)
        page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=60_000)
        wait_idle(page)
        body = page.inner_text("body")
        assert "Its loss is 3.5571" in body
        assert "182,625 / 22,655 / 22,866 examples" in body
        assert "dhpreact = (1.0 - h**2) * dh" in body
        assert "not bit-for-bit" in body
        assert page.locator('[data-testid="stDataFrame"]').count() == 1
        page.screenshot(path=str(screenshot_dir / "ninja-tensor.png"), full_page=True)

        page.get_by_role("tab", name="Cross-entropy in one line").click()
        page.get_by_text("the correct character of each row").wait_for(timeout=30_000)
        page.screenshot(path=str(screenshot_dir / "ninja-cross-entropy.png"), full_page=True)
        assert not errors, errors
