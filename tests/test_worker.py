"""Runs on disk and their worker processes: real processes, a real SQLite file, real training."""

import os
import signal
import time

import numpy as np
import pytest
import torch

from core.capture.record import Capture, pack_capture, unpack_capture
from core.capture.recorder import Recorder
from core.models.build import build_model
from core.models.presets import get_preset
from core.runs.db import MAX_CAPTURES, RunDB
from core.runs.manager import CapacityError, RunManager
from core.runs.spec import build_job
from core.training.loop import Run


def spec(names_path, model="deep", preset="deep-bn", **train):
    train = {"steps": 300, "capture_every": 50, **train}
    return {"model": model, "preset": preset, "model_kw": {}, "train": train,
            "data": {"kind": "file", "path": str(names_path)}}


@pytest.fixture
def manager(tmp_path):
    m = RunManager(tmp_path / "runs.sqlite", max_live=2, orphan_timeout=30)
    yield m
    m.stop_all()


def test_a_run_trains_to_the_end_and_everything_is_on_disk(manager, names_path):
    run_id = manager.start(spec(names_path), "first")
    r = manager.wait(run_id, 120)
    assert r["state"] == "finished" and r["step"] == 300
    assert r["meta"]["params"] == 47_024 and r["meta"]["final"]["val"] > 0
    steps, loss, lr = manager.db.steps_since(run_id)
    assert list(steps) == list(range(300)) and np.all(np.isfinite(loss))
    assert abs(loss[0] - 3.2870309352874756) < 1e-6   # the lecture's step-0 loss, through the worker
    assert manager.db.capture_steps(run_id) == [0, 50, 100, 150, 200, 250, 299]
    cap = manager.db.capture(run_id)
    assert cap.step == 299 and len(cap.raster) == 5       # five tanh layers on the probe batch
    assert cap.raster_matrix("2 Tanh").shape == (32, 100)
    assert [e[0] for e in manager.db.evals(run_id)] == [300]


def test_the_worker_reproduces_the_in_process_run(manager, names_path):
    s = spec(names_path, "mlp", "kaiming", steps=200)
    model, batches, cfg, probe, info, _ = build_job(s)
    local = Run(model, batches, cfg, probe=probe)
    local.run()
    run_id = manager.start(s, "same")
    manager.wait(run_id, 120)
    _, loss, _ = manager.db.steps_since(run_id)
    assert np.array_equal(loss, local.store.snapshot()["loss"])
    # the worker leaves its final model on disk: the same weights as the in-process run's
    model_ck, step = manager.db.load_checkpoint(run_id)
    assert step == 200 and not model_ck.training
    for (n, p), (n2, p2) in zip(local.model.named_parameters(), model_ck.named_parameters()):
        assert n == n2 and torch.equal(p.detach(), p2.detach())
    manager.db.delete_run(run_id)
    assert manager.db.load_checkpoint(run_id) is None


def test_pause_step_resume_stop(manager, names_path):
    run_id = manager.start(spec(names_path, steps=1_000_000), "ctl", paused=True)
    manager.wait(run_id, 60, states=("paused",))
    time.sleep(0.3)
    assert manager.db.get_run(run_id)["step"] == 0
    manager.send(run_id, "step:7")
    t0 = time.time()
    while manager.db.get_run(run_id)["step"] != 7 and time.time() - t0 < 10:
        time.sleep(0.05)
    assert manager.db.get_run(run_id)["step"] == 7
    time.sleep(0.3)
    assert manager.db.get_run(run_id)["step"] == 7 and manager.db.get_run(run_id)["state"] == "paused"
    manager.send(run_id, "resume")
    t0 = time.time()
    while manager.db.get_run(run_id)["step"] < 50 and time.time() - t0 < 10:
        time.sleep(0.05)
    assert manager.db.get_run(run_id)["state"] == "running"
    t0 = time.time()
    manager.send(run_id, "stop")
    while manager.db.get_run(run_id)["state"] != "stopped" and time.time() - t0 < 10:
        time.sleep(0.02)
    assert time.time() - t0 < 2  # the worker answers a control within a fraction of a second (its exit may take longer)
    manager.stop(run_id)
    r = manager.db.get_run(run_id)
    assert r["state"] == "stopped" and r["meta"]["message"] == "stopped by the user"
    steps, _, _ = manager.db.steps_since(run_id)
    assert steps[-1] == r["step"] - 1                 # every step it trained is on disk


