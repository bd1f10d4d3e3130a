"""
The coordinating process of an experiment: it alone asks and tells the Optuna study. Each trial is an
ordinary run -- a page's worker, its recorder, the runs file -- so it shows on the Runs page and opens
live with every panel. The coordinator follows the trials through the runs file:

    study.ask -> run spec (hold_test) -> backend.start -> worker trains, writes dev loss every eval_every
    runs file evals -> trial.report(dev loss, step) -> should_prune? -> stop the run, tell PRUNED
    run finished -> tell its final dev loss; diverged, failed, stopped, lost -> tell FAIL with the reason

Backends: LocalPool (K worker processes on this machine, under the server's cap) and
core.runs.ray_backend.RayCluster (Ray actors on a cluster, relaying into the runs file here).
A coordinator that went away (a restart, a kill) leaves its trials RUNNING in the study; the next one
re-attaches to the runs still training, tells the ones that ended meanwhile, and goes on with the budget.

    python -m core.experiments.coordinator NAME [--workers K] [--ray ADDRESS]   (what --detach starts)
"""

import argparse
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from core.experiments import study as studies
from core.experiments.spec import ExperimentError
from core.runs import liveness, settings
from core.runs.db import LIVE_STATES
from core.runs.manager import CapacityError, RunManager

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
POLL_SECONDS = 0.25    # how often the runs file is read for new dev losses and ended runs
STOP_WAIT_SECONDS = 15  # a stopped experiment waits this long for its trials' workers to write their end


class LocalPool:
    """K worker processes at a time on this machine, each trial a run started as a page starts one (RunManager),
    under the server's cap on live runs: a pool never takes the slots the cap keeps for pages beyond it."""

    kind = "local"

    def __init__(self, workers=None):
        self.manager = RunManager()
        self.db = self.manager.db
        cap, why = settings.max_runs()
        want = workers or settings.cores()
        self.size = max(1, min(want, cap))
        self.note = (f"{self.size} local worker processes" +
                     (f" (asked for {want}; the server's cap is {cap}: {why})" if want > cap else ""))
        self.lost = None  # a pool on this machine is never lost; a cluster may be

    def start(self, spec, name):
        """(run id, node), or None when the server is full right now (pages' runs count too): try again later."""
        try:
            run_id = self.manager.start(spec, name, orphan_timeout=math.inf)  # no page watches a trial: it runs on
        except CapacityError:
            return None
        return run_id, liveness.HOST

    def pump(self):
        self.manager.reap()  # a killed worker's run ends here with its cause ("signal 9, SIGKILL")

    def stop(self, run_id):
        self.db.send(run_id, "stop")

    def close(self):
        self.manager.close()


@dataclass
class Active:
    trial: optuna.trial.Trial
    run_id: str
    last_step: int = -1
    node: str | None = None  # where it trains, once known


