"""
Core speed and memory, measured in one process against the plain lecture loop.

    python bench/bench_core.py [--data ../shared/data/names.txt] [--steps 100] [--rounds 100] [--seconds 1]

1. Capture overhead on the lecture-4 deep stack (deep-bn): the plain notebook loop (no
   diagnostics) against core's Run with capture off, at the default cadence (every 100 steps)
   and at every step; and
   the lecture's own diagnostic loop (retain_grad on every layer output plus the `ud` list every
   step) against core's every-step capture. Every contender is one loop (or Run) that lives
   through the whole benchmark, as a learner's does; each round runs every contender for 100 steps,
   in a shuffled order; each contender's ratio to the plain loop is taken within a round (a second
   or two apart, so the VM's drift cancels), and its median over the rounds (100: on this VM a
   single round's ratio scatters +-10%) is reported with the quartiles. Besides
   steps/s (wall clock), CPU time per step of the whole process and of the training thread alone:
   the worker thread moves work off the training thread, it does not remove it, so steps/s gains
   from it only while a second core is free (CPU times also hold up better on a busy machine).
2. The bounded store: bytes held after 1,000,000 steps with a capture every 100.
3. Steps/s of every model's default preset through Run at its default capture cadence.
"""

import argparse
import gc
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # section 2's fake_capture is the tests' own

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from test_run import fake_capture  # noqa: E402

import data  # noqa: E402
from core.models.build import build_model  # noqa: E402
from core.models.presets import get_preset, train_config  # noqa: E402
from core.runs.store import RunStore  # noqa: E402
from core.training.loop import Run, TensorBatches, TextBatches, configure_torch  # noqa: E402
from data import bigrams  # noqa: E402


def dataset(path, block_size):
    words = data.load_words(path) if path else data.default_words()
    return data.WordsDataset(words, block_size)


# -----------------------------------------------------------------------------
# the loops under test: each trains for `seconds` and returns steps/s


def notebook_step(ds, lecture_diagnostics=False):
    """The lecture-4 notebook loop, as in the video (deep-bn): a function that runs its step i."""
    preset = get_preset("deep", "deep-bn")
    model, g = build_model(preset, ds.vocab_size, 2147483647)
    C, layers, parameters = model.C, [l for _, l in model.layers], model.parameters()
    Xtr, Ytr = ds.Xtr, ds.Ytr
    lossi, ud = [], []

    def step(i):
        ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
        Xb, Yb = Xtr[ix], Ytr[ix]
        emb = C[Xb]
        x = emb.view(emb.shape[0], -1)
        for layer in layers:
            x = layer(x)
        loss = F.cross_entropy(x, Yb)
        if lecture_diagnostics:
            for layer in layers:
                layer.out.retain_grad()
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = 0.1 if i < 150000 else 0.01
        for p in parameters:
            p.data += -lr * p.grad
        lossi.append(loss.log10().item())  # the notebook's "track stats", kept by every contender
        if lecture_diagnostics:
            with torch.no_grad():
                ud.append([((lr * p.grad).std() / p.data.std()).log10().item() for p in parameters])
    return step


def plain_loop(ds, lecture_diagnostics=False):
    """The notebook loop as a contender: each call trains `steps` more steps of one loop that lives on
    (as a learner's notebook does)."""
    step = notebook_step(ds, lecture_diagnostics)
    done = [0]

    def go(steps):
        for i in range(done[0], done[0] + steps):
            step(i)
        done[0] += steps
    go(5)  # warm-up
    return go


def core_run(ds, capture_every, model="deep", preset="deep-bn"):
    """core's Run on the same model and data, no loss estimates on the way; returns its advance (warmed up)."""
    p = get_preset(model, preset)
    cfg = train_config(p, steps=10_000_000, capture_every=capture_every, eval_every=0)
    m, g = build_model(p, ds.vocab_size, cfg.seed)
    if model == "gpt":
        batches = TextBatches(lambda split: ds.get_batch(split, cfg.batch_size), 10)
        probe = None
    elif model == "bigram-nn":
        batches = TensorBatches({"train": bigrams(ds.words, ds.stoi)}, 0, g)
        probe = None
    else:
        batches = TensorBatches({"train": (ds.Xtr, ds.Ytr), "val": (ds.Xdev, ds.Ydev)}, cfg.batch_size, g)
        probe = ds.Xdev[:32]
    run = Run(m, batches, cfg, probe=probe)
    run.advance(5)  # warm-up
    return run.advance


def timed(go, steps):
    """A round of a contender: `steps` more steps; returns steps/s, CPU ms/step (process, this thread)."""
    def round_():
        t0, c0, h0 = time.perf_counter(), time.process_time(), time.thread_time()
        go(steps)
        return (steps / (time.perf_counter() - t0), 1e3 * (time.process_time() - c0) / steps,
                1e3 * (time.thread_time() - h0) / steps)
    return round_


