"""
The moons MLP as a live run (core.micrograd.live, core.runs.micrograd_worker): the split step against
the demo's own loop, AdamW's moments against torch.optim.AdamW in double precision, the numpy view of
every neuron against the engine's datapoint graph, the layout that never moves, and a real worker
process driven through the runs file with pause, step, backward and apply.
"""

import math
import time

import numpy as np
import pytest
import torch

from core.micrograd.live import (
    MoonsConfig,
    MoonsTrainer,
    frame,
    net_layout,
    neuron_names,
    neuron_values,
    param_names,
    weights,
)
from core.micrograd.moons import datapoint_score, demo_model, make_moons, train_step
from core.runs.manager import RunManager
from core.runs.micrograd_worker import forget_frames, frame_path, read_frame, write_frame
from core.runs.spec import SpecError, check_spec, count_params

SIZES = (2, 16, 16, 1)


def test_split_steps_are_the_demos_loop_to_the_last_bit():
    X, y = make_moons()
    demo = demo_model()
    t = MoonsTrainer()
    for k in range(5):
        loss, acc = train_step(demo, X, y, k)
        t.backward()
        new = t.preview()[0]
        assert t.apply() == (loss, acc, 1.0 - 0.9 * k / 100)
        assert [p.data for p in t.params] == [p.data for p in demo.parameters()] == new.tolist()
    assert t.lossi[0] == 0.8958441028683222 and t.acci[0] == 0.5  # the demo's printed first step


def test_backward_twice_is_one_backward_and_apply_without_backward_does_both():
    t = MoonsTrainer()
    first = t.backward()
    grads = [p.grad for p in t.params]
    assert t.backward() == first and [p.grad for p in t.params] == grads  # not accumulated a second time
    t.apply()
    u = MoonsTrainer()
    u.apply()
    assert [p.data for p in u.params] == [p.data for p in t.params] and u.k == t.k == 1


@pytest.mark.parametrize("steps", [1, 7])
def test_adamw_moments_and_values_equal_torch_adamw_in_double(steps):
    t = MoonsTrainer(MoonsConfig(optimizer="adamw"))
    ref = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in t.params]
    opt = torch.optim.AdamW(ref, lr=t.lr_at(0), betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4, foreach=False)
    for _ in range(steps):
        t.backward()
        for r, p in zip(ref, t.params):
            r.grad = torch.tensor(float(p.grad), dtype=torch.float64)  # the engine's grads, fed to torch
        opt.step()
        t.apply()
    m = np.array([opt.state[r]["exp_avg"].item() for r in ref])
    v = np.array([opt.state[r]["exp_avg_sq"].item() for r in ref])
    data = np.array([r.item() for r in ref])
    assert np.allclose(t.m, m, rtol=1e-12, atol=1e-300) and np.allclose(t.v, v, rtol=1e-12, atol=1e-300)
    assert np.allclose([p.data for p in t.params], data, rtol=1e-12, atol=1e-15)
    assert np.abs(t.m).max() > 0 and np.abs(t.v).max() > 0


