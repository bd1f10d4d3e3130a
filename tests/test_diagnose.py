"""Diagnosis on real runs: the lecture's scenarios must be diagnosed as the lecture describes them."""

import pytest

from core.capture.diagnose import Subject, dead_units, diagnose
from core.models.build import build_model
from core.models.presets import get_preset, train_config
from core.runs.spec import build_job
from core.training.loop import Run, TensorBatches
from data import WordsDataset


def run_spec(names_path, model, preset, steps=1, **kw):
    train = {"steps": steps, "capture_every": 1, **kw.pop("train", {})}
    spec = {"model": model, "preset": preset, "model_kw": kw, "train": train,
            "data": {"kind": "file", "path": str(names_path)}}
    model_, batches, cfg, probe, info, _ = build_job(spec)
    run = Run(model_, batches, cfg, probe=probe)
    run.run()
    snap = run.store.snapshot()
    return run, snap, info


def findings(run, snap, info, **kw):
    caps = snap["captures"]
    return {f.id: f for f in diagnose(Subject.of(info), init_loss=run.init_loss, capture=caps[-1],
                                      recent=caps[-5:], losses=(snap["steps"], snap["loss"], snap["lr"]),
                                      state=run.state, diverged_at=run.diverged_at, **kw)}


def test_raw_init_is_confidently_wrong_and_saturated(names_path):
    f = findings(*run_spec(names_path, "mlp", "raw"))
    assert f["softmax"].severity == "error" and "27.88" in f["softmax"].evidence and "3.30" in f["softmax"].evidence
    assert f["saturation"].severity == "error" and "h: 68.5%" in f["saturation"].evidence
    assert "fix-softmax" in f["softmax"].fix and "kaiming" in f["saturation"].fix


def test_kaiming_init_is_healthy(names_path):
    f = findings(*run_spec(names_path, "mlp", "kaiming", steps=50))
    assert f["softmax"].severity == "ok" and f["saturation"].severity == "ok"
    assert "dead" not in f
    assert f["update-ratio"].severity == "ok"


def test_raw_probe_raster_is_mostly_white_without_a_dead_column(names_path):
    run, snap, info = run_spec(names_path, "mlp", "raw")
    c = snap["captures"][-1]
    m = c.raster_matrix("h")
    assert m.mean() > 0.5                        # the lecture: most of the raster is white...
    assert len(dead_units(c, "h")) == 0          # ...but no column is white all the way down


def test_huge_biases_kill_units(names_words):
    # b1 * 20: a unit whose bias is far from 0 is saturated for every example -- dead
    ds = WordsDataset(names_words[:3000], 3)
    preset = get_preset("mlp", "raw")
    model, g = build_model(preset, 27, 2147483647, b1_scale=20.0)
    run = Run(model, TensorBatches({"train": (ds.Xtr, ds.Ytr)}, 32, g), train_config(preset, steps=1, capture_every=1),
              probe=ds.Xdev[:32])
    run.run()
    c = run.store.snapshot()["captures"][-1]
    dead = dead_units(c, "h")
    assert len(dead) > 20 and c.raster_matrix("h")[:, dead].all()
    f = {x.id: x for x in diagnose(capture=c)}
    assert f["dead"].severity == "error" and f"h: {len(dead)} of 200" in f["dead"].evidence


@pytest.mark.parametrize("lr,key,severity", [(5.0, "update-ratio", "error"), (1e-5, "update-ratio", "warn")])
def test_learning_rate_too_high_or_too_low(names_path, lr, key, severity):
    f = findings(*run_spec(names_path, "mlp", "kaiming", steps=20, train={"lr": lr}))
    assert f[key].severity == severity


def test_vanishing_gradients_in_a_deep_stack_with_small_gain(names_path):
    f = findings(*run_spec(names_path, "deep", "deep-tanh", gain=0.5))
    assert f["gradients"].severity == "warn" and "vanish" in f["gradients"].title


def test_batchnorm_with_a_tiny_batch_and_sampled_in_train_mode(names_path):
    f = findings(*run_spec(names_path, "mlp", "batchnorm", train={"batch_size": 2}), sampled_in_train_mode=True)
    assert f["bn-batch"].severity == "warn" and "batch of 2" in f["bn-batch"].title
    assert f["bn-train-sampling"].severity == "error"


def test_divergence_names_the_step(names_path):
    run, snap, info = run_spec(names_path, "bigram-nn", "default", steps=50, train={"lr": 1e6, "capture_every": 0})
    f = {x.id: x for x in diagnose(Subject(vocab_size=27), init_loss=run.init_loss, state=run.state,
                                    diverged_at=run.diverged_at)}
    assert f["diverged"].severity == "error" and "step 1" in f["diverged"].title


def test_findings_are_sorted_worst_first(names_path):
    fs = diagnose(Subject(vocab_size=27), init_loss=27.9, state="diverged", diverged_at=3)
    assert [f.severity for f in fs] == ["error", "error"]


def test_a_gpt_with_dozens_of_weights_gets_a_short_update_ratio_finding(shakespeare_path):
    run, snap, info = run_spec(shakespeare_path, "gpt", "small", steps=3)
    f = findings(run, snap, info)
    ev = f["update-ratio"].evidence
    n = sum(1 for w in snap["captures"][-1].weight_stats() if len(w["shape"]) == 2)
    assert n > 8 and f"{n} weights, lowest" in ev and "highest" in ev and len(ev) < 500  # all 63 listed made ~2,500
