"""
Headless CLI:

    python -m core train  --model M [--preset P] [--data FILE] [--steps N] [--seed S]
                          [--capture-every K] [--device D] [--intervene STEP:ACTION ...] [--no-save] [--json]
    python -m core sample --model bigram [--data FILE] [--seed S] [-n N] [--sampler torch|lecture]
    python -m core export RUN --tensorboard DIR
    python -m core runs start SPEC.json [--json] | list [--json] | show ID [--json] | stop ID
    python -m core experiment run SPEC.toml [...] | show NAME [--json] | test NAME [--json]

Like a page, the CLI turns its arguments into a job spec and lets core.runs.spec
build the dataset, model and batches (core.runs.spec is where core meets data/).
"""

import argparse
import math
import sqlite3
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from core.doctor import cli as doctor_cli
from core.experiments import commands as experiment_commands
from core.models.presets import MAKEMORE_SEED, MODELS, get_preset
from core.runs import commands as runs_commands
from core.runs import settings, storage, strict_json
from data import check_file, plural

CHUNK_SECONDS = 0.05  # train: look at the page's commands about this often, as a page's worker does
FLUSH_SECONDS = 0.5   # and write to the runs file this often (the dashboard shows the run live)


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, exit 2
        raise CliError(message)


def whole_number(s, least=0):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
    if v < least:
        raise argparse.ArgumentTypeError(f"expected a number >= {least}, got {v}")
    return v


def at_least_one(s):
    return whole_number(s, least=1)


# more torch threads than this only oversubscribes the machine (a million segfaults inside OpenMP)
MAX_THREADS = 4 * settings.cores()


def thread_count(s):
    v = whole_number(s, least=1)
    if v > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_THREADS} (4 per core on this machine), got {v}")
    return v


MAX_SAMPLES = 10_000  # names to print; more is a typo, and a billion would run for hours


def sample_count(s):
    v = whole_number(s)
    if v > MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_SAMPLES:,}, got {v:,}")
    return v


def positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {s}")
    return v


def make_parser():
    p = _Parser(prog="python -m core", description="Zero to Hero Lab, headless.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a lecture model and report losses and diagnostics")
    t.add_argument("--model", required=True, choices=MODELS)
    t.add_argument("--preset", help="lecture scenario (see --help of each model)")
    t.add_argument("--data", help="a text file (one word per line; running text for gpt). "
                                  "Default: the offline SSA names")
    t.add_argument("--steps", type=whole_number, help="training steps (0 = evaluate the fresh model)")
    t.add_argument("--seed", type=whole_number)
    t.add_argument("--capture-every", type=whole_number, help="record histograms every k steps (0 = off)")
    t.add_argument("--lr", type=positive_float, help="learning rate (before the decay)")
    t.add_argument("--batch-size", type=whole_number)
    t.add_argument("--gain", type=positive_float, help="deep: the gain on Linear weights")
    t.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    t.add_argument("--threads", type=thread_count, default=1, help=f"torch threads, 1 to {MAX_THREADS}")
    t.add_argument("--intervene", action="append", metavar="STEP:ACTION",
                   help="before STEP trains: scale:LAYER:K, reinit:LAYER[:kaiming], lr:VALUE or bn:train|eval "
                        "(repeatable; LAYER as the JSON's weights and activations name it)")
    t.add_argument("--no-save", action="store_true",
                   help="do not keep the run in the runs file (the dashboard's Runs page will not list it)")
    t.add_argument("--json", action="store_true", help="end with one line of JSON")
    s = sub.add_parser("sample", help="sample names from the count bigram")
    s.add_argument("--model", default="bigram", choices=["bigram"])
    s.add_argument("--data")
    s.add_argument("--seed", type=whole_number, default=MAKEMORE_SEED)
    s.add_argument("-n", type=sample_count, default=10, help=f"how many names, at most {MAX_SAMPLES:,}")
    s.add_argument("--sampler", default="torch", choices=["torch", "lecture"])
    e = sub.add_parser("export", help="write a saved run as TensorBoard event files")
    e.add_argument("run", help="the run's id (or its first characters), as the Runs page and --json show it")
    e.add_argument("--tensorboard", required=True, metavar="DIR",
                   help="the log directory: the run lands in DIR/NAME-ID; view with tensorboard --logdir DIR")
    runs_commands.add_parser(sub)
    experiment_commands.add_parser(sub)
    doctor_cli.add_parser(sub)
    return p


# -----------------------------------------------------------------------------


def data_source(path):
    """The spec's data entry for --data (None = the offline SSA names). A folder, a device or a FIFO is
    refused here, at once: before torch's import, and without opening it."""
    if path is not None and not path.strip():
        raise CliError("--data needs the path of a text file (leave it out for the offline SSA names)")
    if path:
        check_file(path)
    return {"kind": "file", "path": path} if path else {"kind": "ssa"}


