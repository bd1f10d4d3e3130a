"""
Lecture 5 (backprop ninja): every manual gradient against autograd, the oracle, on
makemore's names.txt with the lecture's seed -- bit-exact where LECTURES.md says
exact (logprobs down to b2), within 1e-8 elsewhere (hpreact down to C) -- and
training with manual gradients only against training with loss.backward().
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.models.build import build_model
from core.models.ninja import (
    BN_STEP,
    CE_STEP,
    CMP_ORDER,
    INTERMEDIATES,
    PARAMS,
    STEPS,
    Ninja,
    batchnorm_backward,
    chunked_forward,
    cmp,
    cross_entropy_backward,
    embedding_backward,
    lecture_batch,
    run_exercises,
)
from core.models.presets import get_preset, train_config
from core.runs.spec import SpecError, check_spec
from core.training.loop import Run, TensorBatches
from data import WordsDataset

SEED = 2147483647
EXACT = CMP_ORDER[:CMP_ORDER.index("b2") + 1]        # logprobs ... b2
APPROX = CMP_ORDER[CMP_ORDER.index("hpreact"):]      # hpreact ... C


@pytest.fixture(scope="module")
def names_ds(names_words):
    return WordsDataset(names_words, 3)


@pytest.fixture(scope="module")
def ex(names_ds):
    return run_exercises(names_ds.Xtr, names_ds.Ytr, names_ds.vocab_size, SEED)


def test_names_txt_split_is_the_lectures(names_ds):
    assert (len(names_ds.Ytr), len(names_ds.Ydev), len(names_ds.Yte)) == (182_625, 22_655, 22_866)


def test_parameter_count_is_4137(ex):
    assert ex.net.num_params() == 4137
    assert [n for n, _ in ex.net.named_parameters()] == PARAMS


def test_parameters_drawn_from_g_in_the_lectures_order_and_scales():
    g = torch.Generator().manual_seed(SEED)
    C = torch.randn((27, 10), generator=g)
    W1 = torch.randn((30, 64), generator=g) * (5 / 3) / (30**0.5)
    b1 = torch.randn(64, generator=g) * 0.1
    W2 = torch.randn((64, 27), generator=g) * 0.1
    b2 = torch.randn(27, generator=g) * 0.1
    bngain = torch.randn((1, 64), generator=g) * 0.1 + 1.0
    bnbias = torch.randn((1, 64), generator=g) * 0.1
    ix = torch.randint(0, 1000, (32,), generator=g)  # the batch comes next from the same stream
    net = Ninja(27, generator=(g2 := torch.Generator().manual_seed(SEED)))
    for mine, ref in zip(net.parameters(), [C, W1, b1, W2, b2, bngain, bnbias]):
        assert torch.equal(mine.detach(), ref)
    assert torch.equal(torch.randint(0, 1000, (32,), generator=g2), ix)


def test_first_loss_is_near_the_uniform_guess_and_both_forwards_agree(ex):
    # the chunked forward (exercise 1) and F.cross_entropy (exercise 2) give the same loss
    assert abs(ex.loss - ex.loss_fast) < 1e-6
    assert 3.0 < ex.loss < 4.0
    _, loss = ex.net(ex.Xb, ex.Yb)  # exercise 4's forward, the model's own
    assert abs(loss.item() - ex.loss) < 1e-6


def test_every_intermediate_is_kept_by_its_lecture_name(ex):
    assert set(INTERMEDIATES) <= set(ex.t)
    assert ex.t["emb"].shape == (32, 3, 10) and ex.t["embcat"].shape == (32, 30)
    assert ex.t["hprebn"].shape == ex.t["hpreact"].shape == ex.t["h"].shape == (32, 64)
    assert ex.t["bnvar_inv"].shape == (1, 64)
    assert ex.t["logits"].shape == ex.t["probs"].shape == (32, 27)
    assert ex.t["counts_sum_inv"].shape == (32, 1)


@pytest.mark.parametrize("name", EXACT)
def test_manual_grad_is_bit_exact_from_logprobs_down_to_b2(ex, name):
    c = next(c for c in ex.checks if c.name == name)
    assert c.exact and c.approx and c.maxdiff == 0.0, c


@pytest.mark.parametrize("name", APPROX)
def test_manual_grad_is_approximate_below_1e_8_from_hpreact_down_to_C(ex, name):
    c = next(c for c in ex.checks if c.name == name)
    assert c.approx and c.maxdiff < 1e-8, c
    # honest about the last bits: on current torch these are not bit-exact (tanh's backward kernel rounds
    # differently from (1 - h**2) * dh, and everything below inherits it)
    assert not c.exact, c


def test_the_first_inexact_bits_come_from_torchs_tanh_backward(ex):
    # the page's explanation: with torch's own tanh backward kernel in place of (1.0 - h**2) * dh,
    # dhpreact and the next three gradients become bit-exact
    h, dh = ex.t["h"].detach(), ex.d["h"]
    dhpreact = torch.ops.aten.tanh_backward(dh, h)
    assert torch.equal(dhpreact, ex.t["hpreact"].grad)
    assert not torch.equal((1.0 - h**2) * dh, ex.t["hpreact"].grad)
    bnraw, bngain = ex.t["bnraw"].detach(), ex.net.bngain.detach()
    assert torch.equal((bnraw * dhpreact).sum(0, keepdim=True), ex.net.bngain.grad)
    assert torch.equal(dhpreact.sum(0, keepdim=True), ex.net.bnbias.grad)
    assert torch.equal(bngain * dhpreact, ex.t["bnraw"].grad)


def test_the_table_is_in_the_lectures_cmp_order_with_shapes(ex):
    assert [c.name for c in ex.checks] == CMP_ORDER
    shapes = {c.name: c.shape for c in ex.checks}
    assert shapes["C"] == (27, 10) and shapes["W1"] == (30, 64) and shapes["bngain"] == (1, 64)


def test_grads_that_cannot_change_the_loss_are_about_zero(ex):
    # the max is subtracted only for stability, and b1 is undone by BatchNorm's mean
    assert ex.d["logit_maxes"].abs().max() < 1e-8
    assert ex.d["b1"].abs().max() < 1e-8
    assert ex.d["logits"].abs().max() > 1e-3  # ... unlike a gradient that matters


def test_closed_form_cross_entropy_backward(ex):
    assert ex.ce_check.approx and ex.ce_check.maxdiff < 1e-8
    # each row: the pulls down on the wrong characters balance the push up on the right one
    assert ex.dlogits.sum(1).abs().max() < 1e-8
    assert (ex.dlogits[range(32), ex.Yb] < 0).all()


def test_closed_form_batchnorm_backward(ex):
    assert ex.hpreact_fast_diff < 1e-5  # the one-line forward is the chunked one
    assert ex.bn_check.approx and ex.bn_check.maxdiff < 1e-8


def test_closed_forms_against_autograd_on_their_own():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn((16, 27), generator=g, requires_grad=True)
    Y = torch.randint(0, 27, (16,), generator=g)
    F.cross_entropy(logits, Y).backward()
    torch.testing.assert_close(cross_entropy_backward(logits.detach(), Y), logits.grad)

    hprebn = torch.randn((16, 8), generator=g, requires_grad=True) * 3 + 1
    hprebn.retain_grad()
    bngain = torch.randn((1, 8), generator=g) + 1
    bnvar_inv = (hprebn.var(0, keepdim=True) + 1e-5)**-0.5
    bnraw = (hprebn - hprebn.mean(0, keepdim=True)) * bnvar_inv
    hpreact = bngain * bnraw
    dhpreact = torch.randn((16, 8), generator=g)
    hpreact.backward(dhpreact)
    dhprebn, dbngain, _ = batchnorm_backward(dhpreact, bngain, bnvar_inv.detach(), bnraw.detach())
    torch.testing.assert_close(dhprebn, hprebn.grad)
    torch.testing.assert_close(dbngain, (bnraw * dhpreact).sum(0, keepdim=True).detach())


def test_embedding_backward_with_repeated_indices_adds_up():
    C = torch.zeros((5, 2))
    Xb = torch.tensor([[1, 1], [1, 4]])
    demb = torch.ones((2, 2, 2))
    dC = embedding_backward(Xb, demb, C)
    assert dC[1].tolist() == [3.0, 3.0] and dC[4].tolist() == [1.0, 1.0] and dC[0].tolist() == [0.0, 0.0]


def test_cmp_detects_a_wrong_gradient_and_refuses_a_missing_one():
    a = torch.ones(3)
    c = cmp("x", a, a + torch.tensor([0.0, 0.0, 1e-3]))
    assert not c.exact and not c.approx and abs(c.maxdiff - 1e-3) < 1e-6
    with pytest.raises(ValueError, match="no gradient"):
        cmp("x", a, None)


def test_a_wrong_manual_step_shows_in_the_table(names_ds):
    # drop the second branch of dcounts (the classic mistake): the check must fail, not pass quietly
    g = torch.Generator().manual_seed(SEED)
    net = Ninja(27, generator=g)
    Xb, Yb = lecture_batch(names_ds.Xtr, names_ds.Ytr, g)
    t = chunked_forward(net, Xb, Yb)
    t["loss"].backward()
    dlogprobs = torch.zeros_like(t["logprobs"])
    dlogprobs[range(32), Yb] = -1.0 / 32
    dprobs = (1.0 / t["probs"]) * dlogprobs
    dcounts_wrong = t["counts_sum_inv"] * dprobs
    assert not cmp("counts", dcounts_wrong, t["counts"].grad).approx


def test_every_tensor_has_its_lines_and_formula():
    for name in CMP_ORDER:
        s = STEPS[name]
        assert s.forward and s.backward and s.latex and s.why
        assert f"d{name}" in s.backward, name  # the d-prefixed lecture name
    assert "softmax" in CE_STEP.backward and "dhprebn" in BN_STEP.backward


def test_manual_backward_of_the_model_matches_autograd(names_ds):
    g = torch.Generator().manual_seed(SEED)
    net = Ninja(27, generator=g)
    Xb, Yb = lecture_batch(names_ds.Xtr, names_ds.Ytr, g)
    _, loss = net(Xb, Yb)
    loss.backward()
    auto = [p.grad.clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = None
    with torch.no_grad():
        net(Xb, Yb)
    net.manual_backward()
    for (name, p), a in zip(net.named_parameters(), auto):
        assert p.grad.shape == p.shape, name
        # the same math in another order: equal to a few float32 ulps of the gradient's size (how
        # many depends on the CPU's vector width: 1.5e-8 on W2 on an AVX-512 machine); b1's true
        # gradient is 0 (BatchNorm subtracts the mean), so it gets the old absolute 1e-8
        tol = max(1e-8, 4 * torch.finfo(torch.float32).eps * a.abs().max().item())
        assert (p.grad - a).abs().max() <= tol, name


def test_manual_backward_needs_targets():
    net = Ninja(27, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net(torch.zeros((4, 3), dtype=torch.long))
    with pytest.raises(RuntimeError, match="targets"):
        net.manual_backward()


# --- exercise 4: training with manual gradients only --------------------------------------


def _train(names_ds, preset, steps):
    p = get_preset("ninja", preset)
    cfg = train_config(p, steps=steps, capture_every=0)
    model, g = build_model(p, names_ds.vocab_size, cfg.seed)
    batches = TensorBatches({"train": (names_ds.Xtr, names_ds.Ytr), "val": (names_ds.Xdev, names_ds.Ydev)},
                            cfg.batch_size, g)
    run = Run(model, batches, cfg)
    run.run(chunk=100)
    return run, run.store.losses()[1]


def test_manual_training_tracks_autograd_training_for_200_steps(names_ds):
    man, lm = _train(names_ds, "manual", 200)
    auto, la = _train(names_ds, "autograd", 200)
    assert man.state == auto.state == "finished" and len(lm) == len(la) == 200
    assert lm[0] == la[0]  # the same parameters, the same first batch, the same forward
    assert np.abs(lm - la).max() < 1e-4
    assert lm[-20:].mean() < lm[:20].mean() - 0.3  # and it really learns
    assert abs(man.final["val"] - auto.final["val"]) < 1e-4
    for p, q in zip(man.model.parameters(), auto.model.parameters()):
        assert (p.detach() - q.detach()).abs().max() < 1e-4


def test_a_finished_run_calibrates_batchnorm_on_the_whole_training_set(names_ds):
    run, _ = _train(names_ds, "autograd", 20)
    m = run.model
    with torch.no_grad():
        hpreact = m.C[names_ds.Xtr].view(len(names_ds.Xtr), -1) @ m.W1 + m.b1
    torch.testing.assert_close(m.bn.running_mean, hpreact.mean(0, keepdim=True))
    torch.testing.assert_close(m.bn.running_var, hpreact.var(0, keepdim=True))
    with torch.no_grad():
        m.eval()
        assert abs(m(names_ds.Xdev, names_ds.Ydev)[1].item() - run.final["val"]) < 1e-6


def test_manual_training_builds_no_autograd_graph(names_ds):
    p = get_preset("ninja", "manual")
    cfg = train_config(p, steps=1, capture_every=0)
    model, g = build_model(p, 27, cfg.seed)
    batches = TensorBatches({"train": (names_ds.Xtr, names_ds.Ytr)}, 32, g)
    Run(model, batches, cfg).advance(1)
    h = dict(model.named_layers())["h"].out  # the tanh layer keeps its last output, as in the lecture
    assert not h.requires_grad and h.grad_fn is None
    assert all(q.grad is not None and q.grad.grad_fn is None for q in model.parameters())


def test_manual_backward_is_refused_for_other_models():
    with pytest.raises(SpecError, match="ninja"):
        check_spec({"model": "mlp", "preset": "kaiming", "train": {"backward": "manual"}})
    with pytest.raises(SpecError, match="autograd or manual"):
        check_spec({"model": "ninja", "preset": "manual", "train": {"backward": "by hand"}})
    preset, cfg = check_spec({"model": "ninja"})
    assert preset.name == "manual" and cfg.backward == "manual"
    mlp, g = build_model(get_preset("mlp", "kaiming"), 27, 1)
    with pytest.raises(ValueError, match="no manual backward"):
        Run(mlp, TensorBatches({"train": (torch.zeros((4, 3), dtype=torch.long), torch.zeros(4, dtype=torch.long))},
                               4, g), train_config(get_preset("ninja", "manual"), steps=1))