class Coordinator:

    def __init__(self, exp, backend, out=print):
        self.exp, self.backend, self.out = exp, backend, out
        self.db = backend.db
        self.eval_every = exp.run_spec({})["train"]["eval_every"]
        self.study = studies.create(exp, self.eval_every)
        self.dists = studies.distributions(exp)
        self.active = {}     # trial number -> Active
        self.waiting = None  # (trial, spec): asked, but the server was full; started first when a slot frees
        self.ending = {}     # run id -> message to leave on the run once its worker has written its end
        self.stopping = None

    # --- the loop ------------------------------------------------------------------

    def run(self):
        """Until the budget is spent (or a stop, or a lost cluster); returns studies.summary()."""
        with studies.coordinating(self.exp.name):
            self.study.set_user_attr("ended", None)
            self.study.set_user_attr("launched", 0)  # the lock says "running" from here on
            if "started" not in self.study.user_attrs:
                self.study.set_user_attr("started", time.time())
            self._reattach()
            self.out(f"{studies.describe(self.exp)}; {self.backend.note}")
            while True:
                self.backend.pump()
                for a in list(self.active.values()):
                    self._follow(a)
                self._leave_messages()
                if self.stopping or self.backend.lost:
                    break
                while len(self.active) < self.backend.size and (self.waiting or self._budget_left()):
                    if not self._start_one():
                        break
                if not self.active and not self.waiting and not self.ending and not self._budget_left():
                    break
                time.sleep(POLL_SECONDS)
            self._end()
        return studies.summary(self.exp.name, self.study)

    def stop(self, why="stopped: the experiment was stopped"):
        """From a signal handler or another thread: end the loop, stopping the trials still training."""
        self.stopping = why

    def _budget_left(self):
        # enqueued (WAITING) trials are not asked yet: the next ask takes them first
        n = len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE,
                                                               TrialState.PRUNED, TrialState.FAIL)))
        cap = self.exp.trials
        if self.exp.sampler == "grid":  # the grid is walked once
            cap = min(cap, math.prod(len(d.values) for d in self.exp.space.values()))
        if n >= cap:
            return False
        return not self.exp.minutes or time.time() < self.study.user_attrs["started"] + 60 * self.exp.minutes

    def _start_one(self):
        if self.waiting is None:
            trial = self.study.ask(self.dists)
            self.waiting = (trial, self.exp.run_spec(trial.params, trial=trial.number))
        trial, spec = self.waiting
        started = self.backend.start(spec, f"{self.exp.name}#{trial.number}")
        if started is None:
            return False  # the server is full (pages' runs): the asked trial waits for a slot
        self.waiting = None
        run_id, node = started  # node None: a cluster places it later (_follow records where)
        for k, v in dict(run=run_id, backend=self.backend.kind, node=node).items():
            trial.set_user_attr(k, v)
        self.active[trial.number] = Active(trial, run_id, node=node)
        self.out(f"trial {trial.number:>3} started   run {run_id} on {node or 'the Ray cluster'}: "
                 f"{_params(trial.params)}")
        return True

    def _reattach(self):
        """Trials a previous coordinator left RUNNING: follow their runs again (the runs file says how they went)."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # (WAITING: enqueued)
            trial = optuna.trial.Trial(self.study, t._trial_id)
            run_id = t.user_attrs.get("run")
            if run_id is None or self.db.get_run(run_id) is None:
                self._fail(trial, "its coordinator stopped before its run started" if run_id is None
                           else f"its run {run_id} was deleted")
                continue
            self.active[t.number] = Active(trial, run_id, max(t.intermediate_values, default=-1),
                                           t.user_attrs.get("node"))
            self.out(f"trial {t.number:>3} resumed   run {run_id}")

    def _follow(self, a):
        row = self.db.get_run(a.run_id)
        if row is None:
            self._fail(a.trial, f"its run {a.run_id} was deleted", a)
            return
        ended = row["state"] not in LIVE_STATES
        if a.node is None and row["meta"].get("node"):
            a.node = row["meta"]["node"]
            a.trial.set_user_attr("node", a.node)  # where the cluster placed it
        for step, _, val in self.db.evals(a.run_id):
            if step <= a.last_step:
                continue
            a.last_step = step
            if val is None or not math.isfinite(val):
                continue
            a.trial.report(val, step)
            if not ended and self.exp.prune and a.trial.should_prune():
                why = studies.prune_reason(self.study, step, val, exclude=a.trial.number)
                self.backend.stop(a.run_id)
                a.trial.set_user_attr("why", why)
                self._tell(a.trial, state=TrialState.PRUNED)  # keeps its last dev loss as its value
                self.ending[a.run_id] = why
                del self.active[a.trial.number]
                self.out(f"trial {a.trial.number:>3} pruned    {why}")
                return
        if not ended:
            return
        final = (row["meta"].get("final") or {}).get("val")
        if row["state"] == "finished" and final is not None and math.isfinite(final):
            self._tell(a.trial, final)
            del self.active[a.trial.number]
            best = studies.best_of([studies.trial_row(t) for t in self.study.get_trials(deepcopy=False)])
            self.out(f"trial {a.trial.number:>3} finished  dev {final:.4f}  {_params(a.trial.params)}  "
                     f"(best {best['dev_loss']:.4f}, trial {best['number']})")
            return
        why = row["meta"].get("message") or f"its run ended {row['state']}"
        if row["state"] == "diverged":
            why = f"diverged: {why}"
        self._fail(a.trial, why, a)

    def _fail(self, trial, why, a=None):
        trial.set_user_attr("why", why)
        self._tell(trial, state=TrialState.FAIL)
        if a is not None:
            del self.active[trial.number]
        self.out(f"trial {trial.number:>3} failed    {why.splitlines()[0]}")

    def _tell(self, trial, value=None, state=None):
        try:
            self.study.tell(trial, value, state=state)
        except RuntimeError as e:
            # a hack, admitted: GridSampler calls study.stop() when the last grid point is told, which only an
            # optimize() loop may do. The trial is stored before that (optuna's tell does it in a finally); the
            # walked grid ends this loop through _budget_left.
            if "Study.stop" not in str(e):
                raise

    def _leave_messages(self):
        """A pruned trial's run says why it stopped, once its worker has written its own last word."""
        for run_id, why in list(self.ending.items()):
            row = self.db.get_run(run_id)
            if row is None or row["state"] not in LIVE_STATES:
                if row is not None:
                    self.db.update_run(run_id, meta=dict(message=why))
                del self.ending[run_id]

    def _end(self):
        why = self.stopping or self.backend.lost
        if self.waiting is not None:
            self._fail(self.waiting[0], why or "never started")
            self.waiting = None
        for a in list(self.active.values()):  # (a stop or a lost cluster: the budget is not spent)
            self.backend.stop(a.run_id)
            self.ending[a.run_id] = why
            self._fail(a.trial, why, a)
        t0 = time.time()
        while self.ending and time.time() - t0 < STOP_WAIT_SECONDS:  # their workers write their last rows
            self.backend.pump()
            self._leave_messages()
            time.sleep(POLL_SECONDS)
        status = "finished" if not why else "stopped" if self.stopping else "failed"
        self.study.set_user_attr("ended", dict(status=status, at=time.time(), why=why))
        s = studies.summary(self.exp.name, self.study)
        best = s["best"]
        self.out(f"{self.exp.name} {status}" + (f" ({why})" if why else "") + ": " +
                 (f"best dev loss {best['dev_loss']:.4f}, trial {best['number']} {_params(best['params'])}"
                  if best else "no trial finished"))


