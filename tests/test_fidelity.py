"""
The lectures' numbers on makemore's names.txt (../shared/reference/LECTURES.md), reproduced
through the same path a user takes: the CLI's train(), in this process.
Runs marked `long` are the lectures' full 200,000-step trainings; CI runs them all.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import make_parser, sample, train
from core.models.build import build_model
from core.models.presets import get_preset, train_config
from core.training.loop import Run, TensorBatches
from data import WordsDataset, bigrams, load_words


def cli(*argv):
    lines = []
    args = make_parser().parse_args(list(argv))
    res = (train if args.cmd == "train" else sample)(args, out=lines.append)
    return res, lines


# --- lecture 2: bigrams -----------------------------------------------------------------

def test_bigram_nll_is_the_lectures_exact_digits(names_path):
    res, lines = cli("train", "--model", "bigram", "--data", str(names_path))
    assert res["n"] == 228_146
    assert res["log_likelihood"] == -559951.5625
    assert res["train_loss"] == 2.4543561935424805
    assert "228,146 bigrams; average negative log likelihood 2.4544" in lines


def test_lecture_sampler_reproduces_the_printed_samples(names_path):
    words, _ = cli("sample", "--model", "bigram", "--data", str(names_path), "-n", "5", "--sampler", "lecture")
    assert words == ["mor.", "axx.", "minaymoryles.", "kondlaisah.", "anchshizarie."]


def test_neural_bigram_after_100_steps(names_path):
    ds = WordsDataset(load_words(names_path), 1)
    preset = get_preset("bigram-nn")
    cfg = train_config(preset, eval_every=0)
    model, g = build_model(preset, 27, cfg.seed)
    xs, ys = bigrams(ds.words, ds.stoi)
    run = Run(model, TensorBatches({"train": (xs, ys)}, 0, g), cfg)
    run.run()
    steps, loss = run.store.snapshot()["steps"], run.store.snapshot()["loss"]
    assert len(steps) == 100 and steps[-1] == 99
    assert abs(loss[0] - 3.7686190605163574) < 1e-4       # the lecture's first printed loss
    assert loss[-1] == pytest.approx(2.4901304244995117, abs=1e-6)


# --- lecture 4: the MLP scenarios, step 0 --------------------------------------------

@pytest.mark.parametrize("preset,loss,tol", [
    ("raw", 27.881732940673828, 1e-5),
    ("fix-softmax", 3.32205867767334, 1e-5),
    ("fix-tanh", 3.3134593963623047, 1e-6),
    ("kaiming", 3.3179006576538086, 1e-6),
    ("batchnorm", 3.3238625526428223, 1e-6),
])
def test_step_0_loss_of_each_scenario(names_path, preset, loss, tol):
    res, _ = cli("train", "--model", "mlp", "--preset", preset, "--data", str(names_path), "--steps", "1")
    assert abs(res["init_loss"] - loss) < tol


def test_fresh_model_loss_is_near_uniform_guess(names_path):
    res, _ = cli("train", "--model", "mlp", "--preset", "kaiming", "--data", str(names_path), "--steps", "0")
    assert abs(res["init_loss"] - math.log(27)) < 0.05


# --- lecture 4: the deep stack after 1,001 steps ----------------------------------------

def test_deep_stack_1001_steps_matches_the_lectures_table(names_path):
    res, _ = cli("train", "--model", "deep", "--preset", "deep-bn", "--data", str(names_path),
                 "--steps", "1001", "--capture-every", "1000")
    assert res["params"] == 47_024
    assert res["init_loss"] == pytest.approx(3.2870309352874756, abs=1e-6)
    assert res["train_loss"] == pytest.approx(2.4002976417541504, abs=1e-6)
    assert res["val_loss"] == pytest.approx(2.3982467651367188, abs=1e-6)
    assert res["capture_step"] == 1000
    tanh = [a for a in res["activations"] if a["kind"] == "tanh"]
    assert len(tanh) == 5
    want = [(0.63, 2.78), (0.64, 2.56), (0.65, 2.25), (0.65, 1.69), (0.65, 1.88)]
    for a, (std, sat) in zip(tanh, want):
        assert abs(a["mean"]) < 0.005
        assert round(a["std"], 2) == std
        assert round(a["saturated_pct"], 2) == sat
    ratios = [w["grad_data_ratio"] for w in res["weights"]]
    assert round(ratios[0], 4) == 0.0080            # the embedding C
    assert 0.11 < ratios[-1] < 0.125                 # the last layer


# --- lecture 4: the full 200,000-step runs ------------------------------------------

@pytest.mark.parametrize("preset,train_loss,val_loss,tol", [
    # kaiming runs in CI (`long`); the others are `slow` (python -m pytest -m slow), to keep CI short.
    # kaiming: the same digits as the plain notebook loop here; LECTURES.md's 2.0376641750 /
    # 2.1069896221 differ by < 1e-6 (torch CPU summation order)
    pytest.param("kaiming", 2.0376641750335693, 2.106989622116089, 1e-6, marks=pytest.mark.long),
    pytest.param("fix-tanh", 2.0355966091156006, 2.10267830, 1e-6, marks=pytest.mark.slow),
    pytest.param("batchnorm", 2.0674147606, 2.1056838036, 1e-6, marks=pytest.mark.slow),
    # raw: the 27x first loss makes early steps chaotic, so float summation order moves the end by
    # ~1e-3 (LECTURES.md measured 2.1276 / 2.1702, the lecture printed 2.1245 / 2.1682; here 2.1245 / 2.1643)
    pytest.param("raw", 2.1245, 2.1682, 1e-2, marks=pytest.mark.slow),
    pytest.param("fix-softmax", 2.0696, 2.1311, 1e-4, marks=pytest.mark.slow),
])
def test_mlp_200k_final_losses(names_path, preset, train_loss, val_loss, tol):
    res, _ = cli("train", "--model", "mlp", "--preset", preset, "--data", str(names_path), "--capture-every", "0")
    assert res["steps"] == 200_000 and res["state"] == "finished"
    assert abs(res["train_loss"] - train_loss) < tol
    assert abs(res["val_loss"] - val_loss) < tol


# --- lecture 6: WaveNet --------------------------------------------------------------

@pytest.mark.slow
def test_wavenet_scaled_200k_val_loss(names_path):
    # torch's own kernels come in AVX2 and AVX-512 versions, which round differently; over 200,000 steps
    # that moves this val loss by ~1e-6: on an AVX-512 machine (AMD EPYC, 2026-12-02) it ends at
    # 1.993652582 (1.07e-6 from LECTURES.md), with the AVX2 kernels at 1.993651390 (1.2e-7). The CLI
    # runs in a process of its own with the AVX2 kernels (ATEN_CPU_CAPABILITY is read when torch loads).
    done = subprocess.run([sys.executable, "-m", "core", "train", "--model", "wavenet", "--preset", "scaled",
                           "--data", str(names_path), "--capture-every", "0", "--json"],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                          env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}, check=True)
    res = json.loads(done.stdout.strip().splitlines()[-1])
    assert res["params"] == 76_579
    assert abs(res["train_loss"] - 1.7690) < 1e-4
    assert res["val_loss"] == pytest.approx(1.9936515092849731, abs=1e-6)