def test_an_orphaned_run_stops_itself(tmp_path, names_path):
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=1.0)
    try:
        run_id = m.start(spec(names_path, steps=10_000_000), "orphan")
        r = m.wait(run_id, 30, states=("stopped",))
        assert "tab was closed" in r["meta"]["message"] and r["step"] > 0
    finally:
        m.stop_all()


def test_a_heartbeat_keeps_it_alive(tmp_path, names_path):
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=1.0)
    try:
        run_id = m.start(spec(names_path, steps=10_000_000), "watched")
        m.wait(run_id, 60, states=("running",))  # a loaded machine takes a while to import torch
        for _ in range(25):
            m.db.heartbeat(run_id)
            time.sleep(0.1)
        assert m.db.get_run(run_id)["state"] == "running"
    finally:
        m.stop_all()


def test_the_server_cap_answers_with_a_clear_message(manager, names_path):
    a = manager.start(spec(names_path, steps=10_000_000), "a")
    b = manager.start(spec(names_path, steps=10_000_000), "b")
    with pytest.raises(CapacityError, match="cap is 2"):
        manager.start(spec(names_path), "c")
    manager.stop(a)
    c = manager.start(spec(names_path, steps=10), "c")
    assert manager.wait(c, 60)["state"] == "finished"
    manager.stop(b)


@pytest.mark.parametrize("bad,needle", [
    ({"data": {"kind": "file", "path": "/no/such.txt"}}, "No such file"),
    ({"train": {"lr": float("nan")}}, "finite"),
    ({"model_kw": {"n_hidden": 0}}, "between"),
])
def test_a_bad_spec_fails_with_its_message(manager, names_path, bad, needle):
    s = {**spec(names_path), **bad}
    run_id = manager.start(s, "bad")
    r = manager.wait(run_id, 60)
    assert r["state"] == "failed" and needle in r["meta"]["message"]


def test_a_killed_worker_is_ended_by_a_restarted_server_and_finished_runs_stay(tmp_path, names_path):
    db_path = tmp_path / "runs.sqlite"
    m = RunManager(db_path)
    done = m.start(spec(names_path, steps=20), "kept")
    m.wait(done, 60)
    live = m.start(spec(names_path, steps=10_000_000), "killed")
    m.wait(live, 60, states=("running",))
    m.procs.clear()  # the old server forgets its worker, as a restarted one never knew it
    os.kill(m.db.get_run(live)["pid"], signal.SIGKILL)
    time.sleep(0.5)
    m2 = RunManager(db_path)  # a server restart: it cannot know the exit status, only that the worker is gone
    runs = {r["id"]: r for r in m2.db.list_runs()}
    assert runs[done]["state"] == "finished"
    assert runs[live]["state"] == "failed"
    assert runs[live]["meta"]["message"].startswith("the worker ended unexpectedly at step ")


def test_a_diverging_run_says_where(manager, names_path):
    run_id = manager.start(spec(names_path, "bigram-nn", "default", lr=1e6, steps=50), "nan")
    r = manager.wait(run_id, 60)
    assert r["state"] == "diverged" and r["meta"]["diverged_at"] == 1
    assert "diverged at step 1" in r["meta"]["message"]


def test_capture_blob_round_trip(names_path, manager):
    run_id = manager.start(spec(names_path, steps=2, capture_every=1), "blob")
    manager.wait(run_id, 60)
    c = manager.db.capture(run_id)
    c2 = unpack_capture(pack_capture(c))
    assert c2.keys == c.keys and c2.weights == c.weights and c2.raster == c.raster
    for a in ("counts", "edges", "stats", "wratio"):
        assert np.array_equal(getattr(c2, a), getattr(c, a), equal_nan=True)


