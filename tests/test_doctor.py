"""
The model doctor (core.doctor). Oracles: the planted bugs (core.doctor.bugs) -- each must fail its own
check while the healthy model of the same preset passes it; hand-made batches whose loss floor is known
(ln 2); the learner's own state, which must come back bit for bit.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ROOT

from core.doctor import CHECKS, DoctorError, examine
from core.doctor.bugs import BUGS
from core.doctor.checks import batch_floor
from core.doctor.cli import doctor
from core.models import layers as L
from core.runs.db import RunDB
from core.runs.spec import build_job
from core.training.loop import Run
from core.watch import watch

# -----------------------------------------------------------------------------
# helpers: a lecture model (healthy or planted) and a batch, as the CLI builds them


def job(model, preset=None, bug=None, steps=0, data_path=None):
    spec = dict(model=model, preset=preset, bug=bug, train=dict(steps=steps, capture_every=0, eval_iters=5),
                data={"kind": "file", "path": str(data_path)} if data_path else {"kind": "ssa"})
    net, batches, cfg, _, info, ds = build_job(spec)
    g = torch.Generator().manual_seed(0)
    if model == "gpt":
        X, Y = ds.get_batch("train", cfg.batch_size, generator=g)
    else:
        Xtr, Ytr = batches.splits["train"]
        ix = torch.randint(0, len(Xtr), (32,), generator=g)
        X, Y = Xtr[ix], Ytr[ix]
    return net, batches, cfg, X, Y


def trained(model, preset, steps):
    net, batches, cfg, X, Y = job(model, preset, steps=steps)
    run = Run(net, batches, cfg, capture=False)
    while not run.done:
        run.advance(500)
    run.close()
    return net, X, Y, run


def verdicts(report):
    assert [c["id"] for c in report.checks] == list(CHECKS)
    assert all(set(c) >= {"id", "verdict", "evidence", "fix"} for c in report.checks)
    return report.verdicts


# -----------------------------------------------------------------------------
# every planted bug fails its own check; the healthy model of its preset passes it


@pytest.mark.parametrize("bug", [b for b in BUGS if b != "no-zero-grad"])
def test_each_planted_bug_fails_its_check_and_the_healthy_model_passes_it(bug):
    b = BUGS[bug]
    sick, _, _, X, Y = job(b.model, b.preset, bug)
    healthy, _, _, _, _ = job(b.model, b.preset)
    found = examine(sick, X, Y)
    assert verdicts(found)[b.check] == "fail", found.check(b.check)
    assert verdicts(examine(healthy, X, Y))[b.check] == "pass"
    c = found.check(b.check)
    assert c["evidence"] and c["fix"]
    if bug == "view-permute":  # the check names the layer where examples first mix
        assert c["data"]["layer"] == "1 FlattenConsecutive" and "'1 FlattenConsecutive'" in c["fix"]
    if bug == "bias-before-bn":  # the model's own names: b1 before its 'batchnorm'
        assert c["data"]["bias"] == "b1" and c["data"]["max_grad"] < 1e-6 * c["data"]["scale"]
        assert "Drop b1" in c["fix"]
    if bug == "no-overfit":  # un-fittable: far above the floor, not merely slow
        assert min(c["data"]["curve"]) > c["data"]["floor"] + 1.0


def test_no_zero_grad_is_seen_in_the_loop_and_named_with_its_fix():
    sick = doctor("mlp", bug="no-zero-grad", steps=60, say=lambda *a: None)
    healthy = doctor("mlp", steps=60, say=lambda *a: None)
    c = next(c for c in sick["checks"] if c["id"] == "zero-grad")
    assert c["verdict"] == "fail" and "accumulate" in c["evidence"] and "p.grad = None" in c["fix"]
    assert next(c for c in healthy["checks"] if c["id"] == "zero-grad")["verdict"] == "pass"
    assert "zero-grad" in sick["table"] and "FAIL" in sick["table"]


def test_eval_mode_is_seen_when_the_loop_evaluates_in_training_mode():
    """The loop's evaluation (Run.finish: split losses under no_grad) meets BatchNorm still training."""
    sick = doctor("mlp", bug="eval-mode", steps=20, say=lambda *a: None)
    c = next(c for c in sick["checks"] if c["id"] == "train-eval-mode")
    assert c["verdict"] == "fail" and "no_grad" in c["evidence"] and "'batchnorm'" in c["evidence"]
    # ... and batch independence points at it instead of blaming a view()
    assert next(c for c in sick["checks"] if c["id"] == "batch-independence")["verdict"] == "warn"


# -----------------------------------------------------------------------------
# the lectures' final architectures: no fail at initialization and after a short training


