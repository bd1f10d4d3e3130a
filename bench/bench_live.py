"""
Throughput of a live run: the worker's steps/s with nobody watching, against the same
run while a real headless Chromium shows the "Activations & gradients" page refreshing
once a second. Target: watched >= 90% of headless on a 2-core machine.

    python bench/bench_live.py [--seconds 20] [--preset raw] [--capture-every 100]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from core.worker import RunManager  # noqa: E402


def rate(mgr, run_id, seconds):
    """Steps per second of a running run over `seconds`, after it has warmed up."""
    mgr.wait(run_id, 120, states=("running",))
    t_end = time.time() + 3
    while time.time() < t_end:  # warm-up: torch's first steps, the page's first renders
        mgr.db.heartbeat(run_id)
        time.sleep(0.5)
    s0, t0 = mgr.db.get_run(run_id)["step"], time.time()
    while time.time() - t0 < seconds:
        mgr.db.heartbeat(run_id)
        time.sleep(0.5)
    s1, t1 = mgr.db.get_run(run_id)["step"], time.time()
    return (s1 - s0) / (t1 - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--preset", default="raw")
    ap.add_argument("--capture-every", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from browser import chromium_page, streamlit_server

    data_dir = Path(tempfile.mkdtemp(prefix="zth-bench-"))
    spec = {"model": args.model, "preset": args.preset, "model_kw": {},
            "train": {"steps": 10_000_000, "capture_every": args.capture_every}, "data": {"kind": "ssa"}}
    results = {"headless": [], "watched": []}
    with streamlit_server(data_dir) as url:
        mgr = RunManager(data_dir / "runs.sqlite")
        for _ in range(args.rounds):  # alternate, so drift on the machine hits both alike
            run_id = mgr.start(spec, "headless")
            results["headless"].append(rate(mgr, run_id, args.seconds))
            mgr.stop(run_id)
            run_id = mgr.start(spec, "watched")
            with chromium_page() as (page, errors):
                page.goto(f"{url}/activations?run={run_id}&model={args.model}&preset={args.preset}")
                page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 1 && document.body.innerText.includes('Diagnosis at step')",
                                       timeout=60_000)
                results["watched"].append(rate(mgr, run_id, args.seconds))
            mgr.stop(run_id)
    h = sorted(results["headless"])[len(results["headless"]) // 2]
    w = sorted(results["watched"])[len(results["watched"]) // 2]
    print(f"{args.model}/{args.preset}, capture every {args.capture_every}, {os.cpu_count()} cores")
    print(f"headless worker: {h:,.0f} steps/s  (rounds: {', '.join(f'{x:,.0f}' for x in results['headless'])})")
    print(f"watched worker:  {w:,.0f} steps/s  (rounds: {', '.join(f'{x:,.0f}' for x in results['watched'])})")
    print(f"watched / headless: {w / h:.2f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
