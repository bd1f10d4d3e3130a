"""
What `watch` costs a learner's own loop, measured in one process against the same loop without it.

    python bench/bench_watch.py [--data ../shared/data/names.txt] [--steps 100] [--rounds 40]

1. Lecture 4's deep stack written as the notebook does (from-scratch Linear/BatchNorm1d/Tanh, the
   lecture's p.data += -lr * p.grad and lossi line, its retain_grad and `ud` lines removed): the plain loop against
   the same loop with `lab = watch(layers)` at the default cadence (a capture every 100 steps) and
   with a capture every step.
2. An nn.Module -- the GPT preset "small" -- trained with AdamW, plain against watched (default cadence).

Every contender is one loop living through the whole benchmark, as a learner's does; each round runs
each for `steps` steps in a shuffled order, and a contender's speed is taken as its ratio to the plain
loop within the round (the VM's drift cancels); the median and quartiles over the rounds are printed.
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

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import data  # noqa: E402
from core.models.build import build_model  # noqa: E402
from core.models.presets import get_preset  # noqa: E402
from core.watch import watch  # noqa: E402


def deep_loop(ds, every=None):
    """Lecture 4's deep stack as the notebook writes it; every: None = no watch, else watch's cadence."""
    model, g = build_model(get_preset("deep", "deep-bn"), ds.vocab_size, 2147483647)
    C, layers, parameters = model.C, [l for _, l in model.layers], model.parameters()
    Xtr, Ytr = ds.Xtr, ds.Ytr
    lab = watch(layers, parameters=parameters, every=every, name="bench") if every else None
    lossi = []

    def step(i):
        ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
        emb = C[Xtr[ix]]
        x = emb.view(emb.shape[0], -1)
        for layer in layers:
            x = layer(x)
        loss = F.cross_entropy(x, Ytr[ix])
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -0.1 * p.grad
        lossi.append(loss.log10().item())  # the lecture's own tracking line, in both loops
        if lab is not None:
            lab.step(loss)
    return step, lab


def gpt_loop(text_ds, every=None):
    model, _ = build_model(get_preset("gpt", "small"), text_ds.vocab_size, 1337)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1337)
    train = text_ds.train_data
    lab = watch(model, every=every, name="bench-gpt") if every else None

    def step(i):
        ix = torch.randint(len(train) - 32, (16,), generator=g)
        x = torch.stack([train[j:j + 32] for j in ix])
        y = torch.stack([train[j + 1:j + 33] for j in ix])
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if lab is not None:
            lab.step(loss)
    return step, lab


def rounds(contenders, steps, n):
    """{name: [ratio to "plain" per round]} with each round's order shuffled."""
    ratios = {k: [] for k in contenders if k != "plain"}
    counter = {k: 0 for k in contenders}
    for _ in range(n):
        took = {}
        for name in random.sample(list(contenders), len(contenders)):
            step = contenders[name]
            t0 = time.perf_counter()
            for _ in range(steps):
                step(counter[name])
                counter[name] += 1
            took[name] = time.perf_counter() - t0
        for k in ratios:
            ratios[k].append(took["plain"] / took[k])
    return ratios


def report(title, ratios):
    print(title)
    for k, r in ratios.items():
        q = statistics.quantiles(r, n=4)
        print(f"  {k:<22} {statistics.median(r):.2f}x of the plain loop's steps/s (quartiles {q[0]:.2f}-{q[2]:.2f}, "
              f"{len(r)} rounds)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="words file (default: the offline SSA names)")
    ap.add_argument("--text", help="running text for the GPT (default: section 2 is skipped)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("ZTH_DATA_DIR", tempfile.mkdtemp())
    ds = data.WordsDataset(data.load_words(args.data) if args.data else data.default_words(), 3)
    deep = {"plain": deep_loop(ds)[0], "watch (every 100)": deep_loop(ds, 100)[0],
            "watch (every step)": deep_loop(ds, 1)[0]}
    rounds(deep, args.steps, 2)  # warm up: numba's kernels, the allocator
    report(f"lecture 4's deep stack, {args.steps} steps a round:", rounds(deep, args.steps, args.rounds))
    if args.text:
        text = data.TextDataset(data.load_text(args.text), 32)
        gpt = {"plain": gpt_loop(text)[0], "watch (every 100)": gpt_loop(text, 100)[0]}
        rounds(gpt, 10, 2)
        report("GPT small (nn.Module, AdamW), 10 steps a round:", rounds(gpt, 10, max(10, args.rounds // 2)))


if __name__ == "__main__":
    main()