@pytest.mark.parametrize("model, preset, steps", [("mlp", "kaiming", 2000), ("mlp", "batchnorm", 1000),
                                                  ("deep", "deep-bn", 1000), ("wavenet", "scaled", 1000),
                                                  ("gpt", "small", 300)])
def test_no_fail_on_the_lecture_models_at_init_and_after_a_short_training(model, preset, steps):
    net, X, Y, _ = trained(model, preset, 0)
    at_init = verdicts(examine(net, X, Y))
    net, X, Y, run = trained(model, preset, steps)
    evals = [(run.step, run.final["train"], run.final["val"])]
    after = verdicts(examine(net, X, Y, evals=evals))
    for v in (at_init, after):
        assert "fail" not in v.values() and "warn" not in v.values(), v
        assert v["overfit-one-batch"] == v["batch-independence"] == v["softmax-into-loss"] == "pass"
        assert v["zero-grad"] == "skip"  # the loop was not watched
    assert at_init["fit"] == "skip" and after["fit"] == ("pass" if steps >= 500 else "skip")


# -----------------------------------------------------------------------------
# the checks' own arithmetic


def test_batch_floor_of_identical_inputs_with_different_targets_is_their_entropy():
    X = torch.tensor([[1, 2, 3]] * 4 + [[4, 5, 6]] * 2)
    Y = torch.tensor([7, 7, 8, 8, 9, 9])  # the first input: 7 or 8 half the time (ln 2); the second always 9
    floor, clashes = batch_floor(X, Y)
    assert floor == pytest.approx(4 / 6 * math.log(2)) and clashes == 1
    assert batch_floor(torch.arange(6).view(6, 1), Y) == (0.0, 0)  # every input distinct: any model can reach 0


def test_batch_floor_of_a_language_model_groups_equal_prefixes():
    # two sequences that share the first character but not the second: position 0 cannot be told apart
    X, Y = torch.tensor([[1, 2], [1, 3]]), torch.tensor([[2, 5], [3, 6]])
    floor, _ = batch_floor(X, Y)
    assert floor == pytest.approx(2 * math.log(2) / 4)


def test_examine_leaves_the_learners_model_and_rng_as_they_were():
    net, _, _, X, Y = job("mlp", "batchnorm", "no-overfit")  # BatchNorm statistics and a generator of its own
    net(X, Y)  # a forward of the learner's: every layer has its .out
    before = [p.detach().clone() for p in net.parameters()]
    outs = [layer.out for _, layer in net.named_layers()]
    stats = (net.bn.bnmean_running.clone(), net.bn.bnstd_running.clone())
    shuffle = net.shuffle.get_state()
    rng = torch.get_rng_state()
    examine(net, X, Y, steps=50)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(p.grad is None for p in net.parameters())
    assert [layer.out for _, layer in net.named_layers()] == outs  # the same tensors, not copies
    assert torch.equal(stats[0], net.bn.bnmean_running) and torch.equal(stats[1], net.bn.bnstd_running)
    assert torch.equal(shuffle, net.shuffle.get_state()) and torch.equal(rng, torch.get_rng_state())
    assert net.bn.training  # and its mode


# -----------------------------------------------------------------------------
# any nn.Module, and a lecture-style list of layers


def classifier(bias=True, softmax=False):
    layers = [nn.Linear(12, 64, bias=bias), nn.BatchNorm1d(64), nn.Tanh(), nn.Linear(64, 5)]
    return nn.Sequential(*layers, *([nn.Softmax(dim=1)] if softmax else []))


def blobs(n=64):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 12, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_any_nn_module_healthy_and_with_its_mistakes():
    torch.manual_seed(0)
    X, Y = blobs()
    v = verdicts(examine(classifier(bias=False), X, Y))
    assert v["bias-before-batchnorm"] == "pass" and "fail" not in v.values(), v
    v = verdicts(examine(classifier(bias=True), X, Y))
    assert v["bias-before-batchnorm"] == "fail"
    found = examine(classifier(bias=False, softmax=True), X, Y)
    assert found.verdicts["softmax-into-loss"] == "fail" and found.verdicts["overfit-one-batch"] == "fail"
    # a loss of the learner's own, fed probabilities
    found = examine(classifier(bias=False), X, Y, loss_fn=lambda logits, y: F.nll_loss(F.softmax(logits, 1), y))
    assert found.verdicts["softmax-into-loss"] == "fail" and "nll_loss" in found.check("softmax-into-loss")["title"]


