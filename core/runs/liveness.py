"""
Is a run's worker still there? Every reader of the runs file may ask -- the server's check every
few seconds, a page, `python -m core runs list` -- and whoever finds a run marked live whose worker
is gone ends it, with the cause it saw.

A worker is known by its host, its pid and its process's start (the boot id and field 22 of
/proc/PID/stat), so a pid the system gave to another process after the worker died, or after a
reboot, is never taken for it. A worker on another host cannot be looked at: it is judged by how
long ago it last wrote to the file.
"""

import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

from core.runs import storage

HOST = socket.gethostname()
START_GRACE_SECONDS = 10.0       # a run with no pid yet: its worker is still being started
REMOTE_SILENCE_SECONDS = 900.0   # a run from another host that wrote nothing for this long has ended
LEGACY_START_SLACK = 60.0        # a row without a start time: its process began at most this long after it
LOG_LINES = 6


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return None


HAVE_PROC = os.path.exists("/proc/self/stat")
BOOT_ID = (_read("/proc/sys/kernel/random/boot_id") or "").strip()


def _stat(pid):
    """/proc/PID/stat's fields from the third (state) on; None when there is no such process."""
    stat = _read(f"/proc/{pid}/stat")
    return None if stat is None else stat.rsplit(")", 1)[1].split()


def process_start(pid):
    """When process `pid` started, as 'boot id:clock ticks since boot' (None where the system cannot say)."""
    fields = _stat(pid) if HAVE_PROC else None
    return None if fields is None else f"{BOOT_ID}:{fields[19]}"  # fields[19] is the line's field 22


def identity(pid=None):
    """The run row's fields that name a worker: pid, host and the process's start."""
    pid = pid or os.getpid()
    return dict(pid=pid, host=HOST, pid_start=process_start(pid))


def has_worker(row):
    """Whether a worker serves the run and reads its commands (stop, pause, ...). A run that a process trains
    itself -- `python -m core train`, a notebook -- records its pid but reads none; core.runs.store marks its
    row so when it makes it."""
    return row["meta"].get("worker", True) is not False


def source(row):
    """Who trains the run: a page's (or `runs start`'s) worker, one on a Ray cluster ("ray"), `python -m core
    train` ("cli"), or the learner's own notebook or script (core.watch)."""
    if row["meta"].get("backend") == "ray":
        return "ray"  # a worker on a cluster node, relayed into this runs file (core.runs.ray_backend)
    return row["meta"].get("source") or ("worker" if has_worker(row) else "cli")


def _pid_runs(pid):
    """The process exists and has not exited (a zombie has: it only waits for its parent to read it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    if not HAVE_PROC:
        return True
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _started_at(pid):
    """The process's start as a wall-clock time (None where the system cannot say)."""
    fields, stat = _stat(pid), _read("/proc/stat")
    if fields is None or stat is None:
        return None
    btime = next((float(line.split()[1]) for line in stat.splitlines() if line.startswith("btime")), None)
    return None if btime is None else btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def alive(ident):
    """Whether the process an identity() names is still that process (on this host)."""
    pid = ident.get("pid")
    if not pid or not _pid_runs(pid):
        return False
    start = process_start(pid)
    return start is None or not ident.get("pid_start") or start == ident["pid_start"]


def worker_gone(row, now=None):
    """Why the run's worker is gone, in a few words ("" when no more can be said), or None while it may
    still be there."""
    now = time.time() if now is None else now
    if row.get("host") and row["host"] != HOST:
        silent = now - row["updated"]
        return f"no word from it on {row['host']} for {silent:,.0f} s" if silent > REMOTE_SILENCE_SECONDS else None
    pid = row.get("pid")
    if not pid:
        return "it never started" if now - row["created"] > START_GRACE_SECONDS else None
    if not _pid_runs(pid):
        return ""
    start = process_start(pid)
    if start is None:  # no /proc: the pid is all there is to go on
        return None
    if row.get("pid_start"):
        return None if start == row["pid_start"] else f"its pid {pid} now belongs to another process"
    began = _started_at(pid)  # a row from before pid_start was kept: the process must be about as old as the run
    if began is not None and began > row["created"] + LEGACY_START_SLACK:
        return f"its pid {pid} now belongs to another process"
    return None


def exit_cause(returncode):
    """A worker's exit status in words: 'signal 9, SIGKILL' or 'exit code 3'."""
    if returncode < 0:
        try:
            return f"signal {-returncode}, {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def log_tail(path, lines=LOG_LINES):
    """The last few non-empty lines of a worker's log ([] when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def ended_message(row, cause="", log=()):
    """'the worker ended unexpectedly at step N (cause)', and the last lines of its log."""
    msg = f"the worker ended unexpectedly at step {row['step']:,}" + (f" ({cause})" if cause else "")
    msg += "; what it recorded is kept."
    if log:
        msg += " The last lines of its log:\n\n" + "\n".join("    " + line for line in log)
    return msg


def reap(db, exits=None, running=()):
    """
    End every run of `db` marked live whose worker is gone; returns the ids ended.
    exits: run id -> return code, for workers this process started and saw end (it knows the cause);
    running: ids of workers this process started and knows are running.
    """
    exits = exits or {}
    ended = []
    for r in db.live_runs():  # read after the exits were collected: a worker that ended well has said so
        if r["id"] in running:
            continue
        if r["id"] in exits:
            cause = exit_cause(exits[r["id"]])
        else:
            cause = worker_gone(r)
            if cause is None:
                continue
        try:
            if db.end_if_live(r["id"], ended_message(r, cause, log_tail(db.log_path(r["id"])))):
                ended.append(r["id"])
        except (sqlite3.Error, storage.FileBusy):  # a busy or full file: the next look tries again
            continue
    return ended
