"""
The README's pictures, from real runs in a real browser: the Activations & gradients page in
presentation mode at a projector's 1280x720, a few seconds into the lecture's raw MLP, and
micrograd's graph of the lecture's neuron after backward(). Run it after changing those pages and
commit the two pictures it writes (256-colour PNGs, well under 200 KB each):

    python bench/screenshots.py [--out docs] [--seconds 12]

It starts the dashboard on a free port with a throwaway runs file and drives Debian's chromium
through tests/browser.py, as the browser tests do.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium_page, streamlit_server, wait_idle  # noqa: E402

MAX_BYTES = 200_000  # pictures that live in git stay small


def live_page(url, path, seconds):
    """The lecture's raw MLP training live, as a projector shows it: loss, diagnosis, controls."""
    with chromium_page(1280, 720) as (page, errors):
        page.goto(f"{url}/activations?model=mlp&preset=raw&steps=1000000&capture_every=100&present=1")
        wait_idle(page, 90)
        page.get_by_role("button", name="Start").click()
        page.wait_for_selector("svg[data-panel='act']", timeout=90_000)  # the first capture is drawn
        page.locator("strong", has_text="The softmax is confidently wrong").first.wait_for(timeout=30_000)
        time.sleep(seconds)  # let the loss fall for a while: the picture is of a run, not of its first step
        page.screenshot(path=str(path))
        page.get_by_role("button", name="Stop").click()
        if errors:
            raise RuntimeError(f"the page raised: {errors}")


def micrograd_graph(url, path):
    """Lecture 1's neuron, o = tanh(x1*w1 + x2*w2 + b), after backward(): every node's data and grad."""
    with chromium_page(1280, 1000) as (page, errors):
        page.goto(f"{url}/micrograd")
        page.wait_for_selector('[data-testid="stGraphVizChart"] svg g.node', timeout=90_000)
        wait_idle(page, 90)
        page.get_by_label("Lecture example").click()
        page.keyboard.type("neuron: o = tanh")
        page.keyboard.press("Enter")
        page.locator('[data-testid="stGraphVizChart"] svg g.node', has_text="x1w1x2w2").first.wait_for(
            timeout=30_000)
        wait_idle(page, 30)
        page.get_by_role("button", name="Backward").click()
        page.locator('[data-testid="stGraphVizChart"] svg g.node', has_text="grad -1.5000").first.wait_for(
            timeout=30_000)
        wait_idle(page, 30)
        page.locator('[data-testid="stGraphVizChart"]').first.screenshot(path=str(path))
        if errors:
            raise RuntimeError(f"the page raised: {errors}")


def shrink(path, width):
    """At most `width` px wide, 256 colours: a page of flat colours and text loses nothing visible."""
    img = Image.open(path).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise RuntimeError(f"{path} is {size:,} bytes, over {MAX_BYTES:,}: make it smaller before committing it")
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for the pictures (default: docs/)")
    ap.add_argument("--seconds", type=float, default=12, help="how long the run trains before its picture")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir, streamlit_server(data_dir) as url:
        live_page(url, out / "live-page.png", args.seconds)
        micrograd_graph(url, out / "micrograd-graph.png")
    for name, width in (("live-page.png", 1280), ("micrograd-graph.png", 900)):
        print(f"{out / name}: {shrink(out / name, width):,} bytes")


if __name__ == "__main__":
    main()
