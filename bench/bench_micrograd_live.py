"""
The micrograd page's live view of the moons MLP, measured in a real headless Chromium as
bench_live.py measures the Activations page:
  1. frames per second of the datapoint's graph while a worker trains (target >= 5): how many new
     pictures (a new step in svg.mg-graph's data-step) the browser shows per second;
  2. the worker's steps/s with the page open against the same run with nobody watching
     (target >= 0.90), and the CPU each role spends, read from /proc, per frame;
  3. the time from pressing Step (or Apply update) to its frame on the page (target <= 0.5 s).

    python bench/bench_micrograd_live.py [--seconds 15] [--rounds 3] [--steps-latency 5]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_live import cpu_by_role, heartbeats, median  # noqa: E402
from browser import chromium_page, streamlit_server, wait_idle  # noqa: E402

from core.runs.manager import RunManager  # noqa: E402

SPEC = {"model": "micrograd", "preset": "sgd", "page": "micrograd", "train": {"optimizer": "sgd", "steps": 100_000}}

# counts the new pictures of the live graph: each distinct data-step the page shows (checked every 20 ms)
COUNT_FRAMES = """() => { window.__frames = 0; let last = null; setInterval(() => {
    const s = document.querySelector('svg.mg-graph');
    if (s && s.dataset.step !== last) { last = s.dataset.step; window.__frames++; } }, 20); }"""

# the time of a button's click in the page, and of the first frame after it that satisfies a condition
WATCH_CLICK = """([label, cond]) => { window.__t = {};
    document.addEventListener('click', e => { if (!window.__t.click && e.target.closest('button') &&
        e.target.closest('button').innerText.includes(label)) window.__t.click = performance.now(); }, true);
    const check = () => { const s = document.querySelector('svg.mg-graph');
        if (window.__t.click && !window.__t.frame && s && new Function('s', 'return ' + cond)(s))
            window.__t.frame = performance.now(); };
    if (window.__obs) window.__obs.disconnect();
    window.__obs = new MutationObserver(check);
    window.__obs.observe(document.body, {subtree: true, childList: true, attributes: true}); }"""


def wait_running(mgr, run_id, timeout=180):
    t0 = time.time()
    while mgr.db.get_run(run_id)["state"] != "running":
        if time.time() - t0 > timeout:
            raise TimeoutError(f"run {run_id} is {mgr.db.get_run(run_id)['state']} after {timeout} s")
        time.sleep(0.2)
    return mgr.db.get_run(run_id)["pid"]


def rate(mgr, run_id, seconds, page=None):
    """(steps/s, {role: share of a core}, frames/s) of a training run over `seconds`, after a 3 s warm-up"""
    pid = wait_running(mgr, run_id)
    time.sleep(3)
    if page is not None:
        page.evaluate(COUNT_FRAMES)
    s0, t0, c0 = mgr.db.get_run(run_id)["step"], time.time(), cpu_by_role(pid)
    time.sleep(seconds)
    s1, t1, c1 = mgr.db.get_run(run_id)["step"], time.time(), cpu_by_role(pid)
    frames = page.evaluate("() => window.__frames") if page is not None else 0
    return (s1 - s0) / (t1 - t0), {k: (c1[k] - c0[k]) / (t1 - t0) for k in c0}, frames / (t1 - t0)


def open_page(page, url, run_id):
    page.goto(f"{url}/micrograd?run={run_id}")
    page.get_by_role("tab", name="An MLP on two moons").click()
    page.wait_for_selector("svg.mg-graph", timeout=180_000)


def click_to_frame(page, label, cond):
    """seconds from clicking `label` to the first picture where `cond` (JS on the svg `s`) holds"""
    wait_idle(page)
    page.evaluate(WATCH_CLICK, [label, cond])
    page.get_by_role("button", name=label).click()
    page.wait_for_function("() => window.__t.frame", timeout=30_000)
    t = page.evaluate("() => window.__t")
    return (t["frame"] - t["click"]) / 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps-latency", type=int, default=5, help="Step/Apply pairs timed")
    args = ap.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="zth-bench-mg-"))
    steps = {"headless": [], "watched": []}
    cpu = {"headless": [], "watched": []}
    fps, latency = [], {"Step": [], "Apply": []}
    load = [os.getloadavg()[0]]
    with streamlit_server(data_dir) as url:
        mgr = RunManager(data_dir / "runs.sqlite")
        for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both alike
            run_id = mgr.start(SPEC, "headless")
            with heartbeats(mgr.db_path, run_id):
                r, c, _ = rate(mgr, run_id, args.seconds)
            steps["headless"].append(r)
            cpu["headless"].append(c)
            mgr.stop(run_id)
            run_id = mgr.start(SPEC, "watched")
            with heartbeats(mgr.db_path, run_id), chromium_page(1400, 1000) as (page, errors):
                open_page(page, url, run_id)
                r, c, f = rate(mgr, run_id, args.seconds, page)
                steps["watched"].append(r)
                cpu["watched"].append(c)
                fps.append(f)
                assert not errors, errors
            mgr.stop(run_id)
            load.append(os.getloadavg()[0])

        # Step -> its frame: the page's own run, paused after each Apply
        with chromium_page(1400, 1000) as (page, errors):
            page.goto(f"{url}/micrograd")
            page.get_by_role("tab", name="An MLP on two moons").click()
            page.wait_for_selector("svg.mg-graph", timeout=60_000)
            page.get_by_role("button", name="Step").click()  # the first one also starts the worker: not timed
            page.wait_for_function("() => document.querySelector('svg.mg-graph').dataset.phase === 'backward'",
                                   timeout=120_000)
            page.get_by_role("button", name="Apply").click()
            for k in range(1, args.steps_latency + 1):
                page.wait_for_function(f"() => document.querySelector('svg.mg-graph').dataset.step === '{k}'",
                                       timeout=30_000)
                latency["Step"].append(click_to_frame(page, "Step", f"s.dataset.step === '{k}' && "
                                                                    "s.dataset.phase === 'backward'"))
                latency["Apply"].append(click_to_frame(page, "Apply",
                                                              f"s.dataset.step === '{k + 1}'"))
            assert not errors, errors
        mgr.stop_all()

    h, w = median(steps["headless"]), median(steps["watched"])
    print(f"micrograd moons MLP (SGD), {os.cpu_count()} cores, 1-min load during the run {min(load):.1f}-{max(load):.1f}")
    print(f"live graph: {median(fps):.1f} frames/s in the browser (rounds: {', '.join(f'{x:.1f}' for x in fps)}; "
          "target >= 5)")
    print(f"headless worker: {h:.2f} steps/s (rounds: {', '.join(f'{x:.2f}' for x in steps['headless'])})")
    print(f"watched worker:  {w:.2f} steps/s (rounds: {', '.join(f'{x:.2f}' for x in steps['watched'])})")
    print(f"watched / headless: {w / h:.2f}  (target >= 0.90)")
    for phase in ("headless", "watched"):
        print(f"CPU, share of one core (median of rounds), {phase}: " + ", ".join(
            f"{role} {median([c[role] for c in cpu[phase]]):.2f}" for role in ("browser", "server", "worker")))
    print("CPU ms per frame: " + ", ".join(
        f"{role} {median([1000 * c[role] / max(f, 1e-9) for c, f in zip(cpu['watched'], fps)]):.0f}"
        for role in ("browser", "server")))
    for label, ts in latency.items():
        print(f"{label} -> its frame: median {statistics.median(ts):.2f} s, max {max(ts):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in ts)}; target <= 0.5 s)")


if __name__ == "__main__":
    main()
