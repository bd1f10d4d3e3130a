"""
`python -m core doctor`: the model doctor on one of our lecture models, healthy or with a planted bug.

    python -m core doctor --model M [--preset P] [--bug B] [--data FILE] [--steps N] [--json]

It trains the model briefly in the lectures' own loop (core.training.loop.Run), watched by watch() so the
doctor sees the loop (zero_grad, train/eval mode, the loss's input), estimates train and val loss, then
examines the model as initialized on a batch. --json ends with one line {"checks": [...], ...}. The exit code
is 1 when a check fails (a linter's convention), 2 for bad input.
"""

import math
import sys
import tempfile
import time

from core.doctor import bugs
from core.runs import strict_json

MODELS = ("mlp", "deep", "wavenet", "gpt")
STEPS = 1000       # the short training the doctor watches: enough for lecture 3's train/val reading (500+)
WATCH_EVERY = 10   # the observer's cadence while it does (zero_grad is checked on these steps)
EVAL_ITERS = 20    # GPT's estimate_loss batches (the lecture's 200 is for the real run)
BATCH_SEED = 0     # the doctor's own batch comes from a generator of its own: the run's data order is untouched


def add_parser(sub):
    """The `doctor` command on core.cli's parser."""
    d = sub.add_parser("doctor", help="check a lecture model for the six most common neural-net mistakes "
                                      "and under/over-fitting")
    d.add_argument("--model", required=True, choices=MODELS)
    d.add_argument("--preset", help="lecture scenario (default: the model's, or the one the bug needs)")
    d.add_argument("--bug", choices=list(bugs.BUGS), help="a planted mistake: " + ", ".join(
        f"{k} ({b.model})" for k, b in bugs.BUGS.items()))
    d.add_argument("--data", help="a text file (one word per line; running text for gpt). Default: the SSA names")
    d.add_argument("--steps", type=int, default=STEPS, help=f"training steps watched first (default {STEPS})")
    d.add_argument("--seed", type=int, default=None)
    d.add_argument("--json", action="store_true", help="end with one line of JSON: {\"checks\": [...]}")


def main(args, out=print):
    """Run the doctor for parsed `args`; returns the exit code."""
    from core.cli import data_source  # core.cli imports this module to add the subcommand: not at the top
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else out
    if args.steps < 0:
        raise ValueError(f"--steps must be 0 or more (got {args.steps})")
    if args.bug:
        bugs.bug_for(args.bug, args.model, args.preset)
    res = doctor(args.model, args.preset, args.bug, data_source(args.data), args.steps, args.seed, say)
    if args.json:
        print(strict_json.dumps(res))
    else:
        say(res["table"])
    return 1 if any(c["verdict"] == "fail" for c in res["checks"]) else 0


def doctor(model, preset=None, bug=None, data=None, steps=STEPS, seed=None, say=print):
    """Train the (bugged) lecture model `steps` steps under watch(), then examine it. Returns a dict:
    checks, table, model, preset, bug, steps, state, train, val, seconds."""
    # torch and what needs it load here, not at the top, as in core.cli: a mistyped argument is answered at once
    import torch.nn as nn

    from core.capture.diagnose import Subject
    from core.doctor.checks import CHECKS, examine
    from core.doctor.target import Target
    from core.runs.db import RunDB
    from core.runs.spec import build_job
    from core.runs.store import RunStore
    from core.training.loop import Run, configure_torch
    from core.watch import watch

    t0 = time.perf_counter()
    configure_torch(1)
    preset = preset or (bugs.BUGS[bug].preset if bug else None)  # a bug's own preset (BatchNorm bugs: batchnorm)
    train = dict(steps=steps, capture_every=0, eval_every=0, eval_iters=EVAL_ITERS)
    if seed is not None:
        train["seed"] = seed
    spec = dict(model=model, preset=preset, data=data or {"kind": "ssa"}, train=train, bug=bug)
    net, batches, cfg, _, info, ds = build_job(spec)
    say(f"{info['model']}/{info['preset']}{f' with bug {bug}' if bug else ''}: {info['params']:,} parameters; "
        f"{steps:,} steps watched, then the checks")
    X, Y = _batch(batches, ds, info, cfg)
    fresh = Target(net).copy().model  # the model as initialized: what the checks of the model's code examine
    with tempfile.TemporaryDirectory() as tmp:  # the doctor's short run is not one of the learner's runs
        db = RunDB(path=f"{tmp}/runs.sqlite")
        run = Run(net, batches, cfg, store=RunStore(db=db, name="doctor"), capture=False, meta=info)
        lab = watch(net if isinstance(net, nn.Module) else dict(net.named_layers()), every=WATCH_EVERY,
                    data_dir=tmp, parameters=None if isinstance(net, nn.Module) else dict(net.named_parameters()))
        try:
            while not run.done:
                if run.advance(1):
                    lab.step(run.store.last_loss())
            seen = lab.observer.seen()
        finally:
            lab.close()
            run.close()
            db.close(check_again=False)
    final = run.final
    evals = [(run.step, final["train"], final["val"])] if final.get("val") is not None else []
    subject = Subject.of(dict(info), spec)
    if run.state != "finished":
        say(f"the run {run.state} at step {run.diverged_at if run.diverged_at is not None else run.step}")
    # the mistakes in the model's code show at initialization (a short run may already have ruined it, as
    # no-zero-grad does); the loop's mistakes and the fit come from the run just watched
    report = examine(fresh, X, Y, seen=seen, evals=evals, subject=subject)
    checks = report.checks
    if run.state == "diverged":
        fit = next(c for c in checks if c["id"] == "fit")
        fit.update(verdict="skip", title="The run diverged", evidence=f"the loss became non-finite at step "
                   f"{run.diverged_at:,}: a run that blew up says nothing of the model's size.", fix="")
    assert [c["id"] for c in checks] == list(CHECKS)
    return dict(checks=checks, table=report.table(), model=info["model"], preset=info["preset"], bug=bug,
                steps=run.step, state=run.state, train=_finite(final.get("train")), val=_finite(final.get("val")),
                seconds=round(time.perf_counter() - t0, 1))


def _batch(batches, ds, info, cfg):
    """A training batch of lecture 4's size (GPT: the preset's), drawn with the doctor's own generator."""
    import torch  # see doctor()
    g = torch.Generator().manual_seed(BATCH_SEED)
    if info["model"] == "gpt":
        return ds.get_batch("train", cfg.batch_size, generator=g)
    X, Y = batches.splits["train"]
    ix = torch.randint(0, X.shape[0], (32,), generator=g)
    return X[ix], Y[ix]


def _finite(v):
    return v if v is not None and math.isfinite(v) else None