def _params(params):
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def backend_for(workers=None, ray=None):
    """The local pool, or a Ray cluster when an address is given (never the pool in its place)."""
    if ray:
        from core.runs.ray_backend import RayCluster  # Ray is optional (requirements-ray.txt)
        return RayCluster(ray, workers)
    return LocalPool(workers)


def detach(exp, workers=None, ray=None):
    """The coordinator in a process of its own (its own session: a closed terminal or a restarted dashboard
    server leaves it running); the study is made first, so it finds the spec there. Returns its pid."""
    s = studies.create(exp, exp.run_spec({})["train"]["eval_every"])
    s.set_user_attr("ended", None)
    s.set_user_attr("launched", time.time())  # "starting" until the coordinator holds its lock
    cmd = [sys.executable, "-m", "core.experiments.coordinator", exp.name]
    if workers:
        cmd += ["--workers", str(workers)]
    if ray:
        cmd += ["--ray", ray]
    with open(studies.folder(exp.name) / "coordinator.log", "ab") as log:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT})
    threading.Thread(target=p.wait, daemon=True).start()  # a long-lived parent (the server) leaves no zombie
    return p.pid


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m core.experiments.coordinator")
    p.add_argument("name")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--ray", default=None)
    args = p.parse_args(argv)
    try:
        study = studies.load(args.name)
        exp = studies.spec_of(study)
    except (ExperimentError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    try:
        backend = backend_for(args.workers, args.ray)
    except ValueError as e:  # no cluster at --ray: the page and `experiment show` say why, not "interrupted"
        study.set_user_attr("ended", dict(status="failed", at=time.time(), why=str(e)))
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return serve(exp, backend)


def serve(exp, backend, out=None):
    """Run a coordinator to its end, SIGTERM and SIGINT stopping it cleanly; returns an exit code."""
    out = out or (lambda line: print(time.strftime("%H:%M:%S"), line, flush=True))
    try:
        c = Coordinator(exp, backend, out)
    except BaseException:
        backend.close()
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: c.stop(f"stopped: the experiment was asked to end "
                                                        f"({signal.Signals(signum).name})"))
    try:
        c.run()
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
