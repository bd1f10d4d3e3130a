"""Lecture 3's learning-rate finder: the sweep a Run follows, and reading its curve."""

import math

import numpy as np
import pytest
import torch

from core.models.presets import get_preset, lr_sweep, train_config
from core.runs.spec import SpecError, build_job, check_spec, count_params
from core.training.loop import Run, TextBatches
from core.training.lr_finder import smooth_loss, suggest_lr


def finder_spec(names_path, **train):
    return {"model": "mlp", "preset": "lecture3-2d", "model_kw": {},
            "train": {"steps": 1000, "lre_sweep": [-3, 0], "lr_decay_step": 0, "capture_every": 0, **train},
            "data": {"kind": "file", "path": str(names_path)}}


def test_the_sweep_is_the_lectures_lrs_in_float32():
    lre, lrs = lr_sweep(-3, 0, 1000)
    assert lrs == (10**torch.linspace(-3, 0, 1000)).tolist()   # the lecture's two lines, exactly
    cfg = train_config(get_preset("mlp", "lecture3-2d"), steps=1000, lre_sweep=(-3, 0))
    assert cfg.lr_at(0) == pytest.approx(1e-3, rel=1e-6) and cfg.lr_at(999) == 1.0
    assert all(cfg.lr_at(i) < cfg.lr_at(i + 1) for i in range(999))   # no step decay inside a sweep


def test_lecture3_presets_have_the_lectures_parameter_counts():
    two_d = {"model": "mlp", "preset": "lecture3-2d", "model_kw": {}, "train": {}}
    final = {"model": "mlp", "preset": "lecture3", "model_kw": {}, "train": {}}
    assert count_params(two_d) == 3_481    # C 27x2, W1 6x100, b1, W2 100x27, b2
    assert count_params(final) == 11_897   # the lecture's "11897" for n_embd 10, n_hidden 200


@pytest.mark.parametrize("sweep,needle", [
    ([0, -3], "from low to high"),
    ([-3], "two exponents"),
    ("fast", "two exponents"),
    ([-3, float("nan")], "finite"),
    ([-30, 0], "between"),
])
def test_a_bad_sweep_is_refused_with_a_message(sweep, needle):
    spec = {"model": "mlp", "preset": "lecture3-2d", "model_kw": {}, "train": {"lre_sweep": sweep}}
    with pytest.raises(SpecError, match=needle):
        check_spec(spec)


def test_a_one_step_sweep_is_refused():
    spec = {"model": "mlp", "preset": "lecture3-2d", "model_kw": {}, "train": {"lre_sweep": [-3, 0], "steps": 1}}
    with pytest.raises(SpecError, match="at least 2 steps"):
        check_spec(spec)


def test_smooth_loss_of_a_constant_is_the_constant_with_nan_ends():
    s = smooth_loss(np.full(200, 2.5), window=50)
    assert np.isnan(s[:25]).all() and np.isnan(s[-24:]).all()
    assert np.allclose(s[25:176], 2.5)


def test_suggestion_backs_off_from_the_bottom_of_a_valley():
    lre = np.linspace(-3, 0, 1000)
    loss = 3 + (lre + 0.7) ** 2          # lowest at lre = -0.7
    exponent, lr, bottom = suggest_lr(lre, loss)
    assert bottom == pytest.approx(-0.7, abs=0.01)
    assert exponent == pytest.approx(-1.0) and lr == pytest.approx(0.1)


def test_suggestion_for_a_sweep_that_blew_up_ignores_the_nans():
    lre = np.linspace(-3, 0, 1000)
    loss = 3 + (lre + 1.5) ** 2
    loss[800:] = np.nan                  # diverged: the worker records the non-finite loss and stops
    exponent, _, bottom = suggest_lr(lre, loss)
    assert bottom == pytest.approx(-1.5, abs=0.01) and exponent == pytest.approx(-1.8)


def test_too_short_a_sweep_gives_no_suggestion():
    assert suggest_lr(np.linspace(-3, 0, 60), np.ones(60)) is None
    assert suggest_lr([], []) is None


def test_on_names_txt_the_finder_lands_near_the_lectures_tenth(names_path):
    model, batches, cfg, probe, info, ds = build_job(finder_spec(names_path))
    run = Run(model, batches, cfg, capture=False)
    run.run()
    snap = run.store.snapshot()
    lri = [math.log10(lr) for lr in snap["lr"]]
    assert len(lri) == 1000 and lri[0] == pytest.approx(-3, abs=1e-6) and lri[-1] == pytest.approx(0, abs=1e-6)
    exponent, lr, bottom = suggest_lr(lri, snap["loss"])
    assert -1.5 <= exponent <= -0.5, (exponent, bottom)   # the lecture picks 10**-1
    assert -1.2 <= bottom <= -0.4
    # the loss at the top of the sweep is well above its bottom: the rate is too high there
    assert np.mean(snap["loss"][-50:]) > np.nanmin(smooth_loss(snap["loss"])) + 1


def test_a_finished_run_reports_the_test_split_too(names_path):
    spec = finder_spec(names_path, steps=10, lre_sweep=[])
    model, batches, cfg, probe, info, ds = build_job(spec)
    run = Run(model, batches, cfg, capture=False)
    run.run()
    assert set(run.final) == {"train", "val", "test"}
    assert run.final["test"] == pytest.approx(batches.split_loss(model, "test"))
    assert run.final["test"] != run.final["val"]


def test_running_text_has_no_test_split_to_report():
    batches = TextBatches(lambda split: None, eval_iters=1)
    assert batches.split_loss(model=None, split="test") is None   # GPT's final losses stay train / val
