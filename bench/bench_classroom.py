"""
What a classroom's server takes to notice and explain a fault (issue "Runs that survive a classroom"):
the targets the tests check with generous bounds, measured here over several rounds.

    python bench/bench_classroom.py [--rounds 5] [--data names.txt]

- kill: a worker SIGKILLed mid-run -> its row is marked failed with the signal, by the server's own
  check (RunManager) and by a separate reader (`python -m core runs show`, core.runs.liveness.reap)
- dev/zero: "A file on this machine" = /dev/zero, a FIFO, a folder -> the data layer's one-line refusal
- damaged: a runs file with garbage over its header -> moved aside and a fresh one opened
"""

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runs import liveness, storage  # noqa: E402
from core.runs.db import LIVE_STATES, RunDB  # noqa: E402
from core.runs.manager import CHECK_SECONDS, RunManager  # noqa: E402
from data import DataError, read_text  # noqa: E402


def wait_for(pred, timeout=60, every=0.02):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise RuntimeError("timed out")


def kill_round(tmp, data):
    """Seconds from SIGKILL to the row marked failed: (by the server's check, by another reader)."""
    spec = {"model": "mlp", "preset": "kaiming", "train": {"steps": 10_000_000, "capture_every": 100},
            "data": {"kind": "file", "path": data} if data else {"kind": "ssa"}}
    out = []
    for by_server in (True, False):
        m = RunManager(Path(tmp) / f"runs-{by_server}.sqlite", max_live=2, orphan_timeout=600,
                       check_every=CHECK_SECONDS if by_server else 3600)
        try:
            run_id = m.start(spec, "bench")
            m.wait(run_id, 120, states=("running",))
            wait_for(lambda: m.db.get_run(run_id)["step"] > 0)
            pid = m.db.get_run(run_id)["pid"]
            os.kill(pid, signal.SIGKILL)
            t0 = time.time()
            if by_server:
                wait_for(lambda: m.db.get_run(run_id)["state"] not in LIVE_STATES)
            else:
                other = RunDB(m.db.path)   # a reader with its own handle, as `runs show` is
                wait_for(lambda: liveness.reap(other) or other.get_run(run_id)["state"] not in LIVE_STATES)
                other.close()
            out.append(time.time() - t0)
        finally:
            m.close()
            m.stop_all()
    return out


def refusal_round(tmp):
    fifo = Path(tmp) / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    times = []
    for path in ("/dev/zero", str(fifo), tmp):
        t0 = time.time()
        try:
            read_text(path)
            raise RuntimeError(f"{path} was read")
        except DataError:
            times.append(time.time() - t0)
    return times


def damaged_round(tmp):
    path = Path(tmp) / "damaged.sqlite"
    db = RunDB(path)
    db.create_run({}, "x")
    db.close()
    with open(path, "r+b") as f:
        f.write(os.urandom(4096))
    t0 = time.time()
    db = RunDB(path)
    db.list_runs()
    took = time.time() - t0
    db.close()
    if not storage.damaged_files(path):
        raise RuntimeError("the damaged file was not moved aside")
    for p in Path(tmp).glob("damaged*"):
        p.unlink()
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", help="a words file (default: the SSA names)")
    args = ap.parse_args()
    kill_server, kill_reader, refuse, damaged = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ZTH_DATA_DIR"] = tmp
        for r in range(args.rounds):
            a, b = kill_round(tmp, args.data)
            kill_server.append(a)
            kill_reader.append(b)
            refuse.append(max(refusal_round(tmp)))
            damaged.append(damaged_round(tmp))
            print(f"round {r + 1}: kill->failed {a:.2f} s (server's check), {b:.2f} s (a reader); "
                  f"refusal {refuse[-1] * 1000:.2f} ms; damaged file {damaged[-1] * 1000:.0f} ms", flush=True)
    med = statistics.median
    print(f"median of {args.rounds}: kill->failed {med(kill_server):.2f} s by the server's check (max "
          f"{max(kill_server):.2f}), {med(kill_reader):.2f} s by a reader; /dev/zero, FIFO, folder refused in "
          f"{med(refuse) * 1000:.2f} ms; damaged runs file moved aside and reopened in {med(damaged) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