class Transposed(nn.Module):
    """A learner's model that 'moves the batch last' with view: examples mix in 'mix'."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(12, 16)
        self.mix = nn.Flatten(0)  # (B, 16) -> (B*16,), then view back the wrong way round
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        flat = self.mix(h.t().contiguous())  # (16, B) in memory
        return self.out(flat.view(x.shape[0], 16))  # meant .view(16, B).t()


def test_batch_independence_names_the_layer_where_a_module_mixes_examples():
    X, Y = blobs()
    c = examine(Transposed(), X, Y, steps=30).check("batch-independence")
    assert c["verdict"] == "fail" and c["data"]["layer"] == "out", c  # 'mix' only re-labels: 'out' sees it first


def test_a_lecture_list_of_layers_with_a_view_for_a_permute():
    from core.doctor.variants import FlattenConsecutive as Wrong
    g = torch.Generator().manual_seed(42)

    def layers(flatten):
        ls = [L.Embedding(27, 10, generator=g), flatten(2), L.Linear(20, 32, bias=False, generator=g),
              L.BatchNorm1d(32), L.Tanh(), L.FlattenConsecutive(2), L.Linear(64, 27, generator=g)]
        for p in (p for layer in ls for p in layer.parameters()):
            p.requires_grad = True
        return ls

    X = torch.randint(0, 27, (32, 4), generator=g)
    Y = torch.randint(0, 27, (32,), generator=g)
    healthy = examine(layers(L.FlattenConsecutive), X, Y)
    assert healthy.verdicts["batch-independence"] == "pass" and "fail" not in healthy.verdicts.values()
    sick = examine(layers(Wrong), X, Y)
    assert sick.check("batch-independence")["data"]["layer"] == "1 FlattenConsecutive"


# -----------------------------------------------------------------------------
# watch(): what the learner's loop shows


def learners_loop(steps, zero=True, sample_in_train_mode=False, every=10, train_in_eval=False):
    """Lecture 4's loop over a BatchNorm MLP of core.models.layers, watched; samples under no_grad."""
    g = torch.Generator().manual_seed(1)
    C = torch.randn(27, 10, generator=g)
    layers = [L.Linear(30, 64, bias=False, generator=g), L.BatchNorm1d(64), L.Tanh(), L.Linear(64, 27, generator=g)]
    params = [C] + [p for layer in layers for p in layer.parameters()]
    for p in params:
        p.requires_grad = True
    Xtr, Ytr = torch.randint(0, 27, (500, 3), generator=g), torch.randint(0, 27, (500,), generator=g)
    lab = watch(layers, parameters=params, every=every)
    lossi = []
    for i in range(steps):
        for layer in layers:
            layer.training = not train_in_eval  # (the mistake: left in eval mode after an evaluation)
        ix = torch.randint(0, 500, (32,), generator=g)
        x = C[Xtr[ix]].view(32, -1)
        for layer in layers:
            x = layer(x)
        loss = F.cross_entropy(x, Ytr[ix])
        if zero:
            for p in params:
                p.grad = None
        loss.backward()
        for p in params:
            p.data += -0.05 * p.grad
        lossi.append(loss.item())
        lab.step(loss)
        if i % 25 == 0:  # sample one example, as lecture 4 samples names
            with torch.no_grad():
                for layer in layers:
                    layer.training = sample_in_train_mode  # the mistake: left in training mode
                x = C[Xtr[:1]].view(1, -1)
                for layer in layers:
                    x = layer(x)
                for layer in layers:
                    layer.training = True
    X = C[Xtr[:32]].view(32, -1).detach()
    return lab, layers, X, Ytr[:32], lossi


@pytest.mark.filterwarnings("ignore:var\(\)")  # a batch of one in training mode: the mistake itself
def test_lab_doctor_sees_the_loop_zero_grad_and_train_mode_sampling():
    lab, _, X, Y, healthy_losses = learners_loop(60)
    v = verdicts(lab.doctor(X, Y))
    lab.close()
    kept = RunDB().get_run(lab.run_id)["meta"]["doctor"]  # the run keeps it, for the dashboard
    assert kept["step"] == 60 and {c["id"]: c["verdict"] for c in kept["checks"]} == v
    assert v["zero-grad"] == "pass" and v["train-eval-mode"] == "pass" and "fail" not in v.values(), v
    lab, _, X, Y, _ = learners_loop(60, zero=False)
    r = lab.doctor(X, Y)
    lab.close()
    assert r.verdicts["zero-grad"] == "fail" and "step 10" in r.check("zero-grad")["evidence"]
    lab, _, X, Y, _ = learners_loop(60, sample_in_train_mode=True)
    r = lab.doctor(X, Y)
    lab.close()
    assert r.verdicts["train-eval-mode"] == "fail" and "1 BatchNorm1d" in r.check("train-eval-mode")["evidence"]
    lab, _, X, Y, _ = learners_loop(30, train_in_eval=True)
    r = lab.doctor(X, Y)
    lab.close()
    assert r.verdicts["train-eval-mode"] == "fail" and r.check("train-eval-mode")["title"] == "Trained in eval mode"


