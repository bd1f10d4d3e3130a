"""
Capture overhead in instructions, not seconds: the same contenders as bench_core.py's section 1
(the plain lecture-4 notebook loop against core's Run with capture off, at the default cadence and
at every step),
each run under valgrind's callgrind, which counts the instructions a process executes. The count
repeats exactly for the same inputs whatever else the machine does, so it settles what this VM's
±10-20% steps/s noise cannot: whether "capture off" is within 3% of the plain loop, and the default
cadence within 3%. Per-step figures are the difference between a run of N1 and one of N2 steps (after
the same 60-step warm-up), so start-up costs cancel; after the warm-up the objects made so far are
frozen out of Python's collector (gc.freeze), whose full collections otherwise land in one run and not
the other.

    python bench/bench_instructions.py --data ../shared/data/names.txt [--n1 100] [--n2 300]

Needs valgrind (Debian: apt-get install valgrind). Under valgrind the numba kernels are compiled for a
generic x86-64 CPU (valgrind cannot run AVX-512), in a cache of their own: at every step their count
is that of code without vector instructions, and instructions are not time (a cache miss or a wait on
memory is one instruction): for every-step capture, bench_core.py's steps/s is the figure; the count
says how the Python around the kernels compares. About 12 minutes on 2 cores (callgrind runs ~50x
slower than the CPU).
"""

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

WARMUP = 60


def child(data, mode, n):
    """Inside valgrind: warm up, then train n steps of one contender."""
    from bench_core import dataset, notebook_step

    from core.models.build import build_model
    from core.models.presets import get_preset, train_config
    from core.training.loop import Run, TensorBatches, configure_torch
    configure_torch(1)
    ds = dataset(data, 3)
    if mode == "plain":  # bench_core's notebook loop, with its lossi
        step = notebook_step(ds)

        def go(steps, i0):
            for i in range(i0, i0 + steps):
                step(i)
    else:
        p = get_preset("deep", "deep-bn")
        cfg = train_config(p, steps=10_000_000, capture_every=int(mode))
        m, g = build_model(p, ds.vocab_size, cfg.seed)
        run = Run(m, TensorBatches({"train": (ds.Xtr, ds.Ytr)}, cfg.batch_size, g), cfg, probe=ds.Xdev[:32])

        def go(steps, i0):
            run.advance(steps)
    go(WARMUP, 0)
    # the objects made so far (torch, numba, the data: about a million) leave the collector's view: a full
    # collection over them costs tens of millions of instructions, and whether one falls inside a run of
    # N1 steps or of N2 moved a contender's count by a few percent between runs
    gc.collect()
    gc.freeze()
    go(n, WARMUP)


def warm():
    """Every kernel a capture uses, compiled into the cache: three capture steps of a small deep stack."""
    import torch

    from core.models.build import build_model
    from core.models.presets import get_preset, train_config
    from core.training.loop import Run, TensorBatches
    p = get_preset("deep", "deep-bn")
    cfg = train_config(p, steps=3, capture_every=1)
    m, g = build_model(p, 27, cfg.seed)
    X, Y = torch.randint(0, 27, (64, p.block_size), generator=g), torch.randint(0, 27, (64,), generator=g)
    Run(m, TensorBatches({"train": (X, Y)}, cfg.batch_size, g), cfg, probe=X[:32]).advance(3)


def count(data, mode, n, env):
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                          __file__, "--child", mode, str(n), "--data", data or ""],
                         capture_output=True, text=True, env=env)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode or not m:
        raise RuntimeError(f"{mode} {n}: valgrind failed\n{out.stderr[-2000:]}")
    return int(m.group(1))


def main():
    os.environ["ZTH_DATA_DIR"] = tempfile.mkdtemp(prefix="zth-bench-")  # the bench's runs stay out of yours
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="words file (default: the SSA names)")
    ap.add_argument("--n1", type=int, default=100)
    ap.add_argument("--n2", type=int, default=300)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.warm:
        return warm()
    if args.child:
        return child(args.data or None, args.child[0], int(args.child[1]))
    env = {**os.environ, "NUMBA_CPU_NAME": "generic",
           "NUMBA_CACHE_DIR": str(Path(tempfile.gettempdir()) / "zth-numba-generic")}
    # compile the generic kernels once, outside valgrind (a few capture steps of a small run), so that no
    # contender pays for it inside, nor one of its two runs and not the other
    subprocess.run([sys.executable, __file__, "--warm"], cwd=ROOT, env=env, check=True)
    modes = ["plain", "0", "100", "1"]
    jobs = [(m, n) for m in modes for n in (args.n1, args.n2)]
    with ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        counts = dict(zip(jobs, ex.map(lambda j: count(args.data, *j, env), jobs)))
    per = {m: (counts[m, args.n2] - counts[m, args.n1]) / (args.n2 - args.n1) for m in modes}
    names = {"plain": "plain notebook loop", "0": "Run, capture off", "100": "Run, capture every 100 (default)",
             "1": "Run, capture every step"}
    print(f"instructions per deep-bn step (callgrind, steps {args.n1}..{args.n2} after a {WARMUP}-step warm-up)")
    for m in modes:
        print(f"   {names[m]:36s} {per[m]:12,.0f}   {per['plain'] / per[m]:.3f}x plain "
              f"({100 * (per[m] / per['plain'] - 1):+.1f}% instructions)")


if __name__ == "__main__":
    main()