def steps_per_s(go, seconds):
    """steps/s of a contender over `seconds`, in chunks of 50 steps."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        go(50)
        n += 50
    return n / (time.perf_counter() - t0)


def alternate(fns, rounds):
    """{name: [what it returned in each round]}: every round runs each contender once, in an order of its
    own (seeded), so that neither drift nor a disturbance that comes back every few seconds keeps hitting
    the same contender"""
    res = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            gc.collect()  # the last contender's garbage (a Run, its hooks and records) is not this one's cost
            res[k].append(fns[k]())
    return res


def paired_ratios(res, base, i=0):
    """{name: (median, lower quartile, upper quartile)} of each round's value i over the base contender's in
    the same round -- the two ran seconds apart, so the VM's slow drift (+-20% over minutes) cancels"""
    out = {}
    for k, v in res.items():
        r = sorted(a[i] / b[i] for a, b in zip(v, res[base]))
        q = statistics.quantiles(r, n=4) if len(r) > 1 else (r[0], r[0], r[0])
        out[k] = (statistics.median(r), q[0], q[2])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="words file (default: the SSA names)")
    ap.add_argument("--steps", type=int, default=100, help="steps per contender per round (section 1)")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=1, help="per model (section 3)")
    ap.add_argument("--sections", default="123", help="which sections to run")
    args = ap.parse_args()
    configure_torch(1)
    os.environ["ZTH_DATA_DIR"] = tempfile.mkdtemp(prefix="zth-bench-")  # the bench's runs stay out of yours
    ds = dataset(args.data, 3)
    print(f"torch {torch.__version__}, 1 thread; {ds.describe()}; load average {os.getloadavg()[0]:.2f}")

    if "1" in args.sections:
        section_1(ds, args)
    if "2" in args.sections:
        section_2()
    if "3" in args.sections:
        section_3(ds, args)


def section_1(ds, args):
    print("\n1. capture overhead, deep-bn (47,024 params): steps/s and CPU time per step, medians of", args.rounds,
          "rounds of", args.steps, "steps (every contender once a round, in a shuffled order; each contender one "
          "loop or Run\n   that lives through all rounds); 'vs plain' is the median (quartiles) of each round's "
          "ratio to the plain loop's steps/s in the same round")
    contenders = {
        "plain notebook loop": plain_loop(ds),
        "Run, capture off": core_run(ds, 0),
        "Run, capture every 100 (default)": core_run(ds, 100),
        "Run, capture every step": core_run(ds, 1),
        "lecture loop with retain_grad + ud every step": plain_loop(ds, lecture_diagnostics=True),
    }
    res = alternate({k: timed(go, args.steps) for k, go in contenders.items()}, args.rounds)
    del contenders
    r = {k: tuple(statistics.median(col) for col in zip(*v)) for k, v in res.items()}
    ratio = paired_ratios(res, "plain notebook loop")
    base_cpu = r["plain notebook loop"][1]
    print(f"   {'':48s} {'steps/s':>8s}  {'vs plain (quartiles)':>22s}  {'CPU ms/step: process':>20s}"
          f"  {'training thread':>15s}")
    for k, (v, cpu, thread) in r.items():
        m, lo, hi = ratio[k]
        print(f"   {k:48s} {v:8.0f}  {m:5.2f}x ({lo:4.2f}-{hi:4.2f})  {cpu:8.2f} {base_cpu / cpu:5.2f}x plain"
              f"  {thread:8.2f} {base_cpu / thread:5.2f}x")
    vs = paired_ratios(res, "lecture loop with retain_grad + ud every step")
    print(f"   every-step capture vs the lecture's own diagnostics: "
          f"{vs['Run, capture every step'][0]:.2f}x; load average now {os.getloadavg()[0]:.2f}")



def section_2():
    print("\n2. the store: 1,000,000 steps into the runs file, a capture (30 tensors) every 100")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = RunStore(name="bench: a million steps")
    t0 = time.perf_counter()
    for i in range(1_000_000):
        store.add_step(i, 2.0, 0.1)
        if i % 100 == 0:
            store.add_capture(fake_capture(i))
    store.flush()
    dt = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = sum(f.stat().st_size for f in store.db.path.parent.glob("runs.sqlite*"))
    print(f"   peak RSS grew {(rss1 - rss0) / 1e3:.0f} MB; the runs file holds {size / 1e6:.0f} MB "
          f"({len(store.db.capture_steps(store.run_id))} captures kept); {1e6 / dt:,.0f} add_step/s with the flushes")



def section_3(ds, args):
    print("\n3. every model's default preset through Run, default capture cadence, steps/s")
    for model, preset in [("bigram-nn", "default"), ("mlp", "raw"), ("mlp", "kaiming"), ("mlp", "batchnorm"),
                          ("deep", "deep-bn"), ("wavenet", "flat8"), ("wavenet", "scaled"), ("gpt", "small")]:
        p = get_preset(model, preset)
        if model == "gpt":
            d = data.TextDataset("\n".join(ds.words) + "\n", p.block_size)
        else:
            d = dataset(args.data, p.block_size) if p.block_size != 3 else ds
        cap = train_config(p).capture_every
        v = steps_per_s(core_run(d, cap, model, preset), args.seconds)
        print(f"   {model}/{preset:12s} capture every {cap:4d}: {v:8.1f} steps/s")


if __name__ == "__main__":
    main()
