import math
import os
import threading
import time

import numpy as np
import pytest
import torch

from core.capture.record import Capture
from core.models.build import build_model
from core.models.presets import get_preset, train_config
from core.runs.db import KEEP_RECENT_CAPTURES, MAX_CAPTURES, RunDB
from core.runs.store import FLUSH_ROWS, RunStore
from core.training.loop import Run, TensorBatches, TextBatches
from core.training.sampling import lecture_multinomial, sample_words

V = 27


def tiny_run(model="mlp", preset="kaiming", steps=50, seed=2147483647, **over):
    p = get_preset(model, preset)
    g0 = torch.Generator().manual_seed(0)
    X = torch.randint(1, V, (3000, p.block_size), generator=g0)
    Y = (X[:, -1] + 1) % V  # learnable: next character follows the last
    cfg = train_config(p, steps=steps, seed=seed, **over)
    m, g = build_model(p, V, cfg.seed)
    return Run(m, TensorBatches({"train": (X, Y), "val": (X[:300], Y[:300])}, cfg.batch_size, g), cfg)


# --- the store ----------------------------------------------------------------------------

def fake_capture(step, k=30, w=12):
    return Capture(step, 1.0, tuple(("act", f"l{i}") for i in range(k)), ("tanh",) * k,
                   np.zeros((k, 66), np.int32), np.zeros((k, 2), np.float32), np.zeros((k, 6), np.float32),
                   tuple((f"w{i}", (100, 100)) for i in range(w)), np.zeros((w, 3), np.float32))


def test_store_for_a_million_steps_keeps_memory_flat_and_thins_captures_on_disk():
    store = RunStore(name="a million steps")
    held = 0
    for i in range(1_000_000):
        store.add_step(i, 2.0, 0.1)
        if i % 100 == 0:
            store.add_capture(fake_capture(i))
        held = max(held, len(store._steps))
    assert held <= FLUSH_ROWS  # the rest went to the file on the way
    steps = store.db.capture_steps(store.run_id)
    assert len(steps) <= MAX_CAPTURES and steps[0] == 0 and steps[-1] == 999_900
    snap = store.snapshot()
    assert np.array_equal(snap["steps"], np.arange(1_000_000))
    row = store.db.get_run(store.run_id)
    assert row["step"] == 1_000_000 and row["name"] == "a million steps"


def test_a_run_is_a_row_of_the_runs_file_and_reads_back_as_written():
    run = tiny_run(steps=12, capture_every=4)
    run.advance(12)
    run.close()
    row = RunDB().get_run(run.store.run_id)  # the default runs file: this test session's
    assert row["name"] == "MLP" and row["state"] == "finished" and row["step"] == 12  # no meta: the class
    assert row["pid"] == os.getpid() and row["meta"]["final"]["train"] == run.final["train"]
    steps, loss, lr = run.store.losses()
    assert list(steps) == list(range(12)) and np.isfinite(loss).all()
    assert [c.step for c in run.store.captures] == [0, 4, 8, 11]


def test_snapshot_is_consistent_while_another_thread_trains():
    run = tiny_run(steps=400, capture_every=5)
    t = threading.Thread(target=run.run, kwargs=dict(chunk=10))
    t.start()
    seen = 0
    while t.is_alive() or seen == 0:
        snap = run.store.snapshot()
        n = len(snap["steps"])
        assert len(snap["loss"]) == len(snap["lr"]) == n
        if n:
            assert snap["steps"][-1] == snap["last_step"]
            assert np.array_equal(snap["steps"], np.arange(n))
            assert all(c.step <= snap["last_step"] for c in snap["captures"])
        seen += 1
        time.sleep(0.002)  # a reader polls; a busy loop would only starve the trainer of the GIL
    t.join()
    assert run.state == "finished" and seen > 1


# --- the run --------------------------------------------------------------------------------

def test_advance_pause_resume_stop():
    run = tiny_run(steps=100)
    assert run.state == "ready"
    assert run.advance(10) == 10 and run.step == 10 and run.state == "running"
    run.pause()
    assert run.state == "paused" and run.advance(10) == 0
    run.resume()
    assert run.advance(5) == 5 and run.step == 15
    run.stop()
    assert run.state == "stopped" and run.advance(5) == 0 and run.step == 15
    assert run.store.meta["state"] == "stopped"


def wait_for(pred, timeout=30.0):
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.01)


def test_pause_from_another_thread_takes_effect_before_the_next_step():
    run = tiny_run(steps=100_000, capture_every=0)
    t = threading.Thread(target=run.run)
    t.start()
    wait_for(lambda: run.step > 10)
    run.pause()
    s = run.step
    time.sleep(0.3)  # the paused thread looks again every 0.05 s: it had six chances to step
    assert run.step <= s + 1 and run.state == "paused"  # at most the step under way when pause came
    s = run.step
    run.resume()
    wait_for(lambda: run.step > s + 10)
    run.stop()
    t.join(timeout=5)
    assert not t.is_alive() and run.state == "stopped"


def test_run_finishes_with_eval_mode_split_losses():
    run = tiny_run(steps=300)
    run.advance(1000)
    assert run.state == "finished" and run.step == 300
    assert run.final["train"] < run.init_loss
    assert run.store.evals[-1][0] == 300


