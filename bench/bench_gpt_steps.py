"""
Lecture 7's steps on tiny Shakespeare, through the worker's own path (core.jobs.build_job + Run):
the val loss each preset reaches after its 5,000 steps, next to the lecture's, and the speed.

    python bench/bench_gpt_steps.py --data ../shared/data/tinyshakespeare.txt [--presets bigram,blocks]

Also the count bigram's val loss on the same split: the best any bigram can do, which a
Transformer must beat by using its context.
"""

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.models.presets import get_preset  # noqa: E402
from core.runs.spec import build_job  # noqa: E402
from core.training.loop import Run, configure_torch  # noqa: E402

STEPS = ["bigram", "one-head", "four-heads", "ffwd", "blocks"]


def count_bigram_val(ds):
    """The val NLL of the +1-smoothed count bigram fitted on the train split."""
    V = ds.vocab_size
    N = torch.ones((V, V))
    tr, va = ds.train_data, ds.val_data
    N.index_put_((tr[:-1], tr[1:]), torch.ones(len(tr) - 1), accumulate=True)
    P = N / N.sum(1, keepdim=True)
    return -P[va[:-1], va[1:]].log().mean().item()


def main():
    os.environ["ZTH_DATA_DIR"] = tempfile.mkdtemp(prefix="zth-bench-")  # the bench's runs stay out of yours
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--presets", default=",".join(STEPS))
    args = ap.parse_args()
    configure_torch(1)
    print("| preset | params | steps/s | train | val | lecture's val |\n|---|---:|---:|---:|---:|---:|")
    ds = None
    for name in args.presets.split(","):
        spec = {"model": "gpt", "preset": name, "data": {"kind": "file", "path": args.data}}
        model, batches, cfg, probe, info, ds = build_job(spec)
        run = Run(model, batches, cfg, probe=probe)
        t0 = time.perf_counter()
        run.run(chunk=500)
        dt = time.perf_counter() - t0
        exp = get_preset("gpt", name).expected.get("val")
        print(f"| {name} | {info['params']:,} | {run.steps_per_s:,.0f} ({dt:.0f} s with evals) | "
              f"{run.final['train']:.4f} | {run.final['val']:.4f} | {exp if exp else '—'} |", flush=True)
    print(f"\ncount bigram (+1 smoothing) val NLL: {count_bigram_val(ds):.4f}; "
          f"-ln(1/{ds.vocab_size}) = {math.log(ds.vocab_size):.4f}")


if __name__ == "__main__":
    main()
