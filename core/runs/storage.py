"""
What can go wrong with the runs file's storage, each answered with what a person can do about it:

- damage (garbage over the header, a truncated file, garbage mid-file): PRAGMA quick_check when the
  file is opened finds it; the file (with its -wal) is moved aside under a timestamped name, kept for
  its owner, and a fresh one is started. The Runs page lists the damaged files kept.
- a full disk, or the runs file's own cap (ZTH_RUNS_MB, through SQLite's max_page_count): SQLite says
  SQLITE_FULL, the system ENOSPC / EFBIG / EDQUOT; a run stops with "disk full: ...".
- a busy file (another program holds its write lock): a write waits and retries, up to a bound
  (core.runs.db does the waiting; this module only recognises the error).
"""

import errno
import os
import shutil
import sqlite3
import time
from pathlib import Path

from core.runs import settings

DAMAGED = ".damaged-"  # runs.sqlite -> runs.damaged-20250101-120000-PID.sqlite
FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
NO_CAP_PAGES = 2**31 - 2  # SQLite's largest max_page_count: no cap of ours


def _name(e):
    return getattr(e, "sqlite_errorname", "") or ""


def is_busy(e):
    """Another connection holds the lock this write needs."""
    return isinstance(e, sqlite3.OperationalError) and (
        _name(e).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(e) or "busy" in str(e))


def is_damage(e):
    """The file is not a database, or not a whole one."""
    return isinstance(e, sqlite3.DatabaseError) and (
        _name(e) in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "malformed" in str(e) or "not a database" in str(e))


def is_disk_full(e):
    if isinstance(e, sqlite3.DatabaseError):
        return _name(e) == "SQLITE_FULL" or "disk is full" in str(e)
    return isinstance(e, OSError) and e.errno in FULL_ERRNOS


class FileBusy(RuntimeError):
    """Another program kept the runs file's write lock longer than this write would wait."""


# -----------------------------------------------------------------------------
# damage


def damage(con):
    """What is wrong with the open runs file, in a line (None: nothing)."""
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        if not is_damage(e):
            raise
        return str(e)
    problems = [line for (r,) in rows for line in str(r).splitlines() if line not in ("ok", "*** in database main ***")]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


def move_aside(path, problem):
    """Move a damaged runs file (and its -wal) out of the way, kept for its owner. Returns the notice a
    page shows. A second process that finds it already moved only opens the fresh one."""
    path = Path(path)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    dest, n = path.with_name(f"{path.stem}{DAMAGED}{stamp}{path.suffix}"), 1
    # os.replace would overwrite a copy kept earlier in the same second: the pid and a counter keep each
    while any(Path(f"{dest}{ext}").exists() for ext in ("", "-wal", "-journal")):
        dest, n = path.with_name(f"{path.stem}{DAMAGED}{stamp}-{n}{path.suffix}"), n + 1
    try:
        os.replace(path, dest)
    except FileNotFoundError:
        return None
    for ext in ("-wal", "-journal"):  # the damaged file's own log: it must not be replayed into the fresh one
        if Path(f"{path}{ext}").exists():
            os.replace(f"{path}{ext}", f"{dest}{ext}")
    Path(f"{path}-shm").unlink(missing_ok=True)
    return (f"The runs file was damaged ({problem}). It was moved aside to {dest.name}, kept for you, and a "
            "fresh one was started: runs recorded before are in the damaged file, not on this page.")


def damaged_files(path):
    """The damaged runs files kept beside `path`, newest first."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}{DAMAGED}*{path.suffix}"), reverse=True)


# -----------------------------------------------------------------------------
# space


def apply_cap(con):
    """The runs file's size cap (ZTH_RUNS_MB) on this connection; 0 = none. Returns the cap in MB."""
    mb = settings.runs_file_mb()
    if mb:
        (page,) = con.execute("PRAGMA page_size").fetchone()
        con.execute(f"PRAGMA max_page_count = {max(1, int(mb * 2**20 / page))}")
    return mb


def lift_cap(con):
    """A run that hit the cap still writes what it holds and its last word: the cap is soft by one flush."""
    con.execute(f"PRAGMA max_page_count = {NO_CAP_PAGES}")


def file_size(path):
    """The runs file with its -wal, in bytes."""
    return sum(os.path.getsize(p) for p in (str(path), f"{path}-wal") if os.path.exists(p))


def free_space(path):
    """Bytes free on the disk under `path`'s folder."""
    try:
        return shutil.disk_usage(Path(path).parent).free
    except OSError:
        return 0


def mb(n):
    return f"{n / 2**20:,.1f} MB"


def disk_full_message(path, n_runs, step=None):
    """What a run that could not write says: how much is kept, how much is free, what to do."""
    cap, free = settings.runs_file_mb(), free_space(path)
    # a write that did not fit the cap may have been large (a flush of many captures): the disk's room says which
    where = (f"the runs file is at its cap of {cap:g} MB (ZTH_RUNS_MB)" if cap and free > 2**26
             else f"{mb(free)} free on its disk")
    at = f" The run stopped at step {step:,}; what it recorded is kept." if step is not None else ""
    return (f"disk full: {n_runs} runs kept, free space needed ({mb(file_size(path))} in the runs file; {where}). "
            f"Delete old runs on the Runs page, or lower ZTH_KEEP_RUNS / ZTH_KEEP_DAYS, then start again.{at}")


def write_atomic(path, data):
    """Write `data` (bytes) to `path` so that a reader sees the old file or the new one, never half of one; a
    failed write (a full disk) leaves no .tmp behind and raises the system's OSError."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