@pytest.mark.usefixtures("app_data_dir")
def test_a_watched_runs_report_shows_on_the_activations_page():
    from apptest import page
    lab, _, X, Y, _ = learners_loop(30, zero=False)
    lab.doctor(X, Y)
    lab.close()
    at = page("activations", run=lab.run_id)
    assert any(e.label.startswith("Model doctor: lab.doctor(X, Y) at step 30") for e in at.expander)
    assert any("Gradients are never reset" in e.value for e in at.error)


def test_watching_for_the_doctor_changes_no_loss():
    *_, watched = learners_loop(40, every=1)  # hooks and the loss-input mode on its first steps
    *_, rare = learners_loop(40, every=1000)
    assert watched == rare


# -----------------------------------------------------------------------------
# bad input: one clear message each


class NotDifferentiable(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(12, 5)

    def forward(self, x):
        with torch.no_grad():
            return self.lin(x)


@pytest.mark.parametrize("model, batch, needle", [
    (nn.Sequential(nn.Tanh()), None, "has no parameters"),
    ([L.Tanh()], None, "has no parameters"),
    (classifier(), (1, 1), "a batch of 1 example"),
    (NotDifferentiable(), None, "does not depend on its parameters"),
    (classifier(), "mismatch", "same first dimension"),
    (42, None, "not a int"),
    ([], None, "empty"),
    (nn.Linear(3, 5), None, "failed on this batch"),
])
def test_bad_input_gets_one_clear_message(model, batch, needle):
    X, Y = blobs()
    if batch == (1, 1):
        X, Y = X[:1], Y[:1]
    elif batch == "mismatch":
        Y = Y[:10]
    with pytest.raises(DoctorError, match=needle):
        examine(model, X, Y)
    assert issubclass(DoctorError, ValueError)


# -----------------------------------------------------------------------------
# the CLI


def cli(*argv):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "core", "doctor", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_json_names_the_mistake_with_its_evidence_and_fix():
    p = cli("--model", "mlp", "--bug", "no-zero-grad", "--steps", "100", "--json")
    assert p.returncode == 1, p.stderr  # a check failed
    out = json.loads(p.stdout.strip().splitlines()[-1])
    checks = {c["id"]: c for c in out["checks"]}
    assert list(checks) == list(CHECKS)
    assert checks["zero-grad"]["verdict"] == "fail" and checks["zero-grad"]["fix"]
    assert out["bug"] == "no-zero-grad" and out["preset"] == "kaiming"


def test_cli_table_for_a_healthy_model():
    p = cli("--model", "mlp", "--steps", "600")
    assert p.returncode == 0, p.stderr
    assert "zero-grad                PASS" in p.stdout and "FAIL" not in p.stdout


@pytest.mark.parametrize("argv, needle", [
    (["--model", "gpt", "--bug", "no-zero-grad"], "planted in --model mlp"),
    (["--model", "mlp", "--preset", "kaiming", "--bug", "eval-mode"], "needs BatchNorm"),
    (["--model", "mlp", "--bug", "nope"], "invalid choice"),
    (["--model", "mlp", "--steps", "-1"], "--steps"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, needle):
    p = cli(*argv)
    assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_lab_doctor_mid_run_on_an_nn_module_changes_nothing_of_the_run():
    """Asked between two steps, the doctor trains copies: the learner's AdamW run goes on bit for bit, and the
    watcher's hooks still capture afterwards (the copies carried none of them)."""
    def run(doctor_at=None):
        torch.manual_seed(0)
        model = classifier(bias=False)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        X, Y = blobs(256)
        lab = watch(model, every=5)
        losses, report = [], None
        for i in range(20):
            ix = torch.randint(0, 256, (32,))
            loss = F.cross_entropy(model(X[ix]), Y[ix])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            lab.step(loss)
            if i == doctor_at:
                report = lab.doctor(X[:32], Y[:32])
        lab.close()
        caps = RunDB().captures_after(lab.run_id, -1)
        return losses, report, [c.step for c in caps]

    plain, _, steps = run()
    asked, report, asked_steps = run(doctor_at=9)
    assert asked == plain and asked_steps == steps == [0, 5, 10, 15]
    assert report.verdicts["zero-grad"] == "pass" and "fail" not in report.verdicts.values(), report.verdicts
