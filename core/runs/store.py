"""
What a Run writes into, and reads back from: one run's rows in the runs file (core.runs.db).
Every run has one -- a page's worker, the CLI, a notebook, a test -- so a run from anywhere
shows on the Runs page and reads the same way.

Writes are kept in memory and go to the file in one transaction at flush(): the worker flushes
a few times a second, a reader flushes before it reads, and a run nobody reads flushes itself
every FLUSH_ROWS steps, so memory stays flat however long it trains. The file keeps every
step's loss and learning rate and thins old captures (core.runs.db.thinned), and so does the
buffer before it is written.
"""

import threading

from core.runs import liveness, settings
from core.runs.db import MAX_CAPTURES, RunDB, thinned

# steps kept in memory at most before they go to the file: with a capture every step, a flush writes
# up to MAX_CAPTURES of them (each packed and written once), so flushing rarely is what keeps it cheap
FLUSH_ROWS = 20_000


class RunStore:

    def __init__(self, db=None, run_id=None, name="run", spec=None):
        """The store of run `run_id` in `db` (a RunDB; default: the runs file in the data directory), or of
        a new run row named `name` (spec: what was trained, as JSON) when run_id is None."""
        # a runs file that another program keeps locked makes training wait, as a worker's does
        self.db = db if db is not None else RunDB(busy_seconds=settings.busy_seconds())
        self._owns_db = db is None  # close() closes only a file handle it opened itself
        if run_id is None:  # a run of this process (CLI, notebook): its pid and start tell readers it is alive;
            # worker=False: no worker reads its commands (liveness.has_worker), so no page offers Stop
            run_id = self.db.create_run(spec or {}, name)
            self.db.update_run(run_id, meta=dict(worker=False), **liveness.identity())
        self.run_id = run_id
        self.last_step = -1
        self._steps, self._evals, self._captures, self._meta = [], [], [], {}
        # a reader, Run.pause/stop or the background writer may be on another thread than the training loop:
        # _lock guards the buffers (held only to append or swap them, so the loop never waits on the disk),
        # _writing puts the writes in order (a later flush never lands before an earlier one)
        self._lock = threading.RLock()
        self._writing = threading.RLock()  # always taken before _lock, never after
        self._writer = None
        self._closing = threading.Event()
        self.error = None  # what the background writer's last write failed with (None once one succeeds)

    # --- writer side (the training loop) -----------------------------------------

    def add_step(self, step, loss, lr):
        with self._lock:
            self._steps.append((step, loss, lr))
            self.last_step = step
            full = len(self._steps) >= FLUSH_ROWS
        if full:
            self.flush()

    def add_eval(self, step, train_loss, val_loss):
        with self._lock:
            self._evals.append((step, train_loss, val_loss))

    def add_capture(self, capture):
        with self._lock:
            self._captures.append(capture)
            if len(self._captures) > MAX_CAPTURES:
                # thinned here as the file would thin them: with a capture every step, most would be
                # packed and written only to be deleted
                self._captures = thinned(self._captures)

    def set_meta(self, **kw):
        with self._lock:
            self._meta.update(kw)

    def flush(self, **run_fields):
        """Everything written so far to the file, in one transaction, with the run row's `run_fields`
        (its step, and its state when the run's state changed, unless given)."""
        with self._writing:
            with self._lock:
                steps, evals, captures, meta = self._steps, self._evals, self._captures, self._meta
                self._steps, self._evals, self._captures, self._meta = [], [], [], {}
                if "state" in meta:
                    run_fields.setdefault("state", meta["state"])
                if self.last_step >= 0:
                    run_fields.setdefault("step", self.last_step + 1)
            try:
                self.db.append(self.run_id, steps=steps, evals=evals, captures=captures, meta=meta or None,
                               **run_fields)
            except BaseException:  # the file refused them (busy, full): keep them for the next flush
                with self._lock:
                    self._steps, self._evals = steps + self._steps, evals + self._evals
                    self._captures, self._meta = captures + self._captures, {**meta, **self._meta}
                raise

    def write_every(self, seconds):
        """Flush from a background thread every `seconds` (a watched loop hands its rows over and goes on:
        the write, most of it inside SQLite, which releases the GIL, overlaps the next steps). A failed write
        is kept in .error, its rows kept for the next one."""
        def write():
            while not self._closing.wait(seconds):
                try:
                    self.flush()
                    self.error = None
                except Exception as e:
                    self.error = e
        self._writer = threading.Thread(target=write, name=f"runstore-{self.run_id}", daemon=True)
        self._writer.start()

    # --- reader side (flushes first: a reader sees every write) ----------------------

    @property
    def meta(self):
        self.flush()
        return self.db.get_run(self.run_id)["meta"]

    @property
    def evals(self):
        self.flush()
        return [tuple(e) for e in self.db.evals(self.run_id)]

    @property
    def captures(self):
        self.flush()
        return self.db.captures_after(self.run_id, -1)

    def latest_capture(self):
        self.flush()
        return self.db.capture(self.run_id)

    def losses(self):
        """(steps, loss, lr) arrays of every step so far."""
        self.flush()
        return self.db.steps_since(self.run_id)

    def last_loss(self):
        with self._writing, self._lock:
            if self._steps:
                return self._steps[-1][1]
            _, loss, _ = self.losses()
            return loss[-1] if len(loss) else float("nan")

    def snapshot(self):
        """Everything recorded so far, consistently: steps, loss, lr (arrays), evals, captures, meta."""
        with self._writing, self._lock:  # no step is added, nor written, between the reads
            steps, loss, lr = self.losses()
            return dict(last_step=int(steps[-1]) if len(steps) else -1, steps=steps, loss=loss, lr=lr,
                        evals=self.evals, captures=self.captures, meta=self.meta)

    def close(self):
        """Flush, and close the runs file if this store opened it (its log folds back into the file). A read
        after it still works: the handle opens again."""
        self._closing.set()
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        self.flush()
        if self._owns_db:
            self.db.close(check_again=False)  # the file was checked when this process first opened it
