"""
The server side of runs: start a worker process per run (a cap on live ones), command it, and
notice the ones whose worker went away (core.runs.liveness), every CHECK_SECONDS and on every
start and stop. Who may stop or delete a run: may_control().
"""

import os
import sqlite3
import subprocess
import sys
import threading
import time
import traceback

from core.runs import liveness, settings, storage
from core.runs.db import FREE_COMMANDS, LIVE_STATES, RunDB

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout: core/ sits in it
CHECK_SECONDS = 2.0  # a server looks for dead workers this often: a page shows a kill within a tick after


class CapacityError(RuntimeError):
    """A run cannot start now; the message says why and what to do (a page shows it as is)."""


class RunsFileBusy(CapacityError):
    """Another program holds the runs file's write lock."""


class NoSpace(CapacityError):
    """The disk (or the runs file's cap) has no room for another run."""


class NoCluster(CapacityError):
    """The server trains on a Ray cluster (ZTH_RAY_ADDRESS) that is not there: nothing trains here instead."""


class NoWorker(ValueError):
    """A live run that trains in its own process (`python -m core train`, a notebook): no worker reads its
    commands, so it cannot be stopped or deleted from here. A ValueError: the CLI answers it in one line."""


def owner(row, session):
    """Whose run it is, seen from browser session `session`: "no page", "this session" or "another"."""
    return "no page" if not row.get("session") else "this session" if row["session"] == session else "another"


def may_control(row, session, teacher=False):
    """Who may stop, pause or delete a run: the browser session that started it; anyone, for a run no
    page started (the CLI's, a notebook's own process on this data directory); everyone in teacher mode.
    Opening, comparing and exporting are for everyone."""
    return teacher or owner(row, session) != "another"


def _cluster(spec):
    """The Ray cluster a run trains on (server_cluster). Lecture 1's micrograd MLP stays here: it is tiny, and
    the page reads its frames' files."""
    return None if spec.get("model") == "micrograd" else server_cluster()


def server_cluster():
    """The server's Ray cluster (ZTH_RAY_ADDRESS), checked now: NoCluster when it is set but not there, and
    nothing trains here in its place. None: this machine."""
    address = settings.ray_address()
    if not address:
        return None
    from core.runs.ray_backend import ClusterError, check  # Ray is optional (requirements-ray.txt)
    try:
        check(address)
    except ClusterError as e:
        raise NoCluster(f"{e} (this server's ZTH_RAY_ADDRESS)") from None
    return address


# -----------------------------------------------------------------------------


