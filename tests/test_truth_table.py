"""
The diagnosis's truth table: for each lecture scenario, the findings that must appear (with their
severity) and those that must not, at the step where the lecture sees them -- read through
core.runs.findings, the path the CLI's --json takes. Each scenario trains a few hundred to a few
thousand steps, so the table runs in minutes. The README's "Diagnosis" section documents it.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.capture.diagnose import Subject, diagnose, fit_verdict
from core.capture.record import COL
from core.runs.findings import run_findings
from core.runs.spec import build_job
from core.training.loop import Run

BAD = {"warn", "error"}

# (id, model, preset, steps, model_kw, train overrides, must {finding: severities}, must_not {finding: severities})
# must_not "*" = no finding of any severity in BAD other than those in `must`
TABLE = [
    # lecture 4's MLP, judged at initialization (step 0) as the lecture does
    ("raw", "mlp", "raw", 1, {}, {}, {"softmax": {"error"}, "saturation": {"error"}}, {"blowup", "dead"}),
    ("fix-softmax", "mlp", "fix-softmax", 1, {}, {}, {"softmax": {"ok"}, "saturation": {"error"}}, "*"),
    ("fix-tanh", "mlp", "fix-tanh", 1, {}, {}, {"softmax": {"ok"}, "saturation": {"ok"}}, "*"),
    # ...and while they train: the raw init's falling 27 is not a blow-up; Kaiming stays green
    ("raw-trained", "mlp", "raw", 1500, {}, {}, {"saturation": {"error"}}, {"blowup", "dead", "update-ratio"}),
    ("kaiming", "mlp", "kaiming", 3000, {}, {}, {"softmax": {"ok"}, "saturation": {"ok"}, "update-ratio": {"ok"},
                                                 "fit": {"info"}}, "*"),
    ("batchnorm", "mlp", "batchnorm", 1000, {}, {}, {"saturation": {"ok"}, "update-ratio": {"ok"}}, "*"),
    # learning rates on the Kaiming MLP
    ("lr-1e-4", "mlp", "kaiming", 1000, {}, {"lr": 1e-4}, {"update-ratio": {"warn"}}, {"blowup", "saturation", "dead"}),
    ("lr-1", "mlp", "kaiming", 1000, {}, {"lr": 1.0}, {"update-ratio": {"warn"}}, {"blowup", "saturation", "dead"}),
    ("lr-10", "mlp", "kaiming", 1000, {}, {"lr": 10.0}, {"blowup": {"error"}, "dead": {"error"},
                                                          "saturation": {"error"}}, set()),
    ("lr-1e6", "mlp", "kaiming", 300, {}, {"lr": 1e6}, {"blowup": {"error"}, "dead": {"error"},
                                                        "update-ratio": {"error"}}, set()),
    # the deep stack at initialization: gains without BatchNorm...
    ("deep-tanh-0.5", "deep", "deep-tanh", 1, {"gain": 0.5}, {}, {"gradients": {"warn"}, "saturation": {"ok"}}, "*"),
    ("deep-tanh-1", "deep", "deep-tanh", 1, {"gain": 1.0}, {}, {"gradients": {"ok"}, "saturation": {"ok"}}, "*"),
    ("deep-tanh-5/3", "deep", "deep-tanh", 1, {"gain": 5 / 3}, {}, {"gradients": {"ok"}, "saturation": {"ok"}}, "*"),
    ("deep-tanh-3", "deep", "deep-tanh", 1, {"gain": 3.0}, {}, {"saturation": {"warn"}, "gradients": {"ok"}}, "*"),
    # ...with BatchNorm every gain is held (lecture 4: BatchNorm makes the stack robust to the gain)...
    ("deep-bn-0.5", "deep", "deep-bn", 1, {"gain": 0.5}, {}, {"saturation": {"ok"}, "gradients": {"ok"}}, "*"),
    ("deep-bn-1", "deep", "deep-bn", 1, {"gain": 1.0}, {}, {"saturation": {"ok"}, "gradients": {"ok"}}, "*"),
    ("deep-bn-5/3", "deep", "deep-bn", 1, {"gain": 5 / 3}, {}, {"saturation": {"ok"}, "gradients": {"ok"}}, "*"),
    ("deep-bn-3", "deep", "deep-bn", 1, {"gain": 3.0}, {}, {"saturation": {"ok"}, "gradients": {"ok"}}, "*"),
    # ...and without tanh, a linear sandwich: gain 3 multiplies the logits 3^6-fold and the run diverges
    ("deep-linear-1", "deep", "deep-linear", 1, {"gain": 1.0}, {}, {"softmax": {"ok"}}, "*"),
    ("deep-linear-0.5", "deep", "deep-linear", 1, {"gain": 0.5}, {}, {"softmax": {"ok"}}, "*"),
    ("deep-linear-3", "deep", "deep-linear", 5, {"gain": 3.0}, {}, {"softmax": {"error"}, "diverged": {"error"}},
     {"blowup"}),
    # the deep stack trained a little: still healthy with BatchNorm
    ("deep-bn-trained", "deep", "deep-bn", 500, {}, {}, {"saturation": {"ok"}, "gradients": {"ok"},
                                                       "update-ratio": {"ok"}}, "*"),
    # lecture 6 and lecture 7 presets, a few hundred steps
    ("wavenet", "wavenet", "scaled", 200, {}, {"capture_every": 50}, {"softmax": {"ok"}, "saturation": {"ok"},
                                                                     "update-ratio": {"ok"}}, "*"),
    ("gpt-blocks", "gpt", "blocks", 150, {}, {"capture_every": 50}, {"softmax": {"ok"}, "update-ratio": {"ok"}}, "*"),
    ("gpt-small", "gpt", "small", 60, {}, {"capture_every": 20}, {"softmax": {"ok"}}, "*"),
]


def findings_of(path, model, preset, steps, model_kw, train):
    spec = {"model": model, "preset": preset, "model_kw": model_kw, "data": {"kind": "file", "path": str(path)},
            "train": {"steps": steps, "capture_every": 100, **train}}
    model_, batches, cfg, probe, info, _ = build_job(spec)
    run = Run(model_, batches, cfg, probe=probe, meta=info)
    run.run()
    fs = run_findings(run.store, spec, state=run.state, diverged_at=run.diverged_at)
    run.close()
    return {f.id: f for f in fs}


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_truth_table(row, names_path, shakespeare_path):
    name, model, preset, steps, model_kw, train, must, must_not = row
    f = findings_of(shakespeare_path if model == "gpt" else names_path, model, preset, steps, model_kw, train)
    seen = {k: v.severity for k, v in f.items()}
    for key, severities in must.items():
        assert seen.get(key) in severities, f"{name}: {key} should be {severities}, got {seen}"
    if must_not == "*":
        extra = {k: v for k, v in seen.items() if v in BAD and k not in must}
        assert not extra, f"{name}: unexpected findings {extra}"
    else:
        for key in must_not:
            assert seen.get(key) not in BAD, f"{name}: {key} should not be raised, got {seen}"
    # whatever blew up, no finding may tell the learner to raise the learning rate
    if any(k in seen for k in ("blowup", "diverged")) or seen.get("dead") == "error":
        assert not any("Raise the learning rate" in x.fix for x in f.values()), name


def test_a_blown_up_run_is_called_so_with_lower_the_learning_rate(names_path):
    f = findings_of(names_path, "mlp", "kaiming", 300, {}, {"lr": 1e6})
    assert "Lower the learning rate (now 1e+06)" in f["blowup"].fix
    assert f["blowup"].step == 299 and "first rose above" in f["blowup"].evidence
    assert f["dead"].title == "Every unit is dead" and "Lower the learning rate" in f["dead"].fix
    assert "fit" not in f  # a ruined run's equal train and val say nothing about its size


def test_the_deep_stacks_fixes_name_its_own_layers_and_gain(names_path):
    f = findings_of(names_path, "deep", "deep-tanh", 1, {"gain": 3.0}, {})
    fix = f["saturation"].fix
    assert "'0 Linear.weight'" in fix and "now 3.00" in fix and "preset 'deep-bn'" in fix
    assert "W1" not in fix and "kaiming" not in fix
    g = findings_of(names_path, "deep", "deep-tanh", 1, {"gain": 0.5}, {})["gradients"]
    assert "now 0.50" in g.fix and "W1" not in g.fix and "'kaiming'" not in g.fix


def test_the_gpts_findings_name_no_mlp_layers_or_presets(shakespeare_path):
    f = findings_of(shakespeare_path, "gpt", "blocks", 1, {}, {"lr": 3.0})
    text = " ".join(x.text + x.fix for x in f.values())
    assert "W1" not in text and "preset 'kaiming'" not in text and "preset 'batchnorm'" not in text


def test_a_fix_never_recommends_the_preset_already_running():
    from core.capture.diagnose import _tanh_fix
    for preset in ("kaiming", "fix-tanh"):
        fix = _tanh_fix(Subject(model="mlp", preset=preset), "h", "W1")
        assert f"already scaled (preset '{preset}')" in fix and "preset 'batchnorm'" in fix
        assert fix.count(f"'{preset}'") == 1
    raw = _tanh_fix(Subject(model="mlp", preset="raw"), "h", "W1")
    assert "preset 'kaiming'" in raw and "preset 'batchnorm'" in raw
    bn = _tanh_fix(Subject(model="mlp", preset="batchnorm", batchnorm=True, lr=0.1), "h", "W1")
    assert bn.startswith("Lower the learning rate (now 0.1)") and "'batchnorm'" not in bn


def test_saturation_reads_the_median_of_recent_captures_so_one_noisy_capture_does_not_flip_it(names_path):
    spec = {"model": "mlp", "preset": "kaiming", "data": {"kind": "file", "path": str(names_path)},
            "train": {"steps": 600, "capture_every": 100}}
    model_, batches, cfg, probe, info, _ = build_job(spec)
    run = Run(model_, batches, cfg, probe=probe, meta=info)
    run.run()
    caps = run.store.captures
    run.close()
    noisy = caps[-1]
    i = [k for k, (g, n) in enumerate(noisy.keys) if g == "act" and n == "h"][0]
    noisy.stats = noisy.stats.copy()
    noisy.stats[i, COL["sat"]] = 0.40  # one capture at 40% saturated, the others near 20%
    f = {x.id: x for x in diagnose(Subject.of(info, spec), capture=noisy, recent=caps[-5:])}
    assert f["saturation"].severity == "ok"
    alone = {x.id: x for x in diagnose(Subject.of(info, spec), capture=noisy, recent=[noisy])}
    assert alone["saturation"].severity == "warn"


def test_update_ratios_after_the_decay_are_not_called_too_low(names_path):
    f = findings_of(names_path, "mlp", "kaiming", 600, {}, {"lr": 1e-4, "lr_decay_step": 300, "lr_final": 1e-5})
    assert f["update-ratio"].severity == "info" and "schedule lowered" in f["update-ratio"].evidence


@pytest.mark.parametrize("train,val,verdict", [(2.10, 2.11, "Underfitting"), (1.50, 2.20, "Overfitting"),
                                               (2.30, 2.00, "Val is below train")])
def test_fit_verdict_reads_train_against_val_as_lecture_3_does(train, val, verdict):
    (f,) = fit_verdict(Subject(model="mlp", kwargs={"n_hidden": 200, "n_embd": 10}), [(1000, train, val)])
    assert f.title.startswith(verdict) and f.step == 1000
    if verdict == "Underfitting":
        assert "n_hidden (now 200)" in f.fix


def test_fit_verdict_needs_both_losses_and_a_trained_model():
    assert fit_verdict(Subject(), [(1000, 2.0, None)]) == []
    assert fit_verdict(Subject(), []) == []
    assert fit_verdict(Subject(vocab_size=27), [(1, 3.28, 3.28)]) == []      # one step: the init's losses
    assert fit_verdict(Subject(vocab_size=27), [(5000, 3.20, 3.21)]) == []   # hardly below -ln(1/27) = 3.30


def test_the_cli_json_lists_the_findings_the_page_shows(names_path):
    p = subprocess.run([sys.executable, "-m", "core", "train", "--model", "mlp", "--steps", "300", "--lr", "1e6",
                        "--data", str(names_path), "--json"], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    by_id = {f["id"]: f for f in res["findings"]}
    assert set(by_id["blowup"]) >= {"id", "severity", "step", "text", "fix"}
    assert by_id["blowup"]["severity"] == "error" and by_id["dead"]["severity"] == "error"
    assert by_id["blowup"]["text"].startswith("The loss blew up:") and "Lower the learning rate" in by_id["blowup"]["fix"]
    assert {f["severity"] for f in res["findings"]} <= {"ok", "info", "warn", "error"}
    assert "error: The loss blew up" in p.stderr  # the plain-text lines, on stderr beside --json