def train(args, out=print):
    source = data_source(args.data)
    # torch and what needs it load here, not at the top: a mistyped argument is answered in a fraction of a
    # second instead of after torch's import (~1.5-2.5 s on these machines)
    from core.runs.spec import build_job
    from core.training.loop import configure_torch

    configure_torch(args.threads)
    preset = get_preset(args.model, args.preset)
    if args.gain is not None and preset.model != "deep":
        raise CliError("--gain applies to --model deep only")
    # the same spec a page would send to a worker; build_job checks it and builds the run's parts
    over = dict(steps=args.steps, seed=args.seed, capture_every=args.capture_every, lr=args.lr,
                batch_size=args.batch_size)
    spec = dict(model=preset.model, preset=preset.name, data=source, device=args.device,
                train={k: v for k, v in over.items() if v is not None},
                model_kw={} if args.gain is None else dict(gain=args.gain))
    if args.intervene:
        if preset.model == "bigram":
            raise CliError("--intervene needs a model that trains; the count bigram only counts")
        spec["interventions"] = args.intervene  # checked by build_job: syntax, step, layer names
    model, batches, cfg, probe, info, ds = build_job(spec)
    out(ds.describe())
    if preset.model == "bigram":
        return train_bigram(preset, model, ds, args, out)
    out(f"{preset.model}/{preset.name}: {info['params']:,} parameters; {plural(cfg.steps, 'step')}, "
        f"lr {cfg.lr}{f' -> {cfg.lr_final} at {cfg.lr_decay_step:,}' if cfg.lr_decay_step else ''}, "
        f"batch {cfg.batch_size or 'full'}, seed {cfg.seed}, capture every {cfg.capture_every or 'never'}")
    with _runs_file(save=not args.no_save) as db:
        return _train(args, out, spec, preset, model, batches, cfg, probe, info, db)


@contextmanager
def _runs_file(save):
    """The runs file the run is recorded in: the dashboard's, or with --no-save a throwaway one."""
    from core.runs.db import RunDB
    with tempfile.TemporaryDirectory(prefix="zth-no-save-") if not save else nullcontext() as folder:
        db = RunDB(Path(folder) / "runs.sqlite" if folder else None, busy_seconds=settings.busy_seconds())
        try:
            yield db
        finally:
            db.close(check_again=False)  # its write-ahead log folds back into the file


