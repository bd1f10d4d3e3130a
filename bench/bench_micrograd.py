"""
Lecture 1's engine and pictures, timed:
  1. a 1,000,000-deep chain: forward and backward complete (no recursion), and how long;
  2. forward + backward of the demo's 100-point moons loss (~66k nodes), against the PyPI
     `micrograd` package in the same process (target: ours >= 1.0x as fast);
  3. building DOT for one datapoint through MLP(2, [16, 16, 1]) (979 nodes) and for its
     folded view (35 nodes);
  4. a real headless Chromium drawing the moons tab's live graph for a new datapoint (target <= 1 s):
     from pressing Enter on its number (rerun included). The live view while training is
     bench_micrograd_live.py's.

    python bench/bench_micrograd.py [--repeat 5] [--no-browser]
"""

import argparse
import gc
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import micrograd.engine  # noqa: E402
import micrograd.nn  # noqa: E402
from browser import chromium_page, streamlit_server  # noqa: E402

from core.micrograd.engine import Value, gc_paused, topological_order  # noqa: E402
from core.micrograd.graph import build_graph, collapse, to_dot  # noqa: E402
from core.micrograd.moons import datapoint_score, demo_model, make_moons, moons_loss  # noqa: E402


def timed(fn, repeat):
    """ best and median seconds of `repeat` calls """
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


def chain(n=1_000_000):
    x = Value(0.5)
    v = x
    t0 = time.perf_counter()
    with gc_paused():
        for _ in range(n):
            v = v.relu()
    t1 = time.perf_counter()
    v.backward()
    t2 = time.perf_counter()
    assert x.grad == 1 and v.data == 0.5
    del v
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def moons(repeat):
    X, y = make_moons()
    ours = demo_model()
    random.seed(1337)
    theirs = micrograd.nn.MLP(2, [16, 16, 1])

    def step(model, value):
        loss, acc = moons_loss(model, X, y, value=value)  # the same loss code for both; gc paused for both
        model.zero_grad()
        loss.backward()
        return loss
    a, b = step(ours, Value), step(theirs, micrograd.engine.Value)
    assert a.data == b.data, (a.data, b.data)  # the same numbers: the same model, the same data
    nodes = len(topological_order(a))
    del a, b
    gc.collect()
    times = {"ours": [], "micrograd 0.1.0": []}
    for _ in range(repeat):  # interleaved, so a busy moment on a shared machine hits both alike
        for name, model, value in [("ours", ours, Value), ("micrograd 0.1.0", theirs, micrograd.engine.Value)]:
            t0 = time.perf_counter()
            step(model, value)
            times[name].append(time.perf_counter() - t0)
            gc.collect()  # micrograd's graphs are reference cycles: collect them outside the timing
    return nodes, {k: (min(v), statistics.median(v)) for k, v in times.items()}


def dot_times(repeat):
    X, y = make_moons()
    model = demo_model()
    score = datapoint_score(model, X[0])
    records = build_graph(score, model=model)
    assert records.total == 979
    full = timed(lambda: to_dot(build_graph(score, model=model)), repeat)
    folded = timed(lambda: to_dot(collapse(build_graph(score, model=model))), repeat)
    return full, folded, len(collapse(records).nodes)


def browser_render(points=(1, 2, 3, 4, 5)):
    """ seconds from typing a new datapoint number to the live picture's graph drawn for it (the moons tab's
    SVG, its L3.N1 box holding that datapoint's score), and from the rerun's output reaching the page """
    X, y = make_moons()
    model = demo_model()
    expected = {i: f"L3.N1  score = {datapoint_score(model, X[i]).data:.4f}" for i in points}
    captions = {i: f"Datapoint {i}: x = " for i in points}
    times = []
    with tempfile.TemporaryDirectory() as d, streamlit_server(d) as url, chromium_page(1400, 1100) as (page, errors):
        page.goto(f"{url}/micrograd")
        page.get_by_role("tab", name="An MLP on two moons").click()
        page.wait_for_selector("svg.mg-graph", timeout=60_000)
        time.sleep(2)  # let the first drawing of both tabs settle
        box = page.get_by_role("spinbutton", name="Datapoint")
        for i in points:
            # in the page: when the rerun's note arrives, and when the graph shows the new datapoint's score
            page.evaluate("""([needle, caption]) => {
                window.__t = {};
                const seen = () => {
                    const now = performance.now();
                    if (!window.__t.caption && document.body.innerText.includes(caption)) window.__t.caption = now;
                    const s = document.querySelector('svg.mg-graph');
                    if (!window.__t.svg && s && [...s.querySelectorAll('g.node')].some(
                            g => g.textContent.includes(needle)))
                        window.__t.svg = now;
                };
                if (window.__obs) window.__obs.disconnect();
                window.__obs = new MutationObserver(seen);
                window.__obs.observe(document.body, {subtree: true, childList: true, characterData: true});
                window.__t.start = performance.now();
            }""", [expected[i], captions[i]])
            box.fill(str(i))
            box.press("Enter")
            page.wait_for_function("() => window.__t.svg && window.__t.caption", timeout=30_000)
            t = page.evaluate("() => window.__t")
            times.append(((t["svg"] - t["start"]) / 1000, (t["svg"] - t["caption"]) / 1000))
        assert not errors, errors
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {args.repeat} repeats")

    fwd, bwd, free = chain()
    print(f"1,000,000-deep chain of relu: forward {fwd:.2f} s, backward {bwd:.2f} s, freeing {free:.2f} s")

    nodes, r = moons(args.repeat)
    ours, theirs = r["ours"], r["micrograd 0.1.0"]
    print(f"moons loss forward+backward ({nodes:,} nodes): ours best {ours[0]*1e3:.0f} ms (median "
          f"{ours[1]*1e3:.0f}), micrograd 0.1.0 best {theirs[0]*1e3:.0f} ms (median {theirs[1]*1e3:.0f}): "
          f"{theirs[0] / ours[0]:.2f}x (best), {theirs[1] / ours[1]:.2f}x (median)")

    full, folded, n_folded = dot_times(args.repeat)
    print(f"DOT of one datapoint (979 values): build_graph + to_dot best {full[0]*1e3:.1f} ms "
          f"(median {full[1]*1e3:.1f}); folded to {n_folded} boxes: best {folded[0]*1e3:.1f} ms "
          f"(median {folded[1]*1e3:.1f})")

    if not args.no_browser:
        times = browser_render()
        total, draw = [t[0] for t in times], [t[1] for t in times]
        print(f"browser, the live graph of a new datapoint: {', '.join(f'{t:.2f}' for t in total)} s from typing "
              f"the number (median {statistics.median(total):.2f}); its note and its graph arrive within "
              f"{max(abs(t) for t in draw):.2f} s of each other")


if __name__ == "__main__":
    main()
