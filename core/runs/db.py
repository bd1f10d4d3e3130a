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
"""

import json
import os
import sqlite3
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from core.capture.record import nan_to_none, pack_capture, unpack_capture

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
    """A handle on the runs file. Cheap to open; open one per thread or process."""

    def __init__(self, path=None):
        path = Path(path) if path else default_data_dir() / "runs.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.executescript(SCHEMA)

    def close(self):
        self.con.close()

    def _tx(self):
        return _Tx(self.con)

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
        row = self.con.execute("SELECT id, created, name, session, spec, meta, state, step, steps_per_s, pid, "
                               "heartbeat, command, updated FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run_row(row)

    def list_runs(self):
        rows = self.con.execute("SELECT id, created, name, session, spec, meta, state, step, steps_per_s, pid, "
                                "heartbeat, command, updated FROM runs ORDER BY created DESC").fetchall()
        return [_run_row(r) for r in rows]

    def live_runs(self):
        return [r for r in self.list_runs() if r["state"] in LIVE_STATES]

    def update_run(self, run_id, **fields):
        meta = fields.pop("meta", None)
        fields["updated"] = time.time()
        with self._tx():
            if meta:
                fields["meta"] = self._merged_meta(run_id, meta)
            cols = ", ".join(f"{k} = ?" for k in fields)
            self.con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def delete_run(self, run_id):
        with self._tx():
            for table, col in (("steps", "run_id"), ("evals", "run_id"), ("captures", "run_id"), ("runs", "id")):
                self.con.execute(f"DELETE FROM {table} WHERE {col} = ?", (run_id,))
        self.checkpoint_path(run_id).unlink(missing_ok=True)

    # --- checkpoints: the worker's model, for pages that look inside it ---------------

    def checkpoint_path(self, run_id):
        """Where the worker keeps the run's latest model (torch.save of the whole model object)."""
        return self.path.parent / "checkpoints" / f"{run_id}.pt"

    def save_checkpoint(self, run_id, model, step):
        """Write atomically (a reader never sees half a file)."""
        path = self.checkpoint_path(run_id)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        # a torch.nn model carries the recorder's forward hooks (closures: they cannot be pickled, and
        # a page has no use for them): set them aside while saving. The worker is between steps here.
        modules = list(model.modules()) if isinstance(model, torch.nn.Module) else []
        hooks = [m._forward_hooks for m in modules]
        for m in modules:
            m._forward_hooks = type(m._forward_hooks)()
        try:
            torch.save({"step": step, "model": model}, tmp)
        finally:
            for m, h in zip(modules, hooks):
                m._forward_hooks = h
        os.replace(tmp, path)

    def load_checkpoint(self, run_id):
        """(model, step) as the worker last saved it, on the CPU in eval mode; None when there is none, or
        when it was saved by a version whose classes lived elsewhere (the run's records still read)."""
        path = self.checkpoint_path(run_id)
        try:
            ck = torch.load(path, map_location="cpu", weights_only=False)  # our own file, written by our worker
        except (FileNotFoundError, EOFError, ModuleNotFoundError, AttributeError):
            return None
        model = ck["model"]
        model.eval()
        return model, ck["step"]

    def heartbeat(self, run_id):
        self.con.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    # --- commands: page -> worker --------------------------------------------------

    def send(self, run_id, command):
        self.con.execute("UPDATE runs SET command = ?, heartbeat = ? WHERE id = ?", (command, time.time(), run_id))

    def take_command(self, run_id):
        """The worker's side: the pending command (or None) and the last heartbeat, in one read."""
        with self._tx():
            row = self.con.execute("SELECT command, heartbeat FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return "stop", 0.0  # the run was deleted under us
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
            for c in captures:
                self.con.execute("INSERT OR REPLACE INTO captures VALUES (?, ?, ?)", (run_id, c.step, pack_capture(c)))
            if captures:
                self._thin_captures(run_id)
            if meta:
                run_fields["meta"] = self._merged_meta(run_id, meta)
            run_fields["updated"] = time.time()
            cols = ", ".join(f"{k} = ?" for k in run_fields)
            self.con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*run_fields.values(), run_id))

    def _merged_meta(self, run_id, meta):
        # inside the caller's transaction: read, merge, write back as one change
        old = self.con.execute("SELECT meta FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.dumps({**(json.loads(old[0]) if old else {}), **meta}, default=nan_to_none)

    def _thin_captures(self, run_id):
        (n,) = self.con.execute("SELECT count(*) FROM captures WHERE run_id = ?", (run_id,)).fetchone()
        if n <= MAX_CAPTURES:
            return
        steps = [s for (s,) in self.con.execute("SELECT step FROM captures WHERE run_id = ? ORDER BY step",
                                                 (run_id,))]
        keep = set(thinned(steps))
        self.con.executemany("DELETE FROM captures WHERE run_id = ? AND step = ?",
                             [(run_id, s) for s in steps if s not in keep])

    # --- reads ----------------------------------------------------------------------

    def steps_since(self, run_id, after=-1):
        rows = self.con.execute("SELECT step, loss, lr FROM steps WHERE run_id = ? AND step > ? ORDER BY step",
                                (run_id, after)).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        a = np.array(rows, dtype=np.float64)
        a[np.isnan(a)] = np.nan
        return a[:, 0].astype(np.int64), a[:, 1], a[:, 2]

    def evals(self, run_id):
        return self.con.execute("SELECT step, train, val FROM evals WHERE run_id = ? ORDER BY step",
                                (run_id,)).fetchall()

    def capture_steps(self, run_id):
        return [s for (s,) in self.con.execute("SELECT step FROM captures WHERE run_id = ? ORDER BY step",
                                               (run_id,))]

    def capture(self, run_id, step=None):
        """The capture at `step` (or the nearest recorded one at or before it; None = the latest)."""
        if step is None:
            row = self.con.execute("SELECT blob FROM captures WHERE run_id = ? ORDER BY step DESC LIMIT 1",
                                   (run_id,)).fetchone()
        else:
            row = self.con.execute("SELECT blob FROM captures WHERE run_id = ? AND step <= ? "
                                   "ORDER BY step DESC LIMIT 1", (run_id, step)).fetchone()
            if row is None:
                row = self.con.execute("SELECT blob FROM captures WHERE run_id = ? ORDER BY step LIMIT 1",
                                       (run_id,)).fetchone()
        return None if row is None else unpack_capture(row[0])

    def captures_after(self, run_id, step):
        """Every capture recorded after `step`, oldest first."""
        rows = self.con.execute("SELECT blob FROM captures WHERE run_id = ? AND step > ? ORDER BY step",
                                (run_id, step)).fetchall()
        return [unpack_capture(b) for (b,) in rows]


class _Tx:
    def __init__(self, con):
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN IMMEDIATE")

    def __exit__(self, et, ev, tb):
        self.con.execute("COMMIT" if et is None else "ROLLBACK")


def _run_row(r):
    keys = ("id", "created", "name", "session", "spec", "meta", "state", "step", "steps_per_s", "pid",
            "heartbeat", "command", "updated")
    d = dict(zip(keys, r))
    d["spec"] = json.loads(d["spec"])
    d["meta"] = json.loads(d["meta"])
    return d