class RunManager:
    """
    The registry of live runs for one server: starts worker processes, forwards commands, and ends
    the runs whose worker died (or whose server restarted). Thread-safe: a server's pages share one.
    Settings left None come from the environment (core.runs.settings).
    """

    def __init__(self, db_path=None, max_live=None, orphan_timeout=None, keep_runs=None, keep_days=None,
                 check_every=None):
        self.db = RunDB(db_path)
        self.db_path = str(self.db.path)
        (self.db.path.parent / "logs").mkdir(exist_ok=True)
        cap, why = settings.max_runs()
        self.max_live, self.cap_note = (cap, why) if max_live is None else (max_live, "this server's setting")
        self.local_cap = settings.local_max_runs() if max_live is None else None  # with a cluster: runs kept here
        self.orphan_timeout = settings.orphan_seconds() if orphan_timeout is None else orphan_timeout
        self.keep_runs = settings.keep_runs() if keep_runs is None else keep_runs
        self.keep_days = settings.keep_days() if keep_days is None else keep_days
        self.procs = {}
        self._lock = threading.RLock()  # the worker table, and the cap check with the start that follows it
        self._actor = threading.local()  # who acts from this thread: see acting()
        self._closed = threading.Event()
        self.reap()
        self.prune()
        if check_every:
            threading.Thread(target=self._check, args=(check_every,), name="runs-check", daemon=True).start()

    def start(self, spec, name, session=None, paused=False, orphan_timeout=None):
        """Start a worker for spec; returns the run id. CapacityError (or a subclass) when it cannot.
        orphan_timeout: None = the server's; inf for a run no page watches (the CLI's)."""
        ray = _cluster(spec)  # (outside the lock: a cluster that does not answer takes seconds to say so)
        with self._lock:  # two pages pressing Start at once must not both pass the cap
            self.reap()
            live = self.db.live_runs()
            if len(live) >= self.max_live:
                raise CapacityError(f"{len(live)} runs are training on this server already (the cap is "
                                    f"{self.max_live}: {self.cap_note}); stop one, or wait for one to finish.")
            here = None if ray else self.local_cap
            if here and sum(liveness.source(r) != "ray" for r in live) >= here[0]:
                raise CapacityError(f"{here[0]} runs are training on this server itself already, beside those on "
                                    f"the Ray cluster (the cap here is {here[0]}: {here[1]}); stop one, or wait "
                                    "for one to finish.")
            self.prune()
            try:
                run_id = self.db.create_run(spec, name, session)
                if ray:  # counted as the cluster's from now on, not once its relay has joined it (seconds)
                    self.db.update_run(run_id, meta=dict(backend="ray", ray=ray))
            except storage.FileBusy as e:
                raise RunsFileBusy(str(e)) from None
            except sqlite3.Error as e:
                if not storage.is_disk_full(e):
                    raise
                raise NoSpace(storage.disk_full_message(self.db.path, self.db.count_runs())) from None
            # a plain subprocess, not multiprocessing: a Streamlit script runs as a fake __main__ that
            # spawn/forkserver would try to re-import in the child
            log = open(self.db.log_path(run_id), "ab")
            orphan = self.orphan_timeout if orphan_timeout is None else orphan_timeout
            # the worker is told who started it: a server gone by the time it looks is an outage, not a closed tab
            cmd = [sys.executable, "-m", "core.runs.worker", self.db_path, run_id, str(orphan), f"--server={os.getpid()}"]
            if paused:
                cmd.append("--paused")
            if ray:  # the run trains on the cluster; its process here only relays, and loads no torch
                cmd[2:3] = ["core.runs.ray_backend"]
                cmd.append(f"--ray={ray}")
            try:
                p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT})
            except OSError as e:  # out of processes or memory
                self.db.end_if_live(run_id, f"its worker could not start: {e}")
                raise CapacityError(f"a worker could not start on this server: {e}") from None
            finally:
                log.close()
            self.procs[run_id] = p
            self.db.update_run(run_id, **liveness.identity(p.pid))
        return run_id

    def acting(self, session, teacher=False):
        """Say which browser session calls from this thread (a page does, each time it asks for the
        manager): send, stop and delete then refuse a run that is not its own (may_control). A thread
        that never says -- the CLI, a test, the server's own check -- may do anything."""
        self._actor.who = None if session is None else (session, teacher)

    def refuses(self, run_id, command="stop"):
        """Whether this thread's session may not send `command` to the run."""
        who = getattr(self._actor, "who", None)
        if who is None or command.startswith(FREE_COMMANDS):
            return False
        row = self.db.get_run(run_id)
        return row is not None and not may_control(row, *who)

    def send(self, run_id, command):
        """False when the run is not this session's, or the runs file was too busy to take the command."""
        if self.refuses(run_id, command):
            return False
        return self.db.send(run_id, command)

    def stop(self, run_id, wait=5.0):
        """Ask the worker to stop and wait for it to write its last rows; a worker that is gone is
        ended here with its cause. False when the run is not this session's; NoWorker when no worker
        serves it (its own process trains it and reads no commands)."""
        if self.refuses(run_id):
            return False
        r = self.db.get_run(run_id)
        if (r is not None and r["state"] in LIVE_STATES and not liveness.has_worker(r)
                and liveness.worker_gone(r) is None):
            raise NoWorker(f"run {run_id} trains in its own process (pid {r['pid']}: `python -m core train` or a "
                           "notebook), which reads no commands: stop it there (Ctrl-C, or interrupt the kernel), "
                           "then delete it.")
        self.db.send(run_id, "stop")
        with self._lock:
            p = self.procs.pop(run_id, None)
        exits = {}
        if p is not None:
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.terminate()  # a worker stops cleanly on SIGTERM too
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                # still starting (loading torch) or stuck: ended at the user's word, so "stopped", not "failed"
                self.db.end_if_live(run_id, f"stopped by the user; its worker had not answered within {wait:g} s "
                                            f"and was ended ({liveness.exit_cause(p.returncode)})", state="stopped")
            exits[run_id] = p.returncode
        else:  # another server's worker, or the CLI's: it reads the command within a fraction of a second
            t0 = time.time()
            while time.time() - t0 < wait:
                r = self.db.get_run(run_id)
                if r is None or r["state"] not in LIVE_STATES or liveness.worker_gone(r) is not None:
                    break
                time.sleep(0.05)
        self.reap(exits)
        return True

    def stop_all(self, wait=5.0):
        for run_id in list(self.procs):
            self.stop(run_id, wait)

    def delete(self, run_id, wait=5.0):
        """Delete a run, stopping it first; False when its worker would not stop, or it is not this
        session's run; NoWorker (from stop) for a live run that no worker serves."""
        if self.refuses(run_id):
            return False
        r = self.db.get_run(run_id)
        if r is not None and r["state"] in LIVE_STATES:
            self.stop(run_id, wait)
            r = self.db.get_run(run_id)
            if r is not None and r["state"] in LIVE_STATES:
                return False
        self.db.delete_run(run_id)
        return True

    def reap(self, exits=None):
        """End the runs marked live whose worker is gone (crashed, killed, a server restart, a pid reused);
        returns their ids. exits: run id -> return code of workers already waited for."""
        exits = dict(exits or {})
        with self._lock:
            for run_id, p in list(self.procs.items()):
                if p.poll() is not None:
                    exits[run_id] = p.returncode
                    del self.procs[run_id]
            running = set(self.procs)
        return liveness.reap(self.db, exits, running)

    def prune(self):
        """The retention setting: ended runs beyond the newest keep_runs, or older than keep_days, go."""
        try:
            return self.db.prune(self.keep_runs, self.keep_days)
        except (sqlite3.Error, storage.FileBusy):  # a busy or full file: pruning waits for the next start
            return []

    def wait(self, run_id, timeout=60.0, states=("finished", "stopped", "diverged", "failed")):
        """Block until the run reaches one of states (tests and scripts)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            r = self.db.get_run(run_id)
            if r and r["state"] in states:
                return r
            self.reap()
            time.sleep(0.05)
        raise TimeoutError(f"run {run_id} still {self.db.get_run(run_id)['state']} after {timeout} s")

    def close(self):
        """A clean shutdown: the check stops and the runs file is folded back into one file. Workers go on
        (a restarted server re-attaches to them)."""
        self._closed.set()
        self.db.close()

    def _check(self, every):
        while not self._closed.wait(every):
            try:
                self.reap()
            except Exception:  # the watcher never dies of one bad look; the log says what it was
                if self._closed.is_set():
                    return
                traceback.print_exc()
