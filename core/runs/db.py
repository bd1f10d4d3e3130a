"""
Runs on disk: one SQLite file that a training worker writes and any number of
pages read. WAL mode lets readers take a consistent snapshot while the writer
appends; every write is one short transaction.

Tables
    runs      one row per run: spec (what to train), state, step, heartbeat,
              the pending command for its worker, the final numbers
    steps     (run_id, step, loss, lr) for every step (a 200k-step run is ~6 MB)
    evals     (run_id, step, train, val)
    captures  (run_id, step, blob): a Capture record packed by pack_capture;
              thinned like RunStore's so a long run keeps at most max_captures

Where the file lives: $ZTH_DATA_DIR, else $XDG_DATA_HOME/zero-to-hero-lab, else
~/.local/share/zero-to-hero-lab.

One RunDB may serve many threads (a server's pages): one lock keeps each transaction and each
read whole. Its faults (damage, a full disk, a busy file) are core.runs.storage's.
"""

import io
import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from core.capture.record import nan_to_none, pack_capture, unpack_capture
from core.runs import storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    name TEXT NOT NULL,
    session TEXT,
    spec TEXT NOT NULL,            -- JSON: model, preset, model kwargs, train config, data source
    meta TEXT NOT NULL DEFAULT '{}',  -- JSON: params, vocab_size, init_loss, final, message, ...
    state TEXT NOT NULL,           -- starting, ready, running, paused, finished, stopped, diverged, failed
    step INTEGER NOT NULL DEFAULT 0,
    steps_per_s REAL,
    pid INTEGER,
    host TEXT,                     -- the worker's host, and its process's start (boot id:ticks), so that
    pid_start TEXT,                -- a pid given to another process later is never taken for it
    heartbeat REAL NOT NULL,       -- last time a page looked at this run
    command TEXT,                  -- pause | resume | step:N | stop, consumed by the worker
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (run_id TEXT NOT NULL, step INTEGER NOT NULL, loss REAL, lr REAL,
                                  PRIMARY KEY (run_id, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evals (run_id TEXT NOT NULL, step INTEGER NOT NULL, train REAL, val REAL,
                                  PRIMARY KEY (run_id, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS captures (run_id TEXT NOT NULL, step INTEGER NOT NULL, blob BLOB NOT NULL,
                                     PRIMARY KEY (run_id, step)) WITHOUT ROWID;
"""

LIVE_STATES = ("starting", "ready", "running", "paused")
FREE_COMMANDS = ("sample:",)  # commands any page may send to any run: they only read its model
RUN_COLS = ("id", "created", "name", "session", "spec", "meta", "state", "step", "steps_per_s", "pid", "host",
            "pid_start", "heartbeat", "command", "updated")
TIMEOUT = 10.0  # SQLite's own wait for a lock, per statement
CLOSE_TRIES = 3  # a shutdown's checkpoint waits ~1 s this many times for a reader to move on, then leaves it
MAX_CAPTURES = 1000
KEEP_RECENT_CAPTURES = 100


def thinned(items, keep_recent=KEEP_RECENT_CAPTURES):
    """Captures (oldest first) thinned as TensorBoard thins a reservoir: every other old one dropped, the
    first and the newest keep_recent kept -- old history gets coarser, the recent tail stays exact."""
    old = max(len(items) - keep_recent, 0)
    return items[:old:2] + items[old:]


def default_data_dir():
    if os.environ.get("ZTH_DATA_DIR"):
        return Path(os.environ["ZTH_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "zero-to-hero-lab"


# -----------------------------------------------------------------------------


class RunDB:
    """
    A handle on the runs file, safe to share between threads.

    check: PRAGMA quick_check at the first open in this process; a damaged file is moved aside and a
           fresh one started (self.notice says so). A worker, opened just after its server checked,
           skips it.
    busy_seconds: how long in all a write waits for a file another program keeps locked, beyond
           SQLite's own TIMEOUT; on_busy(seconds_waited) is told each TIMEOUT and may return False
           to give up. Then, or past the bound, storage.FileBusy.
    """

    def __init__(self, path=None, check=True, busy_seconds=0.0, on_busy=None):
        path = Path(path) if path else default_data_dir() / "runs.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.busy_seconds = busy_seconds
        self.on_busy = on_busy
        self.busy_until = 0.0  # when a write last finished waiting for a busy file (time.time())...
        self.busy_waited = 0.0  # ...and how long it waited (a worker reports it, then sets it back to 0)
        self.notice = None     # what the open found and did, for the Runs page
        self._lock = threading.RLock()
        self._con = self._open(check and path.resolve() not in _checked)
        _checked.add(path.resolve())

    @property
    def con(self):
        """The connection, opened again (unchecked) when used after close(): a notebook may read a run it
        closed, and the close has still folded the log back."""
        with self._lock:
            if self._con is None:
                self._con = self._open(False)
            return self._con

    def _open(self, check):
        for attempt in range(2):
            con = sqlite3.connect(self.path, timeout=TIMEOUT, isolation_level=None, check_same_thread=False)
            try:
                problem = storage.damage(con) if check else None
                if problem is None:
                    con.execute("PRAGMA journal_mode=WAL")
                    con.execute("PRAGMA synchronous=NORMAL")
                    con.executescript(SCHEMA)
                    _add_columns(con)
                    storage.apply_cap(con)
                    return con
            except sqlite3.DatabaseError as e:
                if not (check and storage.is_damage(e)):
                    con.close()
                    raise
                problem = str(e)
            con.close()
            if attempt:
                raise sqlite3.DatabaseError(f"a fresh runs file at {self.path} is damaged too: {problem}")
            self.notice = storage.move_aside(self.path, problem)

    def close(self, check_again=True):
        """Close, folding the write-ahead log back into the file: a copy of runs.sqlite alone is then whole.
        Never raises; closing twice is harmless. check_again: the next handle this process opens on the file
        checks it (a server that starts again); a notebook's next Run passes False and skips the check."""
        with self._lock:
            if self._con is None:
                return
            try:  # waits a moment for other connections' transactions, never TIMEOUT at a shutdown
                self._con.execute("PRAGMA busy_timeout = 1000")
                for _ in range(CLOSE_TRIES):
                    # SQLite answers a checkpoint that a reader held up with a row (busy=1, ...), not an error
                    if self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                        break
                    time.sleep(0.1)
            except sqlite3.Error:  # full, damaged: the next clean close does it
                pass
            self._con.close()
            self._con = None
        if check_again:
            _checked.discard(self.path.resolve())

    def _tx(self):
        return _Tx(self)

    def _begin(self):
        """BEGIN IMMEDIATE (the write lock, up front), waiting for a busy file as the handle allows."""
        t0 = time.time()
        while True:
            try:
                self.con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                waited = time.time() - t0
                if not storage.is_busy(e):
                    raise
                if waited >= self.busy_seconds or (self.on_busy is not None and self.on_busy(waited) is False):
                    raise storage.FileBusy(f"the runs file is locked by another program (waited {waited:.0f} s); "
                                           "try again in a moment") from e
                continue
            if time.time() - t0 > 1:
                self.busy_until, self.busy_waited = time.time(), time.time() - t0
            return

    def _all(self, sql, args=()):
        with self._lock:
            return self.con.execute(sql, args).fetchall()

    def _one(self, sql, args=()):
        with self._lock:
            return self.con.execute(sql, args).fetchone()

    def _quiet(self, sql, args, wait=1.0):
        """A write that may be skipped: it waits at most `wait` s for the lock and never raises. True when it
        changed a row."""
        with self._lock:
            try:
                self.con.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
                return self.con.execute(sql, args).rowcount > 0
            except sqlite3.Error:  # busy, full, damaged, closed: the next one tries again
                return False
            finally:
                try:
                    self.con.execute(f"PRAGMA busy_timeout = {int(TIMEOUT * 1000)}")
                except sqlite3.Error:
                    pass

    def lift_cap(self):
        with self._lock:
            storage.lift_cap(self.con)

    # --- runs ------------------------------------------------------------------------

    def create_run(self, spec, name, session=None):
        run_id = uuid.uuid4().hex[:12]
        now = time.time()
        with self._tx():
            self.con.execute("INSERT INTO runs (id, created, name, session, spec, state, heartbeat, updated) "
                             "VALUES (?, ?, ?, ?, ?, 'starting', ?, ?)",
                             (run_id, now, name, session, json.dumps(spec), now, now))
        return run_id

    def get_run(self, run_id):
        row = self._one(f"SELECT {', '.join(RUN_COLS)} FROM runs WHERE id = ?", (run_id,))
        return None if row is None else _run_row(row)

    def list_runs(self):
        return [_run_row(r) for r in self._all(f"SELECT {', '.join(RUN_COLS)} FROM runs ORDER BY created DESC")]

    def count_runs(self):
        return self._one("SELECT count(*) FROM runs")[0]

    def live_runs(self):
        # the server's check asks every few seconds: only the live rows are read and parsed, not every run kept
        marks = ", ".join("?" * len(LIVE_STATES))
        return [_run_row(r) for r in self._all(f"SELECT {', '.join(RUN_COLS)} FROM runs WHERE state IN ({marks}) "
                                               "ORDER BY created DESC", LIVE_STATES)]

    def update_run(self, run_id, **fields):
        meta = fields.pop("meta", None)
        fields["updated"] = time.time()
        with self._tx():
            if meta:
                fields["meta"] = self._merged_meta(run_id, meta)
            cols = ", ".join(f"{k} = ?" for k in fields)
            self.con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def end_if_live(self, run_id, message, state="failed"):
        """End a run marked live whose worker is gone; False when it ended meanwhile (its worker wrote its
        last state between our look and now: that state stands)."""
        with self._tx():
            row = self.con.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row[0] not in LIVE_STATES:
                return False
            self.con.execute("UPDATE runs SET state = ?, meta = ?, command = NULL, updated = ? WHERE id = ?",
                             (state, self._merged_meta(run_id, dict(message=message)), time.time(), run_id))
        return True

    def delete_run(self, run_id):
        with self._tx():
            for table, col in (("steps", "run_id"), ("evals", "run_id"), ("captures", "run_id"), ("runs", "id")):
                self.con.execute(f"DELETE FROM {table} WHERE {col} = ?", (run_id,))
        self.checkpoint_path(run_id).unlink(missing_ok=True)
        self.frame_path(run_id).unlink(missing_ok=True)
        self.log_path(run_id).unlink(missing_ok=True)

    def prune(self, keep_runs=0, keep_days=0.0):
        """Delete ended runs beyond the newest keep_runs, and those older than keep_days (0: no limit).
        Live runs are never pruned. Returns the ids deleted."""
        ended = [(r, c) for r, c, s in self._all("SELECT id, created, state FROM runs ORDER BY created DESC")
                 if s not in LIVE_STATES]
        cutoff = time.time() - keep_days * 86400 if keep_days else -1
        gone = [r for i, (r, c) in enumerate(ended) if (keep_runs and i >= keep_runs) or c < cutoff]
        for run_id in gone:
            self.delete_run(run_id)
        return gone

    def log_path(self, run_id):
        """Where a worker's output goes (its traceback, when it has one)."""
        return self.path.parent / "logs" / f"{run_id}.log"

    # --- checkpoints: the worker's model, for pages that look inside it ---------------

    def frame_path(self, run_id):
        """Where a micrograd run's worker keeps its latest frame (core.runs.micrograd_worker)."""
        return self.path.parent / "frames" / f"{run_id}.npz"

    def checkpoint_path(self, run_id):
        """Where the worker keeps the run's latest model (torch.save of the whole model object)."""
        return self.path.parent / "checkpoints" / f"{run_id}.pt"

    def save_checkpoint(self, run_id, model, step):
        """Write atomically (a reader never sees half a file); a failed write (a full disk) leaves no
        .tmp behind and raises the system's OSError."""
        import torch  # here, not at the top: a relay of a run on a cluster (ray_backend) loads no torch

        from core.models.layers import opened
        path = self.checkpoint_path(run_id)
        path.parent.mkdir(exist_ok=True)
        # a torch.nn model carries the recorder's forward hooks (closures: they cannot be pickled, and
        # a page has no use for them): set them aside while saving. The worker is between steps here.
        modules = list(model.modules()) if isinstance(model, torch.nn.Module) else []
        hooks = [m._forward_hooks for m in modules]
        for m in modules:
            m._forward_hooks = type(m._forward_hooks)()
        # a lecture layer's .out is its last forward's output -- the dev split's, after an eval: 14-23 MB of a
        # small MLP's file, written every 2 s and sent back from a cluster. Pages run their own forward.
        outs = [(layer, layer.out) for _, layer in opened(model.named_layers()) if hasattr(layer, "out")] \
            if callable(getattr(model, "named_layers", None)) else []
        buf = io.BytesIO()  # serialised in memory first: torch's own file writer words ENOSPC as a RuntimeError
        try:
            for layer, _ in outs:
                del layer.out
            torch.save({"step": step, "model": model}, buf)
        finally:
            for m, h in zip(modules, hooks):
                m._forward_hooks = h
            for layer, out in outs:
                layer.out = out
        storage.write_atomic(path, buf.getbuffer())

    def load_checkpoint(self, run_id):
        """(model, step) as the worker last saved it, on the CPU in eval mode; None when there is none, or
        when it was saved by a version whose classes lived elsewhere (the run's records still read)."""
        import torch
        path = self.checkpoint_path(run_id)
        try:
            ck = torch.load(path, map_location="cpu", weights_only=False)  # our own file, written by our worker
        except (FileNotFoundError, EOFError, ModuleNotFoundError, AttributeError):
            return None
        model = ck["model"]
        model.eval()
        return model, ck["step"]

    def heartbeat(self, run_id):
        """A page's 'still watching'. Never raises: a busy or full file only skips a beat (False)."""
        return self._quiet("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    # --- commands: page -> worker --------------------------------------------------

    def send(self, run_id, command):
        """Put `command` in the run's one command slot. A free command (FREE_COMMANDS, any session's) only
        takes an empty slot, so it never overwrites the owner's pending stop or pause; a control command
        replaces whatever waits. False when it did not go: the slot was taken, or the file too busy (the page
        may press again)."""
        only_empty = " AND command IS NULL" if command.startswith(FREE_COMMANDS) else ""
        return self._quiet(f"UPDATE runs SET command = ?, heartbeat = ? WHERE id = ?{only_empty}",
                           (command, time.time(), run_id), wait=3.0)

    def take_command(self, run_id):
        """The worker's side: the pending command (or None) and the last heartbeat, in one read.
        "stop" when the run was deleted under the worker, "ended" when someone else ended it."""
        with self._tx():
            row = self.con.execute("SELECT command, heartbeat, state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return "stop", 0.0
            if row[2] not in LIVE_STATES:
                return "ended", row[1]
            if row[0] is not None:
                self.con.execute("UPDATE runs SET command = NULL WHERE id = ?", (run_id,))
        return row[0], row[1]

    # --- the worker's writes -----------------------------------------------------------

    def append(self, run_id, steps=(), evals=(), captures=(), **run_fields):
        """One transaction: new step rows, evals, packed captures, and the run row's fields."""
        meta = run_fields.pop("meta", None)
        with self._tx():
            if steps:
                self.con.executemany("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?)",
                                     [(run_id, s, nan_to_none(l), lr) for s, l, lr in steps])
            if evals:
                self.con.executemany("INSERT OR REPLACE INTO evals VALUES (?, ?, ?, ?)",
                                     [(run_id, s, nan_to_none(t), nan_to_none(v)) for s, t, v in evals])
            if captures:
                self._add_captures(run_id, captures)
            if meta:
                run_fields["meta"] = self._merged_meta(run_id, meta)
            run_fields["updated"] = time.time()
            cols = ", ".join(f"{k} = ?" for k in run_fields)
            self.con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*run_fields.values(), run_id))

    def _merged_meta(self, run_id, meta):
        # inside the caller's transaction: read, merge, write back as one change
        old = self.con.execute("SELECT meta FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.dumps({**(json.loads(old[0]) if old else {}), **meta}, default=nan_to_none)

    def _add_captures(self, run_id, captures):  # inside the caller's transaction
        """Add captures, keeping the file's reservoir (thinned) beyond MAX_CAPTURES: the thinning is decided
        before writing, so a capture it would drop at once is never packed nor written (with a capture
        every step, most of a flush's)."""
        old = [s for (s,) in self.con.execute("SELECT step FROM captures WHERE run_id = ? ORDER BY step",
                                               (run_id,))]
        new = {c.step: c for c in captures}  # a step written again replaces the old one
        steps = sorted(set(old) | set(new))
        keep = set(thinned(steps)) if len(steps) > MAX_CAPTURES else set(steps)
        self.con.executemany("DELETE FROM captures WHERE run_id = ? AND step = ?",
                             [(run_id, s) for s in old if s not in keep])
        self.con.executemany("INSERT OR REPLACE INTO captures VALUES (?, ?, ?)",
                             ((run_id, s, pack_capture(c)) for s, c in new.items() if s in keep))

    # --- reads ----------------------------------------------------------------------

    def steps_since(self, run_id, after=-1):
        rows = self._all("SELECT step, loss, lr FROM steps WHERE run_id = ? AND step > ? ORDER BY step",
                         (run_id, after))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        a = np.array(rows, dtype=np.float64)
        a[np.isnan(a)] = np.nan
        return a[:, 0].astype(np.int64), a[:, 1], a[:, 2]

    def evals(self, run_id):
        return self._all("SELECT step, train, val FROM evals WHERE run_id = ? ORDER BY step", (run_id,))

    def capture_steps(self, run_id):
        return [s for (s,) in self._all("SELECT step FROM captures WHERE run_id = ? ORDER BY step", (run_id,))]

    def capture(self, run_id, step=None):
        """The capture at `step` (or the nearest recorded one at or before it; None = the latest)."""
        if step is None:
            row = self._one("SELECT blob FROM captures WHERE run_id = ? ORDER BY step DESC LIMIT 1", (run_id,))
        else:
            row = self._one("SELECT blob FROM captures WHERE run_id = ? AND step <= ? ORDER BY step DESC LIMIT 1",
                            (run_id, step))
            if row is None:
                row = self._one("SELECT blob FROM captures WHERE run_id = ? ORDER BY step LIMIT 1", (run_id,))
        return None if row is None else unpack_capture(row[0])

    def captures_after(self, run_id, step):
        """Every capture recorded after `step`, oldest first."""
        rows = self._all("SELECT blob FROM captures WHERE run_id = ? AND step > ? ORDER BY step", (run_id, step))
        return [unpack_capture(b) for (b,) in rows]


_checked = set()  # runs files this process has checked: a notebook's hundredth Run does not read it all again


class _Tx:
    """One transaction, the handle's lock held throughout: another thread's statements never land in it."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db._lock.acquire()
        try:
            self.db._begin()
        except BaseException:
            self.db._lock.release()
            raise

    def __exit__(self, et, ev, tb):
        con = self.db.con
        try:
            if et is None:
                try:
                    con.execute("COMMIT")  # in WAL mode the pages are written here: a full disk says so here
                except BaseException:
                    self._rollback(con)
                    raise
            else:
                self._rollback(con)
        finally:
            self.db._lock.release()

    @staticmethod
    def _rollback(con):
        if con.in_transaction:  # SQLite may have rolled back already (a full disk)
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def _add_columns(con):
    """Columns a runs file from an older version lacks (NULL in its rows)."""
    have = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    for name in ("host", "pid_start"):
        if name not in have:
            con.execute(f"ALTER TABLE runs ADD COLUMN {name} TEXT")


def _run_row(r):
    d = dict(zip(RUN_COLS, r))
    d["spec"] = json.loads(d["spec"])
    d["meta"] = json.loads(d["meta"])
    return d
