"""
The WaveNet and GPT pages in a real browser: the layer table before a run; a short GPT run whose
generated text and attention maps appear while it trains. Screenshots are saved for a person to look at.
"""

import pytest
from browser import chromium_page, need_browser, no_exception_on_page, streamlit_server, wait_idle

pytestmark = pytest.mark.browser


def test_wavenet_table_then_a_gpt_run_with_text_and_attention(tmp_path, screenshot_dir):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1400, 3000) as (page, errors):
        page.goto(f"{url}/wavenet?preset=hierarchical")
        page.get_by_text("FlattenConsecutive    : (32, 4, 20)").first.wait_for(timeout=90_000)
        wait_idle(page, 90)
        no_exception_on_page(page)
        page.screenshot(path=str(screenshot_dir / "wavenet-before-a-run.png"), full_page=True)

        page.goto(f"{url}/gpt?preset=four-heads&steps=400&capture_every=100")
        page.get_by_text("per 1,000 steps").first.wait_for(timeout=90_000)
        wait_idle(page, 90)
        page.get_by_role("button", name="Start").click()
        page.get_by_text("Generated at step 0").first.wait_for(timeout=120_000)
        # the attention maps: one Plotly figure with a heatmap per head and the grey mask layer
        page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(
            p => p.data && p.data.filter(t => t.type === 'heatmap').length === 8)""", timeout=120_000)
        page.locator("text=/finished · step 400 of 400/").first.wait_for(timeout=300_000)
        page.get_by_text("Generated at step 400").first.wait_for(timeout=60_000)
        wait_idle(page, 90)
        no_exception_on_page(page)
        page.screenshot(path=str(screenshot_dir / "gpt-four-heads-finished.png"), full_page=True)
        assert errors == []
