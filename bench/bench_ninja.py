"""
Lecture 5 (backprop ninja), timed:
  1. what the page computes on a rerun when its cache is cold: the chunked forward, autograd's
     backward, the manual backward of all 26 tensors and both closed forms (run_exercises);
  2. training steps/s through Run (capture off, one torch thread): the manual backward under
     torch.no_grad() against loss.backward(), alternating rounds in one process, medians;
  3. how far the two runs' losses drift apart over the measured steps.

    python bench/bench_ninja.py --data ../shared/data/names.txt [--steps 2000] [--rounds 5]
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
from core.models.build import build_model
from core.models.ninja import run_exercises  # noqa: E402
from core.models.presets import get_preset, train_config  # noqa: E402
from core.training.loop import Run, TensorBatches, configure_torch  # noqa: E402


def run_once(ds, preset, steps):
    p = get_preset("ninja", preset)
    cfg = train_config(p, steps=steps, capture_every=0)
    model, g = build_model(p, ds.vocab_size, cfg.seed)
    batches = TensorBatches({"train": (ds.Xtr, ds.Ytr)}, cfg.batch_size, g)
    run = Run(model, batches, cfg)
    t0 = time.perf_counter()
    while run.step < steps:
        run.advance(steps - run.step)
    dt = time.perf_counter() - t0
    return steps / dt, run.store.losses()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="makemore's names.txt")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    os.environ["ZTH_DATA_DIR"] = tempfile.mkdtemp(prefix="zth-bench-")  # the bench's runs stay out of yours
    configure_torch(1)
    ds = data.WordsDataset(data.load_words(args.data), 3)
    print(f"python {platform.python_version()}, torch {torch.__version__}, 1 thread; {ds.describe()}")

    ts = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        run_exercises(ds.Xtr, ds.Ytr, ds.vocab_size)
        ts.append(time.perf_counter() - t0)
    print(f"1. run_exercises (cold page cache): median {1e3 * statistics.median(ts):.1f} ms, "
          f"best {1e3 * min(ts):.1f} ms")

    rates = {"manual": [], "autograd": []}
    losses = {}
    for _ in range(args.rounds):
        for preset in ("manual", "autograd"):  # alternate, so drift in the machine's load hits both
            r, losses[preset] = run_once(ds, preset, args.steps)
            rates[preset].append(r)
    m, a = statistics.median(rates["manual"]), statistics.median(rates["autograd"])
    print(f"2. steps/s over {args.steps:,} steps, median of {args.rounds} alternating rounds: "
          f"manual {m:,.0f}, autograd {a:,.0f} (manual/autograd {m / a:.2f}x)")
    gap = np.abs(losses["manual"] - losses["autograd"])
    print(f"3. |loss gap| over {args.steps:,} steps: max {gap.max():.1e}, identical steps "
          f"{100 * (gap == 0).mean():.0f}%")


if __name__ == "__main__":
    main()