def _train(args, out, spec, preset, model, batches, cfg, probe, info, db):
    """Train in chunks, as a page's worker does, writing to the runs file as it goes: the run shows live on
    the dashboard, whose Pause, Step and Stop reach this loop (core.runs.remote)."""
    import torch

    from core.runs.findings import run_findings, statistics
    from core.runs.remote import Remote, next_chunk
    from core.runs.store import RunStore
    from core.training.loop import Run, run_name
    saved = not args.no_save
    store = RunStore(db=db, name=run_name(model, info), spec=spec)
    store.set_meta(source="cli", worker=saved)  # worker: a page offers Pause and Stop, and this loop obeys them
    run = Run(model, batches, cfg, store=store, device=info["device"], meta=info, probe=probe,
              interventions=spec.get("interventions"))

    def flush():
        store.flush(step=run.step, steps_per_s=run.steps_per_s if run.train_seconds > 0 else None)

    remote = Remote(store, lambda s: run.pause() if s == "paused" else run.resume(), flush) if saved else None
    if saved:
        flush()
        out(f"run {store.run_id}: watch it live on the dashboard's Runs page")
    report_every = max(1, cfg.steps // 20) if cfg.steps >= 1000 else 0
    next_report, chunk, last_flush = report_every, 1, time.monotonic()
    t0 = time.time()
    try:
        while not run.done:
            n = remote.allowed(chunk) if remote else chunk
            if report_every:
                n = min(n, next_report - run.step)
            t = time.perf_counter()
            done = run.advance(n)
            chunk = next_chunk(chunk, n, done, time.perf_counter() - t, CHUNK_SECONDS)
            if report_every and run.step >= next_report and not run.done:
                out(f"{run.step:7d}/{cfg.steps:7d}: loss {run.store.last_loss():.4f}")
                next_report += report_every
            if remote is not None and not run.done:
                why = remote.took(done) or remote.look()  # may hold the loop here while paused on the page
                if why:
                    run.stop()
                    store.set_meta(message=f"{why} at step {run.step:,}")
                    out(f"{why} at step {run.step:,}")
            if saved and time.monotonic() - last_flush > FLUSH_SECONDS:
                flush()
                last_flush = time.monotonic()
    except KeyboardInterrupt:  # Ctrl-C: the run is kept as stopped, with what it recorded
        run.stop()
        store.set_meta(message=f"stopped by Ctrl-C at step {run.step:,}")
        run.close()
        flush()
        raise
    if run.state == "finished" and cfg.steps == 0:
        # --steps 0: the fresh model's loss on a first minibatch, as step 0 would see it
        X, Y = batches.get_batch("train")
        with torch.no_grad():
            run.init_loss = model(X, Y)[1].item()
        run.store.set_meta(init_loss=run.init_loss)
    res = dict(model=preset.model, preset=preset.name, params=info["params"], steps=run.step,
               init_loss=run.init_loss, train_loss=run.final.get("train"), val_loss=run.final.get("val"),
               steps_per_s=None if cfg.steps == 0 else round(run.steps_per_s, 1),
               seconds=round(time.time() - t0, 2), diverged=run.state == "diverged",
               diverged_at=run.diverged_at, state=run.state, run=store.run_id if saved else None,
               interventions=run.interventions.record())
    cap = run.store.latest_capture()
    if cap is not None:
        res["capture_step"] = cap.step
    res.update(statistics(cap))
    res["weights"] = [w for w in res["weights"] if len(w["shape"]) == 2]  # lecture 4's `if p.ndim == 2`
    # the findings the page shows, from the same records (core.runs.findings)
    res["findings"] = [f.to_dict() for f in run_findings(run.store, spec, state=run.state,
                                                         diverged_at=run.diverged_at)]
    run.close()
    flush()
    for f in res["findings"]:
        if f["severity"] != "ok":
            out(f"{f['severity']}: {f['text']}" + (f" Fix: {f['fix']}" if f["fix"] else ""))
    if run.state == "diverged":
        out(f"diverged at step {run.diverged_at}: the loss became non-finite")
    elif res["train_loss"] is None:  # stopped before the end: no final estimate, the last minibatch's loss
        out(f"{run.state} at step {run.step:,}: last minibatch loss {store.last_loss():.4f}")
    else:
        out(f"train {res['train_loss']:.4f}  val {res['val_loss']:.4f}" if res["val_loss"] is not None
            else f"train {res['train_loss']:.4f}")
    return res


def train_bigram(preset, model, ds, args, out):
    from data import bigrams  # see train()
    xs, ys = bigrams(ds.words, ds.stoi)
    t0 = time.time()
    model.fit(xs, ys)
    log_likelihood = model.log_likelihood(xs, ys).item()
    nll = model.nll(xs, ys).item()
    out(f"{len(xs):,} bigrams; average negative log likelihood {nll:.4f}")
    return dict(model="bigram", preset=preset.name, params=0, steps=0, init_loss=nll, train_loss=nll,
                val_loss=None, steps_per_s=None, seconds=round(time.time() - t0, 2), diverged=False,
                diverged_at=None, state="finished", activations=[], weights=[], findings=[],
                log_likelihood=log_likelihood, n=len(xs))


def sample(args, out=print):
    source = data_source(args.data)
    import torch  # here, not at the top: see train()

    from core.models.bigram import Bigram
    from core.runs.spec import load_data
    from core.training.sampling import sample_bigram
    from data import bigrams
    ds = load_data("bigram", source, 1)
    model = Bigram(ds.vocab_size).fit(*bigrams(ds.words, ds.stoi))
    g = torch.Generator().manual_seed(args.seed)
    words = [ds.vocab.decode(w) + "." for w in sample_bigram(model.P, args.n, g, args.sampler)]
    for w in words:
        out(w)
    return words


def export(args, out=print):
    from core.runs import export as tb  # tensorboard's protos load here, not for train or sample
    from core.runs.db import RunDB
    db = RunDB()
    try:
        folder, n = tb.tensorboard(db, args.run, args.tensorboard)
    except OSError as e:  # a folder that cannot be made or written (a file, no permission, a full disk)
        raise CliError(f"cannot write the event files under {args.tensorboard}: {e.strerror or e}") from None
    out(f"{folder}: {n['scalars']:,} scalars, {n['histograms']:,} histograms, {n['interventions']} interventions; "
        f"view with: tensorboard --logdir {args.tensorboard}")
    return folder


def main(argv=None):
    try:
        args = make_parser().parse_args(argv)
        if args.cmd == "train":
            res = train(args, out=(lambda *a: print(*a, file=sys.stderr)) if args.json else print)
            if args.json:
                print(strict_json.dumps(res))  # strict JSON: NaN and inf become null
            return 1 if res["diverged"] else 0
        if args.cmd == "export":
            export(args)
            return 0
        if args.cmd == "runs":
            return runs_commands.main(args)
        if args.cmd == "experiment":
            return experiment_commands.main(args)
        if args.cmd == "doctor":
            return doctor_cli.main(args)
        sample(args)
        return 0
    except (CliError, ValueError) as e:  # data's DataError and the spec's SpecError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (sqlite3.Error, OSError, storage.FileBusy) as e:  # the runs file: full, busy, unwritable
        what = ("disk full: free space on the data directory's disk, or delete old runs (python -m core runs list)"
                if storage.is_disk_full(e) else f"the runs file could not be written: {e}")
        print(f"error: {what}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