def test_neuron_values_equal_the_engines_datapoint_graph():
    t = MoonsTrainer()
    for _ in range(3):
        t.step()
    act, out, dout = neuron_values(weights(t.model), t.X)
    names = neuron_names(SIZES)
    for i in (0, 17, 99):
        score = datapoint_score(t.model, t.X[i])  # d score / d every node, by the engine
        # the engine's neuron outputs and their pre-activations, found by walking the graph from the score
        found = {}
        for layer_i, layer in enumerate(t.model.layers, 1):
            x = [float(v) for v in t.X[i]] if layer_i == 1 else [found[f"L{layer_i - 1}.N{j + 1}"][1]
                                                                   for j in range(len(t.model.layers[layer_i - 2].neurons))]
            for j, n in enumerate(layer.neurons, 1):
                a = sum((w.data * xi for w, xi in zip(n.w, x)), n.b.data)
                found[f"L{layer_i}.N{j}"] = (a, max(a, 0) if n.nonlin else a)
        for c, name in enumerate(names):
            assert math.isclose(act[i, c], found[name][0], rel_tol=1e-12, abs_tol=1e-12), name
            assert math.isclose(out[i, c], found[name][1], rel_tol=1e-12, abs_tol=1e-12), name
        assert math.isclose(out[i, -1], score.data, rel_tol=1e-12)
        # the gradients against the engine's own: its backward() left d score / d w on the first layer's
        # weights, x1 * (d score / d act_j) for w1 of L1.Nj, and d score / d act_j on its bias
        for j, n in enumerate(t.model.layers[0].neurons):
            g_act = dout[i, j] * (out[i, j] > 0)
            assert math.isclose(n.w[0].grad, t.X[i, 0] * g_act, rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(n.b.grad, g_act, rel_tol=1e-9, abs_tol=1e-12)


def test_layout_is_one_per_shape_and_names_sort_naturally():
    a, b = net_layout(SIZES, (50, 300, 600, 900), 500), net_layout(SIZES, (50, 300, 600, 900), 500)
    assert a is b and len(a) == 2 + 33
    assert [n for n in a if n.startswith("L1.")][-1] == "L1.N16"
    assert a["L1.N2"][1] > a["L1.N1"][1] and a["L1.N1"][0] < a["L2.N1"][0] < a["L3.N1"][0]
    assert param_names(SIZES)[:3] == ["L1.N1.w1", "L1.N1.w2", "L1.N1.b"] and len(param_names(SIZES)) == 337


def test_frame_after_backward_holds_the_pending_update():
    t = MoonsTrainer()
    t.step()
    t.backward()
    f = frame(t)
    assert f["phase"] == "backward" and f["k"] == 1
    lr = 1.0 - 0.9 * 1 / 100
    assert f["new"].tolist() == [p.data - lr * p.grad for p in t.params]
    assert f["act"].shape == (100, 33) and f["Z"].ndim == 2 and len(f["lossi"]) == 1


def test_spec_checks_the_micrograd_run_kind():
    assert check_spec({"model": "micrograd", "train": {"optimizer": "adamw", "steps": 50}})[1].optimizer == "adamw"
    assert count_params({"model": "micrograd"}) == 337
    for bad, msg in [({"optimizer": "adam"}, "sgd or adamw"), ({"steps": 0}, "between 1"), ({"bs": 3}, "unknown")]:
        with pytest.raises(SpecError, match=msg):
            check_spec({"model": "micrograd", "train": bad})

# -----------------------------------------------------------------------------
# a real worker process


def wait_for(pred, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def mgr(tmp_path):
    m = RunManager(tmp_path / "runs.sqlite")
    yield m
    m.stop_all()
    m.close()


def test_worker_trains_the_demo_to_100_percent_and_writes_frames(mgr):
    run_id = mgr.start({"model": "micrograd", "train": {"steps": 100}}, "micrograd/sgd")
    row = mgr.wait(run_id, timeout=120)
    assert row["state"] == "finished" and row["step"] == 100, row
    steps, loss, lr = mgr.db.steps_since(run_id)
    assert steps.tolist() == list(range(100)) and loss[0] == 0.8958441028683222 and lr[0] == 1.0
    f = read_frame(frame_path(mgr.db, run_id))
    assert f["k"] == 100 and f["acc"] == 1.0 and f["acci"][-1] == 1.0


def test_worker_step_pauses_after_backward_then_applies_the_shown_update(mgr):
    run_id = mgr.start({"model": "micrograd", "train": {"steps": 100}}, "micrograd/sgd", paused=True)
    path = frame_path(mgr.db, run_id)
    wait_for(lambda: mgr.db.get_run(run_id)["state"] == "paused" and read_frame(path))
    mgr.send(run_id, "step:2")
    wait_for(lambda: (read_frame(path) or {}).get("k") == 2 and mgr.db.get_run(run_id)["state"] == "paused")
    mgr.send(run_id, "backward")
    f = wait_for(lambda: (f := read_frame(path)) and f["phase"] == "backward" and f)
    t = MoonsTrainer()
    t.step()
    t.step()
    t.backward()
    assert f["grad"].tolist() == [p.grad for p in t.params] and f["new"].tolist() == t.preview()[0].tolist()
    mgr.send(run_id, "apply")
    g = wait_for(lambda: (g := read_frame(path)) and g["k"] == 3 and g)
    assert g["phase"] == "applied" and g["data"].tolist() == f["new"].tolist()
    assert mgr.db.get_run(run_id)["state"] == "paused"
    mgr.stop(run_id)
    assert mgr.db.get_run(run_id)["state"] == "stopped"


def test_frames_of_runs_the_file_no_longer_has_are_forgotten(mgr):
    kept = mgr.db.create_run({"model": "micrograd"}, "kept")
    frame_file = frame_path(mgr.db, kept)
    write_frame(frame_file, {"k": np.array(1)})
    gone = frame_path(mgr.db, "deadbeef0000")
    write_frame(gone, {"k": np.array(2)})
    forget_frames(mgr.db)
    assert read_frame(frame_file) == {"k": 1} and not gone.exists()
