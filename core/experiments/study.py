"""
An experiment's Optuna study: one SQLite file per experiment under the data directory
(experiments/NAME/study.sqlite), so an experiment survives a restart and resumes.

Only the coordinating process (core.experiments.coordinator) asks and tells the study; workers never
touch it: they record dev loss in the runs file, and the coordinator reports it. What the study keeps:

    study attrs    spec (the Experiment), ended ({at, why}), test ({trial, test_loss, computed_at})
    trial attrs    run (its run id in the runs file), backend (local | ray), node, why (pruned or failed)

Whether a coordinator is at work is a lock on experiments/NAME/coordinator.lock, held for its life:
the system lets it go when the process dies, however it dies.
"""

import csv
import fcntl
import math
import os
import signal
import time
from contextlib import contextmanager

import numpy as np
import optuna
from optuna.trial import TrialState

from core.experiments.spec import Experiment, ExperimentError, from_dict
from core.runs.db import RunDB, default_data_dir
from core.runs.spec import load_data
from core.training.loop import TensorBatches

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the coordinator prints its own progress, one line a trial

STATES = {TrialState.RUNNING: "running", TrialState.WAITING: "running", TrialState.COMPLETE: "finished",
          TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
START_SECONDS = 60.0      # a coordinator just launched has this long to take its lock (torch loads first)
PRUNE_PERCENTILE = 75.0   # a trial in the worst quarter at a checkpoint is "far behind", not merely below median
PRUNE_STARTUP = 4         # no pruning until this many trials have finished: too little to compare with before
PRUNE_WARMUP_CHECKPOINTS = 2  # the first checkpoints are noisy (a run's loss falls fastest there)


def root():
    return default_data_dir() / "experiments"


def folder(name):
    return root() / name


def storage(name):
    """The study's storage: SQLite, waiting up to 30 s for a lock (a page reads while the coordinator writes).
    Opening it makes its tables and stamps their version when they are not there yet; two processes doing
    that at once collide on the stamp (a page reading while the coordinator starts), so one opens at a time."""
    path = folder(name) / "study.sqlite"
    with open(folder(name) / "storage.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 30}})


def exists(name):
    return (folder(name) / "study.sqlite").exists()


def names():
    """Every experiment in the data directory, newest first."""
    if not root().exists():
        return []
    found = [p for p in root().iterdir() if (p / "study.sqlite").exists()]
    return [p.name for p in sorted(found, key=lambda p: (p / "study.sqlite").stat().st_mtime, reverse=True)]


def sampler(exp, resumed=0):
    """TPE by default; grid walks every combination of the lists; random as a baseline. Seeded: the same spec
    asks the same first trials. resumed: trials the study holds already -- a resumed search's generator starts
    elsewhere, or its first random draws would repeat the trials it has."""
    seed = exp.seed + resumed
    if exp.sampler == "grid":
        return optuna.samplers.GridSampler({k: d.values for k, d in exp.space.items()}, seed=seed)
    if exp.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def pruner(exp, eval_every):
    if not exp.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.PercentilePruner(PRUNE_PERCENTILE, n_startup_trials=PRUNE_STARTUP,
                                           n_warmup_steps=PRUNE_WARMUP_CHECKPOINTS * eval_every)


def distributions(exp):
    out = {}
    for k, d in exp.space.items():
        if d.kind == "choice":
            out[k] = optuna.distributions.CategoricalDistribution(d.values)
        elif d.kind == "int":
            out[k] = optuna.distributions.IntDistribution(int(d.lo), int(d.hi), log=d.log)
        else:
            out[k] = optuna.distributions.FloatDistribution(float(d.lo), float(d.hi), log=d.log)
    return out


def create(exp, eval_every):
    """The experiment's study, made or opened; an existing one must have been made from the same spec."""
    folder(exp.name).mkdir(parents=True, exist_ok=True)
    s = optuna.create_study(study_name=exp.name, storage=storage(exp.name), direction="minimize",
                            sampler=sampler(exp), pruner=pruner(exp, eval_every), load_if_exists=True)
    stored = s.user_attrs.get("spec")
    mine = exp.to_dict()
    if stored is None:
        s.set_user_attr("spec", mine)
    elif {k: v for k, v in stored.items() if k != "trials"} != {k: v for k, v in mine.items() if k != "trials"}:
        raise ExperimentError(f"an experiment named {exp.name!r} exists with a different spec (only trials may "
                              "change when it resumes); give this one another name")
    elif stored["trials"] != mine["trials"]:
        s.set_user_attr("spec", mine)  # a larger (or smaller) budget for the rest of it
    resumed = len(s.get_trials(deepcopy=False))
    if resumed:
        s.sampler = sampler(exp, resumed)
    return s


def load(name):
    if not exists(name):
        raise ExperimentError(f"no experiment {name!r} in {root()} (python -m core experiment run SPEC.toml starts one)")
    try:
        return optuna.load_study(study_name=name, storage=storage(name))
    except KeyError:  # the file is there, the study not yet: its coordinator is making it this moment
        raise ExperimentError(f"experiment {name!r} is being created; look again in a moment") from None


def spec_of(study):
    return from_dict(study.user_attrs["spec"])


# -----------------------------------------------------------------------------
# the coordinator's lock


@contextmanager
def coordinating(name):
    """Hold the experiment's coordinator lock for the body; ExperimentError when another process holds it."""
    folder(name).mkdir(parents=True, exist_ok=True)
    f = open(folder(name) / "coordinator.lock", "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExperimentError(f"experiment {name!r} is running already (its coordinator holds "
                                  f"{folder(name) / 'coordinator.lock'})") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()


def running(name):
    """Whether a coordinator works on the experiment now (a moment's shared lock: it never blocks one)."""
    path = folder(name) / "coordinator.lock"
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def stop(name):
    """Ask the experiment's coordinator to stop (SIGTERM: it stops its trials and records why); its pid, or None
    when none runs."""
    if not running(name):
        return None
    try:
        pid = int((folder(name) / "coordinator.lock").read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (ValueError, OSError):  # it ended between the look and the signal
        return None
    return pid


# -----------------------------------------------------------------------------
# what `experiment show` and the page read


def trial_row(t):
    """One trial as `experiment show --json` prints it. A pruned trial keeps its last dev loss; a running one
    shows its latest."""
    dev = t.value if t.state in (TrialState.COMPLETE, TrialState.PRUNED) else None
    if dev is None and t.intermediate_values:
        dev = t.intermediate_values[max(t.intermediate_values)]
    return dict(number=t.number, params=t.params, state=STATES[t.state], dev_loss=_finite(dev),
                run=t.user_attrs.get("run"), backend=t.user_attrs.get("backend"), node=t.user_attrs.get("node"),
                why=t.user_attrs.get("why"), step=max(t.intermediate_values, default=None),
                seconds=None if t.datetime_start is None else
                ((t.datetime_complete.timestamp() if t.datetime_complete else time.time())
                 - t.datetime_start.timestamp()))


def _finite(v):
    return None if v is None or not math.isfinite(v) else float(v)


def best_of(rows):
    done = [r for r in rows if r["state"] == "finished" and r["dev_loss"] is not None]
    if not done:
        return None
    b = min(done, key=lambda r: r["dev_loss"])
    return dict(number=b["number"], dev_loss=b["dev_loss"], params=b["params"], run=b["run"])


def summary(name, study=None):
    """{name, trials, best, status, spec, test, ended}: status is starting, running (a coordinator works on it),
    finished, stopped, failed (a lost cluster), or interrupted (its coordinator went away before the budget was spent: run it again to resume)."""
    study = study or load(name)
    attrs = study.user_attrs
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    ended = attrs.get("ended")
    status = "running" if running(name) else (ended or {}).get("status") or (
        "starting" if time.time() - attrs.get("launched", 0) < START_SECONDS else "interrupted")
    if status == "finished" and any(r["state"] == "running" for r in rows):
        status = "interrupted"
    return dict(name=name, trials=rows, best=best_of(rows), status=status, spec=attrs.get("spec"),
                test=attrs.get("test"), ended=ended)


def checkpoint_losses(study, exclude=None):
    """{step: [dev loss of every finished trial at that checkpoint]}: what the pruner compares a trial with."""
    at = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number == exclude:
            continue
        for step, v in t.intermediate_values.items():
            at.setdefault(step, []).append(v)
    return at


def prune_reason(study, step, value, exclude=None):
    others = checkpoint_losses(study, exclude).get(step, [])
    cut = float(np.percentile(others, PRUNE_PERCENTILE)) if others else float("nan")
    return (f"pruned at step {step:,}: dev loss {value:.4f} is in the worst quarter of the {len(others)} finished "
            f"trials at that checkpoint (their {PRUNE_PERCENTILE:g}th percentile: {cut:.4f})")


# -----------------------------------------------------------------------------
# the test split, once


def evaluate_test(name):
    """The test loss of the experiment's best trial: computed on the first request and recorded; every later
    request returns the recorded number and time. Returns (result, computed_now)."""
    study = load(name)
    if "test" in study.user_attrs:
        return study.user_attrs["test"], False
    with coordinating(name):  # no coordinator may change the best trial meanwhile, and no second test runs
        study = load(name)
        if "test" in study.user_attrs:
            return study.user_attrs["test"], False
        rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
        best = best_of(rows)
        if best is None:
            raise ExperimentError(f"experiment {name!r} has no finished trial yet: nothing to evaluate on test")
        exp = spec_of(study)
        if exp.model == "gpt":
            raise ExperimentError("running text has a train and a val split only (lecture 7): no test split")
        db = RunDB()
        try:
            loaded = db.load_checkpoint(best["run"])
            row = db.get_run(best["run"])
        finally:
            db.close()
        if loaded is None or row is None:
            raise ExperimentError(f"trial {best['number']}'s run {best['run']} has no saved model any more "
                                  "(deleted from the Runs page?): its test loss cannot be computed")
        model, _ = loaded
        spec = row["spec"]
        block_size = model.get_block_size()
        ds = load_data(exp.model, spec.get("data"), block_size)
        # the first and only look at Xte/Yte in this experiment's life
        test = TensorBatches({"test": (ds.Xte, ds.Yte)}).split_loss(model, "test")
        res = dict(trial=best["number"], run=best["run"], test_loss=test, dev_loss=best["dev_loss"],
                   computed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        study.set_user_attr("test", res)
        return res, True


def write_csv(rows, f):
    """The trials table as CSV: number, state, dev loss, each hyperparameter, run, backend, node, why."""
    keys = sorted({k for r in rows for k in r["params"]})
    w = csv.writer(f)
    w.writerow(["number", "state", "dev_loss", *keys, "run", "backend", "node", "why"])
    for r in rows:
        w.writerow([r["number"], r["state"], r["dev_loss"], *[r["params"].get(k) for k in keys], r["run"],
                    r["backend"], r["node"], r["why"]])


def describe(exp: Experiment):
    """One line: what is searched, how, with what budget."""
    space = ", ".join(f"{k} {d.values if d.kind == 'choice' else f'[{d.lo:g}, {d.hi:g}]' + (' log' if d.log else '')}"
                      for k, d in exp.space.items())
    budget = f"{exp.trials} trials" + (f" or {exp.minutes:g} min" if exp.minutes else "")
    return f"{exp.name}: {exp.model}/{exp.preset}, {exp.sampler}, {budget}, pruning {'on' if exp.prune else 'off'}; {space}"
