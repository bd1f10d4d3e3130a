"""
A dashboard server's own runs on a Ray cluster (ZTH_RAY_ADDRESS) against the same runs on local workers:
K runs of the kaiming MLP started through RunManager, as the page starts them, measured over a window once
they train, in paired rounds (local, then Ray) so the machine's drift falls on both alike. Reported: the
runs' steps per second on the cluster against local workers, and what each run costs the server -- its
process's CPU (a local worker trains: ~a core; a relay only exchanges records) and resident memory.

    python bench/bench_ray_runs.py [--runs 2] [--rounds 3] [--seconds 20]
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

from rayhead import local_head  # noqa: E402

from core.runs.manager import RunManager  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
NAMES = Path(os.environ.get("ZTH_SHARED", ROOT.parent / "shared")) / "data" / "names.txt"
SPEC = {"model": "mlp", "preset": "kaiming", "model_kw": {}, "train": {"steps": 10_000_000},
        "data": {"kind": "file", "path": str(NAMES)}}


def cpu_seconds(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(data_dir, k, seconds, ray=None):
    """(steps per second of the k runs together, the server-side processes' CPU share of a core each, RSS MB
    each) over a window that starts once every run trains."""
    if ray:
        os.environ["ZTH_RAY_ADDRESS"] = ray
    else:
        os.environ.pop("ZTH_RAY_ADDRESS", None)
    m = RunManager(data_dir / "runs.sqlite", max_live=k, orphan_timeout=1e9)
    try:
        ids = [m.start(SPEC, f"bench {i}") for i in range(k)]
        t0 = time.time()
        while min(m.db.get_run(i)["step"] for i in ids) < 500:  # started, torch loaded, training
            if time.time() - t0 > 300:
                raise RuntimeError("the runs did not start within 300 s")
            time.sleep(0.5)
        time.sleep(2.0)
        pids = [m.procs[i].pid for i in ids]
        s0, c0, w0 = [m.db.get_run(i)["step"] for i in ids], [cpu_seconds(p) for p in pids], time.time()
        time.sleep(seconds)
        s1, c1, w1 = [m.db.get_run(i)["step"] for i in ids], [cpu_seconds(p) for p in pids], time.time()
        rss = [rss_mb(p) for p in pids]
        wall = w1 - w0
        return (sum(s1) - sum(s0)) / wall, [(b - a) / wall for a, b in zip(c0, c1)], rss
    finally:
        m.stop_all(wait=10)
        m.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zth-bench-rayruns-"))
    ratios = []
    with local_head() as head:  # ray start --head on loopback with 2 CPUs, as the tests start it
        for r in range(args.rounds):
            local, lcpu, lrss = measure(tmp / f"local{r}", args.runs, args.seconds)
            ray, rcpu, rrss = measure(tmp / f"ray{r}", args.runs, args.seconds, ray=head["address"])
            ratios.append(ray / local)
            print(f"round {r + 1}: local workers {local:7.0f} steps/s (each {100 * max(lcpu):.0f}% of a core, "
                  f"{max(lrss):.0f} MB); on Ray {ray:7.0f} steps/s (each relay {100 * max(rcpu):.1f}% of a core, "
                  f"{max(rrss):.0f} MB): {ray / local:.2f}x", flush=True)
    ratios.sort()
    print(f"Ray / local over {args.rounds} paired rounds of {args.runs} runs: median {ratios[len(ratios) // 2]:.2f}x "
          f"(min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