def test_same_seed_is_deterministic_and_another_seed_is_not():
    a, b, c = tiny_run(steps=30), tiny_run(steps=30), tiny_run(steps=30, seed=1)
    for r in (a, b, c):
        r.advance(30)
    assert np.array_equal(a.store.losses()[1], b.store.losses()[1])
    assert not np.array_equal(a.store.losses()[1], c.store.losses()[1])


def test_lr_schedule_is_the_lectures_step_decay():
    run = tiny_run(steps=20, lr=0.1, lr_decay_step=10, lr_final=0.01)
    run.advance(20)
    lr = run.store.losses()[2]
    assert list(lr[:10]) == [0.1] * 10 and list(lr[10:]) == [0.01] * 10


def test_diverging_run_stops_with_a_clear_state():
    run = tiny_run("deep", "deep-linear", steps=200, lr=10.0)  # a linear stack at lr 10 blows up
    run.advance(200)
    assert run.state == "diverged"
    assert run.diverged_at is not None and run.step == run.diverged_at
    assert f"diverged at step {run.diverged_at}" in run.store.meta["message"]
    assert not math.isfinite(run.store.losses()[1][-1])


def test_infinite_weight_is_counted_not_crashing_the_capture():
    run = tiny_run(steps=3, capture_every=1)
    with torch.no_grad():
        run.model.C[0] = float("inf")  # row 0 ('.') never appears in these inputs: the loss stays finite
    run.advance(3)
    assert run.state == "finished"
    c = {w["name"]: w for w in run.store.latest_capture().weight_stats()}["C"]
    assert math.isnan(c["data_std"]) and c["update_data_log10"] is None  # std of a row with inf: NaN


def test_adamw_for_gpt_and_eval_interval():
    p = get_preset("gpt", "small")
    cfg = train_config(p, steps=20, eval_every=10, eval_iters=2, capture_every=5)
    text = torch.randint(0, V, (5000,))

    def get_batch(split):
        ix = torch.randint(len(text) - 8, (4,))
        return torch.stack([text[i:i + 8] for i in ix]), torch.stack([text[i + 1:i + 9] for i in ix])
    model, _ = build_model(p, V, 1337, block_size=8, n_layer=1, n_embd=16, n_head=2)
    run = Run(model, TextBatches(get_batch, eval_iters=2), cfg)
    run.advance(20)
    assert run.optimizer is not None and run.state == "finished"
    assert [e[0] for e in run.store.evals] == [10, 20]
    assert run.store.captures and run.store.captures[-1].step == 19


def test_sample_words_ends_at_dot_and_is_seeded():
    run = tiny_run(steps=0)
    g1 = torch.Generator().manual_seed(2147483647 + 10)
    g2 = torch.Generator().manual_seed(2147483647 + 10)
    a = sample_words(run.model, 5, g1)
    b = sample_words(run.model, 5, g2)
    assert a == b and all(0 not in w for w in a)


def test_lecture_multinomial_follows_the_cumulative_sum():
    p = torch.tensor([0.0, 0.25, 0.0, 0.75])
    g = torch.Generator().manual_seed(0)
    draws = [lecture_multinomial(p, g) for _ in range(2000)]
    assert set(draws) == {1, 3}
    assert np.mean(np.array(draws) == 3) == pytest.approx(0.75, abs=0.05)


def test_captures_waiting_for_the_file_are_thinned_as_the_file_thins_them():
    store = RunStore(name="thinning")
    for i in range(MAX_CAPTURES):  # as many as the file keeps: every one waits
        store.add_capture(fake_capture(i))
    assert [c.step for c in store._captures] == list(range(MAX_CAPTURES))
    for i in range(MAX_CAPTURES, 3000):
        store.add_capture(fake_capture(i))
    steps = [c.step for c in store._captures]
    assert len(steps) <= MAX_CAPTURES  # never more waiting than the file would keep
    assert steps[0] == 0 and steps[-KEEP_RECENT_CAPTURES:] == list(range(3000 - KEEP_RECENT_CAPTURES, 3000))
    assert np.all(np.diff(steps) > 0)
    store.flush()
    assert [c.step for c in store.captures] == steps


def test_close_flushes_only_a_store_the_run_made_itself():
    p = get_preset("mlp", "kaiming")
    cfg = train_config(p, steps=3)
    m, g = build_model(p, V, cfg.seed)
    X = torch.randint(1, V, (100, p.block_size), generator=torch.Generator().manual_seed(0))
    store = RunStore(name="the caller's")
    run = Run(m, TensorBatches({"train": (X, X[:, -1])}, 8, g), cfg, store=store)
    run.advance(3)
    run.close()  # a worker writes its last rows itself, after its last checkpoint
    assert len(store.db.steps_since(store.run_id)[0]) == 0
    store.flush()
    assert len(store.db.steps_since(store.run_id)[0]) == 3


def test_rows_the_file_refused_wait_for_the_next_flush():
    store = RunStore(name="refused")
    store.add_step(0, 2.0, 0.1)
    store.add_capture(fake_capture(0))
    append = store.db.append
    store.db.append = lambda *a, **kw: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError):
        store.flush()
    store.db.append = append
    store.add_step(1, 1.9, 0.1)
    assert list(store.losses()[0]) == [0, 1] and [c.step for c in store.captures] == [0]
