"""
The MLP page (lecture 3) in a real browser, on makemore's names.txt: the dataset rows,
the learning-rate sweep and its suggestion, then training with the 2-D embedding
redrawn while the model learns. Screenshots are saved for a person to look at.
"""

import json
import time

import pytest
from browser import chromium_page, need_browser, no_exception_on_page, streamlit_server, wait_idle

pytestmark = pytest.mark.browser


def embedding_points(page):
    """The embedding scatter as the browser has it: {character: (x, y)}, or None before it is drawn."""
    raw = page.evaluate("""() => {
        // plotly wraps the title in <b>; a refresh can leave the previous chart mounted for a moment
        const p = [...document.querySelectorAll('.js-plotly-plot')].filter(
            p => p.offsetParent !== null && p.layout && p.layout.title &&
                 String(p.layout.title.text).includes('the embedding C')).pop();
        if (!p) return null;
        return JSON.stringify(p.data.map(t => [t.text, t.x, t.y]));
    }""")
    if raw is None:
        return None
    return {ch: (x, y) for text, xs, ys in json.loads(raw) for ch, x, y in zip(text, xs, ys)}


def test_sweep_then_train_and_watch_the_embedding_move(tmp_path, screenshot_dir, names_path):
    need_browser()
    with streamlit_server(tmp_path) as url, chromium_page(1400, 4600) as (page, errors):
        page.goto(f"{url}/mlp?data={names_path}&steps=1000000")
        page.get_by_text("... ---> e").first.wait_for(timeout=60_000)
        assert page.get_by_text("is 182,625 × 3").count() > 0          # the lecture's Xtr on names.txt
        wait_idle(page)
        page.get_by_role("button", name="Sweep the learning rate").click()
        page.get_by_text("The smoothed loss is lowest at lre").wait_for(timeout=120_000)
        wait_idle(page)
        page.get_by_role("button", name="Start").click()
        page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(
            p => p.layout && p.layout.title && String(p.layout.title.text).includes('the embedding C'))""",
                               timeout=90_000)
        first = embedding_points(page)
        t0, second = time.time(), first
        while second == first and time.time() - t0 < 60:               # the worker saves every ~2 s
            time.sleep(1)
            second = embedding_points(page)
        assert first and second and len(second) == 27
        assert first != second                                          # redrawn while it trains
        no_exception_on_page(page)
        page.screenshot(path=str(screenshot_dir / "mlp-training.png"), full_page=True)
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("stopped").first.wait_for(timeout=20_000)
        wait_idle(page)
        no_exception_on_page(page)
        assert errors == []