def test_a_long_run_keeps_captures_bounded(tmp_path):
    db = RunDB(tmp_path / "r.sqlite")
    run_id = db.create_run({"model": "x"}, "x")
    for i in range(0, 3000, 100):
        caps = [Capture(s, 1.0, (("act", "h"),), ("tanh",), np.zeros((1, 66), np.int32),
                        np.zeros((1, 2), np.float32), np.zeros((1, 6), np.float32), (), np.zeros((0, 3), np.float32))
                for s in range(i, i + 100)]
        db.append(run_id, captures=caps, step=i + 100)
    steps = db.capture_steps(run_id)
    assert len(steps) <= MAX_CAPTURES and steps[0] == 0 and steps[-1] == 2999
    assert steps[-100:] == list(range(2900, 3000))


def test_a_gpt_worker_samples_text_at_every_estimate_without_changing_the_run(manager, shakespeare_path):
    s = {"model": "gpt", "preset": "ffwd", "model_kw": {},
         "train": {"steps": 60, "eval_every": 20, "eval_iters": 5, "capture_every": 20},
         "data": {"kind": "file", "path": str(shakespeare_path)}}
    model, batches, cfg, probe, info, _ = build_job(s)
    local = Run(model, batches, cfg, probe=probe)   # no text sampling here
    local.run()
    run_id = manager.start(s, "gpt")
    r = manager.wait(run_id, 120)
    _, loss, _ = manager.db.steps_since(run_id)
    assert np.array_equal(loss, local.store.snapshot()["loss"])   # sampling text drew nothing from the run's RNG
    assert [e[2] for e in manager.db.evals(run_id)] == [e[2] for e in local.store.snapshot()["evals"]]
    generated = r["meta"]["generated"]
    assert [g["step"] for g in generated] == [0, 20, 40, 60]
    assert all(len(g["text"]) == 300 and set(g["text"]) <= set(info["chars"]) for g in generated)
    assert generated[0]["text"] != generated[-1]["text"]


def test_a_gpt_checkpoint_saves_without_the_recorders_hooks_and_keeps_them(tmp_path):
    model, _ = build_model(get_preset("gpt", "blocks"), 65, 1337)
    rec = Recorder(model)                       # forward hooks on every ReLU and LayerNorm
    n_hooks = sum(len(m._forward_hooks) for m in model.modules())
    assert n_hooks == 3 + 6 + 1
    db = RunDB(tmp_path / "runs.sqlite")
    db.save_checkpoint("r1", model, 5)
    loaded, step = db.load_checkpoint("r1")
    assert step == 5 and sum(len(m._forward_hooks) for m in loaded.modules()) == 0
    assert sum(len(m._forward_hooks) for m in model.modules()) == n_hooks   # the run keeps recording
    x = torch.randint(0, 65, (2, 8))
    model.eval()
    torch.testing.assert_close(loaded(x)[0], model(x)[0])
    rec.close()


def test_a_lecture_models_checkpoint_leaves_out_each_layers_last_output(tmp_path):
    """.out is the last forward's output -- the dev split's after an eval, ~20 MB for the lecture's MLP: not a
    part of the model, and a page runs its own forward. The running model keeps its .out."""
    model, _ = build_model(get_preset("mlp", "kaiming"), 27, 2147483647)
    model(torch.randint(0, 27, (20_000, 3)))
    outs = {name: layer.out for name, layer in model.named_layers() if hasattr(layer, "out")}
    assert len(outs) >= 3
    db = RunDB(tmp_path / "runs.sqlite")
    db.save_checkpoint("r1", model, 7)
    assert db.checkpoint_path("r1").stat().st_size < 200_000  # the weights only (11,897 of them)
    assert all(layer.out is outs[name] for name, layer in model.named_layers() if name in outs)
    loaded, step = db.load_checkpoint("r1")
    assert step == 7 and not any(hasattr(layer, "out") for _, layer in loaded.named_layers())
    x = torch.randint(0, 27, (5, 3))
    model.eval()
    torch.testing.assert_close(loaded(x)[0], model(x)[0])
