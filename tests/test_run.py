import math
import threading
import time

import numpy as np
import pytest
import torch

from core.capture.record import Capture
from core.models.presets import build_model, get_preset, train_config
from core.runs.store import RunStore, Series
from core.training.loop import Run, TensorBatches
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

def test_series_thins_old_points_keeps_recent_exact():
    s = Series(max_points=100, keep_recent=10)
    for i in range(1000):
        s.append(i, float(i))
    steps, values = s.arrays()
    assert len(steps) <= 100
    assert list(steps[-10:]) == list(range(990, 1000))  # the recent tail is exact
    assert np.all(np.diff(steps) > 0)
    # a thinned point is the mean of the raw steps it stands for: value = step - (span - 1) / 2
    spans = np.diff(np.concatenate([[-1], steps]))
    assert np.allclose(values, steps - (spans - 1) / 2)


def fake_capture(step, k=30, w=12):
    return Capture(step, 1.0, tuple(("act", f"l{i}") for i in range(k)), ("tanh",) * k,
                   np.zeros((k, 66), np.int32), np.zeros((k, 2), np.float32), np.zeros((k, 6), np.float32),
                   tuple((f"w{i}", (100, 100)) for i in range(w)), np.zeros((w, 3), np.float32))


def test_store_for_a_million_steps_stays_under_64mb_and_flat():
    store = RunStore()
    sizes = []
    for i in range(1_000_000):
        store.add_step(i, 2.0, 0.1)
        if i % 100 == 0:
            store.add_capture(fake_capture(i))
        if i % 50_000 == 49_999:
            sizes.append(store.nbytes())
    assert max(sizes) < 64e6
    assert max(sizes[4:]) <= max(sizes[:4]) * 1.05  # flat after warm-up (the first 200k steps)
    snap = store.snapshot()
    assert snap["captures"][0].step == 0 and snap["captures"][-1].step == 999_900
    assert snap["steps"][-1] == 999_999


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


def test_pause_from_another_thread_takes_effect_before_the_next_step():
    run = tiny_run(steps=100_000, capture_every=0)
    t = threading.Thread(target=run.run)
    t.start()
    time.sleep(0.3)
    run.pause()
    time.sleep(0.2)
    s = run.step
    time.sleep(0.3)
    assert run.step == s and run.state == "paused"
    run.resume()
    time.sleep(0.2)
    assert run.step > s
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
    assert np.array_equal(a.store.loss.arrays()[1], b.store.loss.arrays()[1])
    assert not np.array_equal(a.store.loss.arrays()[1], c.store.loss.arrays()[1])


def test_lr_schedule_is_the_lectures_step_decay():
    run = tiny_run(steps=20, lr=0.1, lr_decay_step=10, lr_final=0.01)
    run.advance(20)
    lr = run.store.lr.arrays()[1]
    assert list(lr[:10]) == [0.1] * 10 and list(lr[10:]) == [0.01] * 10


def test_diverging_run_stops_with_a_clear_state():
    run = tiny_run("deep", "deep-linear", steps=200, lr=10.0)  # a linear stack at lr 10 blows up
    run.advance(200)
    assert run.state == "diverged"
    assert run.diverged_at is not None and run.step == run.diverged_at
    assert f"diverged at step {run.diverged_at}" in run.store.meta["message"]
    assert not math.isfinite(run.store.loss.arrays()[1][-1])


def test_infinite_weight_is_counted_not_crashing_the_capture():
    run = tiny_run(steps=3, capture_every=1)
    with torch.no_grad():
        run.model.C[0] = float("inf")  # row 0 ('.') never appears in these inputs: the loss stays finite
    run.advance(3)
    assert run.state == "finished"
    c = {w["name"]: w for w in run.store.latest_capture().weight_stats()}["C"]
    assert c["update_data_log10"] is None or not math.isfinite(c["data_std"])


def test_adamw_for_gpt_and_eval_interval():
    p = get_preset("gpt", "small")
    cfg = train_config(p, steps=20, eval_every=10, eval_iters=2, capture_every=5)
    text = torch.randint(0, V, (5000,))

    def get_batch(split):
        ix = torch.randint(len(text) - 8, (4,))
        return torch.stack([text[i:i + 8] for i in ix]), torch.stack([text[i + 1:i + 9] for i in ix])
    from core.training.loop import TextBatches
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
