"""
What every run's process shares, whether it trains (core.runs.worker, core.runs.micrograd_worker) or relays
a run that trains on a Ray cluster (core.runs.ray_backend): its start (signals that stop it cleanly, the
runs file opened to wait out another program's lock, the server that started it), its command line, its log,
and the words for why it stopped. No torch here: a relay loads none.
"""

import faulthandler
import os
import signal
import sys
import traceback

from core.runs import liveness, settings
from core.runs.db import RunDB

EXIT_UNRECORDED = 3    # the run ended but the runs file would not take its last word (the log has it)


def start(db_path, server=None):
    """(db, signals, parent) for a run's process: SIGTERM and SIGINT append to signals (the loop stops between
    two chunks, as a Stop would), the runs file waits up to ZTH_BUSY_SECONDS for another program's lock, and
    parent names the server that started it (default: the parent process)."""
    faulthandler.enable()  # a crash inside native code leaves its Python traceback in the log
    signals = catch_signals([])
    parent = liveness.identity(server or os.getppid())  # when no page beats: was it the tab or the server?

    def on_busy(waited):
        log(f"the runs file is locked by another program: training waits ({waited:.0f} s so far, at most "
            f"{settings.busy_seconds():g} s, ZTH_BUSY_SECONDS)")
        return not signals  # a SIGTERM while waiting: stop waiting

    db = RunDB(db_path, check=False, busy_seconds=settings.busy_seconds(), on_busy=on_busy)
    return db, signals, parent


def catch_signals(signals):
    """SIGTERM and SIGINT append to signals instead of ending the process; returns signals. (Again after
    ray.init, which puts its own SIGTERM handler in place: sys.exit, with no last flush.)"""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: signals.append(signum))
    return signals


def arguments(argv):
    """DB RUN_ID ORPHAN_SECONDS [--paused] [--server=PID] [--ray=ADDRESS] -> (db_path, run_id, orphan_timeout,
    dict(start_paused, server, ray)): the command line core.runs.manager gives a run's process."""
    opts = dict(a[2:].split("=", 1) for a in argv[3:] if "=" in a)
    return argv[0], argv[1], float(argv[2]), dict(start_paused="--paused" in argv[3:], ray=opts.get("ray"),
                                                  server=int(opts["server"]) if "server" in opts else None)


def last_word(db, run_id, flush, message):
    """Mark the run failed with its message: with its pending rows if the file takes them, else alone."""
    try:
        flush(final=True, state="failed")
        return 0
    except Exception:
        log_traceback()
    try:
        db.update_run(run_id, state="failed", meta=dict(message=message))
        return 0
    except Exception:
        log_traceback()
        log("the runs file would not take the run's end; whoever reads it next ends the run with this log")
        return EXIT_UNRECORDED


def signal_reason(signum):
    name = signal.Signals(signum).name
    why = "Ctrl-C in the server's terminal" if signum == signal.SIGINT else "the server or the system is shutting down"
    return f"stopped: its worker was asked to end ({name}: {why}); what it recorded is kept"


def orphan_reason(orphan_timeout, parent):
    """What the worker saw: pages gone with its server still there (a closed tab), or the server gone."""
    if liveness.alive(parent):
        return (f"stopped: no page watched this run for {orphan_timeout:g} s (its browser tab was closed); "
                "what it recorded is kept")
    return (f"stopped: no page watched this run for {orphan_timeout:g} s and the server that started it is gone "
            f"(a server outage or restart, pid {parent['pid']}); what it recorded is kept")


def log(message):
    """A line in the worker's log (its stderr); a disk too full even for that loses only the line."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass


def log_traceback():
    try:
        traceback.print_exc()
        sys.stderr.flush()
    except OSError:
        pass
