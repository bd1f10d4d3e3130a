"""
Training outside the web server: one worker process per run, talking to pages
only through the runs file (core.runs.db), through the run's store (core.runs.store).

    page --(runs.command: pause | resume | step:N | stop)--> worker
    page <--(steps, evals, captures, runs.state/step)------- worker
    page --(runs.heartbeat, every refresh)-----------------> worker

Why a process: a training thread inside the Streamlit server shares the GIL and
a core with rendering and lost 30-50% of its speed; a process keeps its own core
(bench/bench_live.py measures it). The worker trains in chunks of ~50 ms, then
reads its command and heartbeat and, every ~0.2 s, writes what it has in one
transaction. A run nobody has looked at for `orphan_timeout` seconds (its tab was
closed) stops itself; what it recorded stays on disk.

The server side (start with a cap on live runs, command, reap) is core.runs.manager.
"""

import os
import sys
import time
import traceback

import torch

from core.models.inspector import generate_text
from core.runs.db import RunDB
from core.runs.spec import build_job
from core.runs.store import RunStore
from core.training.loop import Run, configure_torch
from core.training.sampling import sample_words

CHUNK_SECONDS = 0.05   # train this long between looks at the command slot
FLUSH_SECONDS = 0.2    # write to disk this often (a page refreshes once a second)
CHECKPOINT_SECONDS = 2.0  # save the model this often while training (and at every pause and at the end)
GENERATED_CHARS = 300  # GPT: characters generated at every loss estimate...
GENERATED_KEPT = 12    # ...of which the run's meta keeps the first and the latest few


def serve(db_path, run_id, orphan_timeout=30.0, start_paused=False):
    """Worker process entry point: build the run from its spec, then train as commanded."""
    configure_torch(1)
    db = RunDB(db_path)
    row = db.get_run(run_id)
    if row is None:
        return
    try:
        model, batches, cfg, probe, info, _ = build_job(row["spec"])
    except ValueError as e:  # SpecError, DataError: the page shows the message
        db.update_run(run_id, state="failed", meta=dict(message=str(e)))
        return
    except Exception as e:  # a bug: keep the message, log the traceback for the developer
        traceback.print_exc()
        db.update_run(run_id, state="failed", meta=dict(message=f"the worker failed: {e!r}"))
        return
    box = RunStore(db, run_id)
    generated = []  # GPT: text sampled from a fixed seed at every loss estimate, to watch it improve

    def generate(step):
        generated.append(_generate(run, info, step))
        box.set_meta(generated=generated[:1] + generated[1:][1 - GENERATED_KEPT:])

    run = Run(model, batches, cfg, store=box, device=info["device"], probe=probe,
              meta=dict(model=info["model"], preset=info["preset"]),
              on_eval=generate if info["model"] == "gpt" else None)
    if info["model"] == "gpt":
        generate(0)  # the fresh model's gibberish, to compare with
    db.update_run(run_id, state="paused" if start_paused else "running", meta=dict(info, pid=os.getpid()))
    if start_paused:
        run.pause()
    chunk, budget, stop_reason = 1, None, None
    started = time.time()  # the orphan clock starts when training can start, not when the page asked
    last_flush = 0.0
    saved = [-1, 0.0]  # step and time of the last checkpoint

    def checkpoint(force=False):
        """The model on disk, for pages that look inside it (embeddings, attention, softmax rows)."""
        if run.step != saved[0] and (force or time.time() - saved[1] > CHECKPOINT_SECONDS):
            db.save_checkpoint(run_id, run.model, run.step)
            saved[:] = [run.step, time.time()]

    def flush(final=False):
        fields = dict(step=run.step, steps_per_s=run.steps_per_s if run.train_seconds > 0 else None)
        if final:
            fields["state"] = run.state  # (otherwise the store writes the state the run last set, if it changed)
        if stop_reason:
            box.set_meta(message=stop_reason)
        box.flush(**fields)

    try:
        while not run.done:
            cmd, heartbeat = db.take_command(run_id)
            if cmd == "stop":
                run.stop()
                stop_reason = "stopped by the user"
                break
            if cmd == "pause":
                run.pause()
                budget = None
            elif cmd == "resume":
                run.resume()
                budget = None
            elif cmd and cmd.startswith("step:"):
                run.resume()
                budget = max(1, int(cmd.split(":")[1]))
            elif cmd and cmd.startswith("sample:"):  # sample:N:train|eval
                _, n, mode = cmd.split(":")
                box.set_meta(samples=_samples(run, info, int(n), mode == "train"))
            if time.time() - max(heartbeat, started) > orphan_timeout:
                run.stop()
                stop_reason = (f"stopped: no page watched this run for {orphan_timeout:g} s "
                               "(its browser tab was closed); what it recorded is kept")
                break
            if run.state == "paused":
                if time.time() - last_flush > FLUSH_SECONDS:
                    checkpoint(force=True)
                    flush()
                    last_flush = time.time()
                time.sleep(0.03)
                continue
            n = chunk if budget is None else min(chunk, budget)
            t0 = time.perf_counter()
            done = run.advance(n)
            dt = time.perf_counter() - t0
            if done == n:  # aim each chunk at CHUNK_SECONDS, growing or shrinking by at most 2x
                chunk = max(1, min(chunk * 2, int(n * CHUNK_SECONDS / max(dt, 1e-6))))
            if budget is not None:
                budget -= done
                if budget <= 0 and not run.done:
                    run.pause()
                    budget = None
            if time.time() - last_flush > FLUSH_SECONDS:
                checkpoint(force=run.done)  # the last one lands before the page can see "finished"
                flush()
                last_flush = time.time()
    except Exception as e:
        traceback.print_exc()
        run.stop()
        stop_reason = f"the run failed at step {run.step}: {e!r}"
        flush(final=True)
        db.update_run(run_id, state="failed")
        return
    finally:
        run.close()
    if run.state == "finished" and info["model"] != "bigram":
        box.set_meta(samples=_samples(run, info, 10, False))
    checkpoint(force=True)
    flush(final=True)


def _generate(run, info, step):
    """GPT: GENERATED_CHARS characters from the lecture's zeros((1, 1)) context, always from the same seed,
    so what changes between two of them is the model, not the dice."""
    ix = generate_text(run.model, GENERATED_CHARS, seed=run.cfg.seed + 10)
    return dict(step=step, text="".join(info["chars"][i] for i in ix))


def _samples(run, info, n, train_mode):
    """makemore's sampler on the live model; train_mode=True reproduces the BatchNorm-sampling bug."""
    g = torch.Generator().manual_seed(run.cfg.seed + 10)  # the lectures sample from seed + 10
    was = getattr(run.model, "training", True)
    try:
        words = sample_words(run.model, n, g, max_len=60, train_mode=train_mode)
    except Exception as e:  # a batch of one through BatchNorm in training mode: the bug's own failure
        return dict(mode="train" if train_mode else "eval", words=[], error=str(e))
    finally:
        run.model.train(was)
    chars = info["chars"]
    return dict(mode="train" if train_mode else "eval", step=run.step,
                words=["".join(chars[i] for i in w) for w in words])


if __name__ == "__main__":  # python -m core.runs.worker DB RUN_ID ORPHAN_SECONDS [--paused]
    serve(sys.argv[1], sys.argv[2], float(sys.argv[3]), start_paused="--paused" in sys.argv[4:])
