"""
Lecture 1's run kind: the moons MLP on micrograd's scalar engine (core.micrograd.live), trained in a
worker process like every other run. core.runs.worker hands a {"model": "micrograd"} run to serve()
here: the engine is no torch model, so it gets this short loop of its own, with the same commands,
heartbeat, orphan timeout and signals as the torch runs' loop.

    page --(pause | resume | stop | step:N | backward | apply)--> worker
    page <--(steps: loss and lr per step; a frame file)---------- worker

`backward` runs the first half of the next step (the loss and every p.grad) and pauses there;
`apply` does the update the page has been showing, and pauses again. A frame (core.micrograd.live.frame:
weights, grads, moments, every neuron's values for every datapoint, the boundary grid) goes to
frames/RUN_ID.npz beside the runs file about every FRAME_SECONDS and after every command: a few
hundred KB a second, too much for the run row's JSON, which every page's poll and the Runs page read.
"""

import io
import os
import time

import numpy as np

from core.micrograd.live import MoonsTrainer, frame, moons_config
from core.runs import liveness, process, storage
from core.runs.store import RunStore

FRAME_SECONDS = 0.1   # a frame at most this often while training: a step is ~0.1 s, the page polls ~7x a second
FLUSH_SECONDS = 0.2   # the steps table, as the torch runs' worker writes it


def frame_path(db, run_id):
    """Where the run's latest frame lives (next to the runs file, as checkpoints do)."""
    return db.frame_path(run_id)


def write_frame(path, arrays):
    """ atomically: a page reading while the worker writes sees the old frame or the new one, never half """
    path.parent.mkdir(exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    storage.write_atomic(path, buf.getbuffer())


def read_frame(path):
    """ the frame as a dict of arrays (0-d ones as Python scalars), or None before the first one """
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}
    except (FileNotFoundError, EOFError, ValueError, OSError):
        return None


def forget_frames(db):
    """ delete the frames of runs the runs file no longer has (deleted, pruned) """
    folder = db.path.parent / "frames"
    if folder.exists():
        keep = {r["id"] for r in db.list_runs()}
        for p in folder.glob("*.npz"):
            if p.stem not in keep:
                p.unlink(missing_ok=True)


def serve(db, run_id, spec, orphan_timeout, start_paused, signals, parent):
    """ train the run's MoonsTrainer as commanded; the torch runs' worker.serve calls this (it set up the
    signals and the runs file) and returns what it returns """
    try:
        cfg = moons_config(**spec.get("train", {}))
    except (TypeError, ValueError) as e:
        db.update_run(run_id, state="failed", meta=dict(message=str(e)))
        return 0
    t = MoonsTrainer(cfg)
    box = RunStore(db, run_id)
    path = frame_path(db, run_id)
    n_params = len(t.params)
    info = dict(model="micrograd", preset=cfg.optimizer, params=n_params, steps=cfg.steps, lr=t.lr_at(0),
                optimizer=cfg.optimizer, dataset="make_moons(100, noise 0.1, seed 1337)", pid=os.getpid())
    state = "paused" if start_paused else "running"
    write_frame(path, frame(t))  # the fresh model, before the first step
    db.update_run(run_id, state=state, meta=info, **liveness.identity())
    budget, stop_reason, started = None, None, time.time()
    last_frame = last_flush = time.time()
    train_seconds = 0.0

    def publish(final_state=None):
        write_frame(path, frame(t))
        fields = dict(step=t.k, steps_per_s=t.k / train_seconds if train_seconds > 0 else None,
                      state=final_state or state)
        if stop_reason:
            box.set_meta(message=stop_reason)
        box.flush(**fields)

    try:
        while True:
            if signals:
                stop_reason = process.signal_reason(signals[0])
                break
            cmd, heartbeat = db.take_command(run_id)
            if cmd == "ended":  # someone judged this worker gone and ended the run: their word stands
                write_frame(path, frame(t))
                return 0
            if cmd == "stop":
                stop_reason = "stopped by the user"
                break
            if cmd in ("pause", "resume", "backward", "apply") or (cmd or "").startswith("step:"):
                budget = None
                if cmd == "resume":
                    state = "running"
                elif cmd == "backward":  # Step: the loss and every grad, then wait with the update pending
                    t.backward()
                    state = "paused"
                elif cmd == "apply":  # ...and the update it showed
                    t0 = time.perf_counter()
                    _record(box, t.apply(), t.k - 1)
                    train_seconds += time.perf_counter() - t0
                    state = "paused"
                elif cmd.startswith("step:"):
                    budget, state = max(1, int(cmd.split(":")[1])), "running"
                else:
                    state = "paused"
                if t.done:
                    break
                publish()
                last_frame = last_flush = time.time()
            if time.time() - max(heartbeat, started, db.busy_until) > orphan_timeout:
                stop_reason = process.orphan_reason(orphan_timeout, parent)
                break
            if state == "paused":
                if time.time() - last_flush > 1.0:  # the row's `updated` moves, so readers see a live worker
                    box.flush(step=t.k, state=state)
                    last_flush = time.time()
                time.sleep(0.03)
                continue
            t0 = time.perf_counter()
            _record(box, t.step(), t.k - 1)
            train_seconds += time.perf_counter() - t0
            if budget is not None:
                budget -= 1
                if budget <= 0:
                    state, budget = "paused", None
            if t.done:
                break
            if time.time() - last_frame > FRAME_SECONDS:
                write_frame(path, frame(t))
                last_frame = time.time()
            if time.time() - last_flush > FLUSH_SECONDS:
                box.flush(step=t.k, steps_per_s=t.k / train_seconds, state=state)
                last_flush = time.time()
        publish("finished" if t.done and not stop_reason else "stopped")
        return 0
    except Exception as e:
        process.log_traceback()
        stop_reason = f"the run failed at step {t.k:,}: {e!r}"
        return process.last_word(db, run_id, lambda final, state: publish(state), stop_reason)


def _record(box, result, k):
    loss, _, lr = result
    box.add_step(k, loss, lr)
