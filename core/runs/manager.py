"""
The server side of runs: start a worker process per run (a cap on live ones), command it,
reap the ones whose page went away.
"""

import os
import subprocess
import sys
import time

from core.runs.db import RunDB

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout: core/ sits in it


class CapacityError(RuntimeError):
    """The server already runs its maximum number of trainings."""


# -----------------------------------------------------------------------------
# the server's side


def pid_alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class RunManager:
    """
    The registry of live runs for one server: starts worker processes, forwards
    commands, and tidies up after workers that died (or a server that restarted).
    """

    def __init__(self, db_path=None, max_live=2, orphan_timeout=30.0):
        self.db = RunDB(db_path)
        self.db_path = str(self.db.path)
        (self.db.path.parent / "logs").mkdir(exist_ok=True)
        self.max_live = max_live
        self.orphan_timeout = orphan_timeout
        self.procs = {}
        self.reap()

    def start(self, spec, name, session=None, paused=False):
        """Start a worker for spec; returns the run id. CapacityError when the server is full."""
        self.reap()
        live = self.db.live_runs()
        if len(live) >= self.max_live:
            raise CapacityError(f"{len(live)} runs are training on this server already (the cap is "
                                f"{self.max_live}); stop one, or wait for one to finish.")
        run_id = self.db.create_run(spec, name, session)
        # a plain subprocess, not multiprocessing: a Streamlit script runs as a fake __main__ that
        # spawn/forkserver would try to re-import in the child
        log = open(self.db.path.parent / "logs" / f"{run_id}.log", "ab")
        cmd = [sys.executable, "-m", "core.runs.worker", self.db_path, run_id, str(self.orphan_timeout)]
        if paused:
            cmd.append("--paused")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT})
        log.close()
        self.procs[run_id] = p
        self.db.update_run(run_id, pid=p.pid)
        return run_id

    def send(self, run_id, command):
        self.db.send(run_id, command)

    def stop(self, run_id, wait=5.0):
        """Ask the worker to stop and wait for it to write its last rows."""
        self.db.send(run_id, "stop")
        p = self.procs.pop(run_id, None)
        if p is not None:
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.terminate()
                p.wait(2)
        self.reap()

    def stop_all(self, wait=5.0):
        for run_id in list(self.procs):
            self.stop(run_id, wait)

    def reap(self):
        """Runs marked live whose worker is gone (crashed, killed, server restarted) become 'stopped'."""
        for run_id, p in list(self.procs.items()):
            if p.poll() is not None:
                del self.procs[run_id]
        for r in self.db.live_runs():
            if r["id"] in self.procs:
                continue
            if not pid_alive(r["pid"]) and (r["pid"] or time.time() - r["created"] > 10):
                self.db.update_run(r["id"], state="stopped",
                                   meta=dict(message="stopped: its worker ended (the server restarted "
                                                     "or the process was killed); what it recorded is kept"))

    def wait(self, run_id, timeout=60.0, states=("finished", "stopped", "diverged", "failed")):
        """Block until the run reaches one of states (tests and scripts)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            r = self.db.get_run(run_id)
            if r and r["state"] in states:
                return r
            time.sleep(0.05)
        raise TimeoutError(f"run {run_id} still {self.db.get_run(run_id)['state']} after {timeout} s")
