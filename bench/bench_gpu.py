"""
The recorder on a GPU: the lecture's full GPT (10.8M parameters, batch 64, block 256) on tiny
Shakespeare, trained through core's Run with capture off, at the preset's cadence (every 50), every
100 steps and every step. Each contender is one Run that lives through the whole bench; each round
runs every contender for --steps steps in a shuffled order, and a contender's figure is the median
over rounds of its steps/s over capture off's in the same round.

    python bench/bench_gpu.py --data ../shared/data/tinyshakespeare.txt [--steps 30] [--rounds 5]

Before timing, a check: the device path on CUDA tensors gives the CPU kernels' records (within
float32 rounding) for the first capture steps of a small GPT, and the step-0 record of the full GPT.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.capture.histogram import Summarizer  # noqa: E402
from core.runs.spec import build_job  # noqa: E402
from core.training.loop import Run  # noqa: E402


def contender(data, capture_every, preset, device, steps_warm=3):
    spec = {"model": "gpt", "preset": preset, "device": device, "data": {"kind": "file", "path": data},
            "train": {"steps": 10_000_000, "eval_every": 0, "capture_every": capture_every}}
    model, batches, cfg, probe, info, _ = build_job(spec)
    run = Run(model, batches, cfg, probe=probe)
    run.advance(steps_warm)
    return run, info


def check_records(data, preset, device):
    """CUDA records against the kernels' on the same tensors: every captured tensor of the full GPT at
    one step, summarized both ways over three steps (the edges carried from step to step)."""
    spec = {"model": "gpt", "preset": preset, "device": device, "data": {"kind": "file", "path": data},
            "train": {"steps": 4, "eval_every": 0, "capture_every": 1}}
    model, batches, cfg, probe, info, _ = build_job(spec)
    run = Run(model, batches, cfg, probe=probe)
    rec = run.recorder
    gpu, cpu = Summarizer(), Summarizer()
    worst = dict(counts=0, stats=0.0, edges=0)
    seen = {}
    orig = rec.summarizer.prepare

    def spy(keys, kinds, tensors, std=None, on_device=False):
        seen["last"] = (keys, kinds, [t.detach().clone() for t in tensors])
        return orig(keys, kinds, tensors, std, on_device)
    rec.summarizer.prepare = spy
    for _ in range(3):
        run.advance(1)
        keys, kinds, tensors = seen["last"]
        c1, e1, s1 = gpu(keys, tensors, kinds, on_device=True)
        c0, e0, s0 = cpu(keys, [t.cpu() for t in tensors], kinds)
        assert np.array_equal(c1.sum(1), c0.sum(1)), "a value was lost"
        worst["counts"] = max(worst["counts"], int(np.abs(c1 - c0).sum(1).max()))
        worst["edges"] += int((e1 != e0).sum())
        rel = np.abs(s1 - s0) / np.maximum(np.abs(s0), 1e-6)
        worst["stats"] = max(worst["stats"], float(np.nanmax(rel)))
    print(f"check: {len(keys)} tensors x 3 steps, CUDA vs CPU kernels: max bucket moves per tensor "
          f"{worst['counts']}, edges that differ {worst['edges']}, max relative stat difference "
          f"{worst['stats']:.2e}")
    caps = run.recorder.flush() + run.store.captures
    print(f"check: the Run's own records: {len(caps)} captures, steps {[c.step for c in caps]}")
    del run, model


def main():
    os.environ["ZTH_DATA_DIR"] = tempfile.mkdtemp(prefix="zth-bench-")  # the bench's runs stay out of yours
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--preset", default="full")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke test of this script where there is no GPU")
    args = ap.parse_args()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}")
    check_records(args.data, args.preset, args.device)
    names = {"capture off": 0, "capture every 50 (the preset's)": 50, "capture every 100": 100,
             "capture every step": 1}
    runs = {}
    for name, k in names.items():
        runs[name], info = contender(args.data, k, args.preset, args.device)
    print(f"GPT {args.preset}: {info['params']:,} parameters; {args.rounds} rounds of {args.steps} steps")
    res = {k: [] for k in names}
    order = list(names)
    rng = random.Random(0)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            sync()
            t0 = time.perf_counter()
            runs[name].advance(args.steps)
            sync()
            res[name].append(args.steps / (time.perf_counter() - t0))
    base = res["capture off"]
    for name, v in res.items():
        ratios = sorted(a / b for a, b in zip(v, base))
        print(f"  {name:34s} {statistics.median(v):6.2f} steps/s   {statistics.median(ratios):.3f}x capture off "
              f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}); captures stored {len(runs[name].store.captures)}")
    if args.device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
