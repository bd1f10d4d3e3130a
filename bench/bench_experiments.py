"""
Trials per hour of a lecture-3 MLP sweep: the local pool (K worker processes under a coordinator) and a local
2-CPU Ray cluster (actors relaying records into the runs file), each against K independent runs of the same
trial specs started K at a time with no coordinator -- the cores' own throughput. Target: both >= 0.85x.
Beside it, the CPU the coordinating process (the server side) uses while the experiment runs, read from /proc,
and a projection for a 16-node cluster from those numbers.

    python bench/bench_experiments.py [--trials 6] [--steps 4000] [--workers 2] [--no-ray]
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rayhead import local_head  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
NAMES = Path(os.environ.get("ZTH_SHARED", ROOT.parent / "shared")) / "data" / "names.txt"


def spec_text(name, trials, steps):
    """The lecture-3 sweep: the kaiming MLP's learning rate and sizes. No pruning: every trial trains all its
    steps, so the three ways do the same work."""
    return (f'name = "{name}"\nmodel = "mlp"\npreset = "kaiming"\ntrials = {trials}\nprune = false\nseed = 1\n'
            f'[fixed]\nsteps = {steps}\nlr_decay_step = {steps * 2 // 3}\n'
            f'[space]\nlr = {{log = [0.05, 0.5]}}\nn_hidden = [100, 200]\nn_embd = {{int = [8, 16]}}\n')


def cpu_seconds(pid):
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(f[11]) + int(f[12])) / TICK  # utime + stime, this process alone (its workers are children)


def runs_in(data_dir):
    try:
        con = sqlite3.connect(f"file:{data_dir / 'runs.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM runs").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def run_experiment(data_dir, spec_path, workers, ray=None):
    """(wall seconds, coordinator CPU seconds, summary, steady CPU share, wall seconds from the first trial's start)
    of `python -m core experiment run`.
    The steady share leaves out the coordinator's start (torch, optuna, ray.init: a few CPU seconds once):
    its CPU from the first trial's start to the end, over that wall time."""
    cmd = [sys.executable, "-m", "core", "experiment", "run", str(spec_path), "--data", str(NAMES),
           "--workers", str(workers), "--json"] + (["--ray", ray] if ray else [])
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "ZTH_DATA_DIR": str(data_dir)})
    cpu, first = 0.0, None
    while p.poll() is None:
        cpu = cpu_seconds(p.pid) or cpu
        if first is None and runs_in(data_dir):
            first = (time.time(), cpu)
        time.sleep(0.5)
    wall = time.time() - t0
    s = json.loads(p.stdout.read().splitlines()[-1])
    steady = (cpu - first[1]) / (time.time() - first[0]) if first else float("nan")
    trials_wall = time.time() - first[0] if first else float("nan")  # without the coordinator's own start
    return wall, cpu, s, steady, trials_wall


def independent(data_dir, specs, k):
    """The ceiling: the same run specs as plain worker runs (RunManager, as a page starts them), K at a time."""
    os.environ["ZTH_DATA_DIR"] = str(data_dir)
    from core.runs.manager import RunManager
    m = RunManager(max_live=k)
    todo, live = list(specs), set()
    t0 = time.time()
    while todo or live:
        while todo and len(live) < k:
            live.add(m.start(todo.pop(0), "independent", orphan_timeout=1e9))
        for run_id in list(live):
            if m.db.get_run(run_id)["state"] not in ("starting", "ready", "running", "paused"):
                live.discard(run_id)
        m.reap()
        time.sleep(0.1)
    wall = time.time() - t0
    m.close()
    return wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    k, n = args.workers, args.trials
    tmp = Path(tempfile.mkdtemp(prefix="zth-bench-exp-"))
    (tmp / "local.toml").write_text(spec_text("bench-local", n, args.steps))
    (tmp / "ray.toml").write_text(spec_text("bench-ray", n, args.steps))
    print(f"lecture-3 MLP sweep on names.txt: {n} trials of {args.steps:,} steps, K = {k}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)

    wall, cpu, s, steady, twall = run_experiment(tmp / "local", tmp / "local.toml", k)
    done = [t for t in s["trials"] if t["state"] == "finished"]
    print(f"local pool:          {wall:6.1f} s, {len(done)} finished, {n * 3600 / wall:6.0f} trials/hour; "
          f"coordinator CPU {cpu:.1f} s in all, {100 * steady:.1f}% of a core while trials train; "
          f"best dev {s['best']['dev_loss']:.4f}", flush=True)
    os.environ["ZTH_DATA_DIR"] = str(tmp / "local")
    from core.experiments import spec as specs
    exp = specs.load(tmp / "local.toml", data=str(NAMES))
    run_specs = [exp.run_spec(t["params"]) for t in s["trials"]]
    base = independent(tmp / "independent", run_specs, k)
    print(f"K independent runs:  {base:6.1f} s, {n * 3600 / base:6.0f} trials/hour (the ceiling)", flush=True)
    print(f"local pool / independent: {base / wall:.2f}x; from the first trial's start (the coordinator's own start "
          f"left out, {wall - twall:.1f} s): {base / twall:.2f}x", flush=True)
    results = dict(local=dict(wall=wall, cpu=cpu, steady=steady), independent=base)

    if not args.no_ray:
        with local_head() as head:  # the tests' own: ray start --head on loopback, 2 CPUs, killed after
            rwall, rcpu, rs, rsteady, rtwall = run_experiment(tmp / "ray", tmp / "ray.toml", k, ray=head["address"])
        rdone = [t for t in rs["trials"] if t["state"] == "finished"]
        print(f"Ray, 2-CPU head:     {rwall:6.1f} s, {len(rdone)} finished, {n * 3600 / rwall:6.0f} trials/hour; "
              f"coordinator CPU {rcpu:.1f} s in all, {100 * rsteady:.1f}% of a core while trials train (relaying every "
              f"record)", flush=True)
        print(f"Ray / independent: {base / rwall:.2f}x; from the first trial's start (the coordinator's start and "
              f"ray.init left out, {rwall - rtwall:.1f} s): {base / rtwall:.2f}x", flush=True)
        # 16 nodes of 16 cores: 256 trials at once, each node as fast per CPU as this one; the coordinator's
        # relay cost grows with the trials in flight
        per_cpu = n * 3600 / rwall / k
        relay = rsteady / k  # coordinator cores per trial in flight
        print(f"projection, 16 nodes x 16 CPUs: {per_cpu:.0f} trials/hour/CPU x 256 = {per_cpu * 256:,.0f} "
              f"trials/hour; the coordinator relays 256 trials at {relay:.3f} cores each = {relay * 256:.1f} cores",
              flush=True)
        results["ray"] = dict(wall=rwall, cpu=rcpu, steady=rsteady)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
