"""
Throughput of a live run: the worker's steps/s with nobody watching, against the same
run while a real headless Chromium shows the "Activations & gradients" page refreshing
once a second. Target: watched >= 90% of headless on a 2-core machine.

Beside the ratio it prints what watching costs, in CPU time per second of wall time for each
role (the Chromium processes, the Streamlit server, the worker) read from /proc: that figure
drifts far less than steps/s when other jobs share the machine.

    python bench/bench_live.py [--seconds 15] [--rounds 3] [--preset raw] [--capture-every 100]
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from core.runs.db import RunDB  # noqa: E402
from core.runs.manager import RunManager  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# -----------------------------------------------------------------------------
# CPU time by role, from /proc


def _procs():
    """{pid: (ppid, cmdline, cpu seconds)} of every process we can read."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(p)] = (int(fields[1]), cmd, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def cpu_by_role(worker_pid):
    """CPU seconds so far of this benchmark's children, by role: browser, server, worker."""
    procs = _procs()
    kids = {}
    for pid, (ppid, _, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)

    def tree(pid):
        todo, seen = [pid], 0.0
        while todo:
            p = todo.pop()
            seen += procs[p][2] if p in procs else 0.0
            todo += kids.get(p, [])
        return seen

    roles = {"browser": 0.0, "server": 0.0, "worker": tree(worker_pid)}
    for pid in kids.get(os.getpid(), []):
        cmd = procs[pid][1]
        if "streamlit" in cmd:
            roles["server"] += tree(pid)
        elif "playwright" in cmd or "chrom" in cmd or "node" in cmd:
            roles["browser"] += tree(pid)
    return roles


# -----------------------------------------------------------------------------
# the measurement


# counts the page's refreshes: how often the status line's step changes (textContent: no layout)
COUNT_TICKS = """() => { window.__ticks = 0; let last = null; setInterval(() => {
    const m = [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')]
        .map(e => e.textContent.match(/· step ([0-9,]+) of/)).find(m => m);
    if (m && m[1] !== last) { last = m[1]; window.__ticks++; } }, 200); }"""


@contextmanager
def heartbeats(db_path, run_id):
    """Heartbeats for a run from a thread, so it keeps training while a slow page loads (a worker
    nobody watches for 30 s stops itself)."""
    done = threading.Event()

    def beat():
        db = RunDB(db_path)
        while not done.wait(0.5):
            db.heartbeat(run_id)
        db.close()

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()


def rate(mgr, run_id, seconds, page=None):
    """(steps per second, {role: share of a core}, page refreshes) of a running run over `seconds`,
    after a warm-up."""
    t0 = time.time()
    while mgr.db.get_run(run_id)["state"] != "running":  # a busy machine can take a while to import torch
        if time.time() - t0 > 180:
            raise TimeoutError(f"run {run_id} is {mgr.db.get_run(run_id)['state']} after 180 s")
        time.sleep(0.5)
    pid = mgr.db.get_run(run_id)["pid"]
    t_end = time.time() + 3
    while time.time() < t_end:  # warm-up: torch's first steps, the page's first renders
        time.sleep(0.5)
    if page is not None:
        page.evaluate(COUNT_TICKS)
    s0, t0, c0 = mgr.db.get_run(run_id)["step"], time.time(), cpu_by_role(pid)
    while time.time() - t0 < seconds:
        time.sleep(0.5)
    s1, t1, c1 = mgr.db.get_run(run_id)["step"], time.time(), cpu_by_role(pid)
    ticks = page.evaluate("() => window.__ticks") if page is not None else 0
    return (s1 - s0) / (t1 - t0), {k: (c1[k] - c0[k]) / (t1 - t0) for k in c0}, ticks / (t1 - t0)


def median(xs):
    return sorted(xs)[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--preset", default="raw")
    ap.add_argument("--capture-every", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from browser import chromium_page, streamlit_server

    data_dir = Path(tempfile.mkdtemp(prefix="zth-bench-"))
    spec = {"model": args.model, "preset": args.preset, "model_kw": {},
            "train": {"steps": 10_000_000, "capture_every": args.capture_every}, "data": {"kind": "ssa"}}
    results = {"headless": [], "watched": []}
    cpu = {"headless": [], "watched": []}
    refresh = []
    load = [os.getloadavg()[0]]
    with streamlit_server(data_dir) as url:
        mgr = RunManager(data_dir / "runs.sqlite")
        for _ in range(args.rounds):  # alternate, so drift on the machine hits both alike
            run_id = mgr.start(spec, "headless")
            with heartbeats(mgr.db_path, run_id):
                r, c, _ = rate(mgr, run_id, args.seconds)
            results["headless"].append(r)
            cpu["headless"].append(c)
            mgr.stop(run_id)
            run_id = mgr.start(spec, "watched")
            with heartbeats(mgr.db_path, run_id), chromium_page() as (page, errors):
                page.goto(f"{url}/activations?run={run_id}&model={args.model}&preset={args.preset}")
                page.wait_for_function("() => document.body.innerText.includes('Diagnosis at step')",
                                       timeout=180_000)
                r, c, ticks = rate(mgr, run_id, args.seconds, page)
                results["watched"].append(r)
                cpu["watched"].append(c)
                refresh.append(ticks)
                assert not errors, errors
            mgr.stop(run_id)
            load.append(os.getloadavg()[0])
    h, w = median(results["headless"]), median(results["watched"])
    print(f"{args.model}/{args.preset}, capture every {args.capture_every}, {os.cpu_count()} cores, "
          f"1-min load during the run {min(load):.1f}-{max(load):.1f}")
    print(f"headless worker: {h:,.0f} steps/s  (rounds: {', '.join(f'{x:,.0f}' for x in results['headless'])})")
    print(f"watched worker:  {w:,.0f} steps/s  (rounds: {', '.join(f'{x:,.0f}' for x in results['watched'])})")
    print(f"watched / headless: {w / h:.2f}  (target >= 0.90)")
    for phase in ("headless", "watched"):
        print(f"CPU, share of one core (median of rounds), {phase}: " + ", ".join(
            f"{role} {median([c[role] for c in cpu[phase]]):.2f}" for role in ("browser", "server", "worker")))
    # the cost of one refresh, which a busy machine changes less than it changes the shares above
    print(f"page refreshes/s: {median(refresh):.2f}; CPU ms per refresh: " + ", ".join(
        f"{role} {median([1000 * c[role] / max(t, 1e-9) for c, t in zip(cpu['watched'], refresh)]):.0f}"
        for role in ("browser", "server")))


if __name__ == "__main__":
    main()
