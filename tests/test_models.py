import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.models.bigram import Bigram
from core.models.build import build_model
from core.models.layers import BatchNorm1d, BatchNormStd, Embedding, FlattenConsecutive, Linear, Tanh
from core.models.presets import PRESETS, get_preset

V = 27


def batch(block_size, B=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, V, (B, block_size), generator=g), torch.randint(0, V, (B,), generator=g))


# --- lecture layers against torch.nn as the oracle -----------------------------------------

def test_linear_matches_f_linear():
    lin = Linear(30, 20, generator=torch.Generator().manual_seed(1))
    lin.bias = torch.randn(20)
    x = torch.randn(8, 30)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight.T, lin.bias))


def test_batchnorm1d_matches_torch_in_training_and_eval():
    x = torch.randn(32, 10) * 3 + 1
    ours, ref = BatchNorm1d(10), nn.BatchNorm1d(10)
    out = ours(x)
    ref(x)
    # the lecture normalizes with the unbiased batch variance (torch uses the biased one there)
    oracle = F.batch_norm(x, x.mean(0), x.var(0), training=False, eps=1e-5)
    torch.testing.assert_close(out, oracle)
    # torch keeps the unbiased variance in running_var, as the lecture does
    torch.testing.assert_close(ours.running_mean.view(-1), ref.running_mean)
    torch.testing.assert_close(ours.running_var.view(-1), ref.running_var)
    ours.training = False
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


def test_batchnorm1d_on_3d_input_normalizes_over_batch_and_time():
    x = torch.randn(32, 4, 10) * 2 + 5
    out = BatchNorm1d(10)(x)
    flat = x.reshape(-1, 10)
    ref = F.batch_norm(flat, flat.mean(0), flat.var(0), training=False, eps=1e-5).view(32, 4, 10)
    torch.testing.assert_close(out, ref)


def test_batchnorm1d_dim0_only_is_the_lectures_bug_on_3d_input():
    # before lecture 6's fix every (position, channel) pair got its own statistics over the batch only
    x = torch.randn(32, 4, 10) * 2 + 5
    out = BatchNorm1d(10, dim0_only=True)(x)
    flat = x.reshape(32, -1)
    ref = F.batch_norm(flat, flat.mean(0), flat.var(0), training=False, eps=1e-5).view(32, 4, 10)
    torch.testing.assert_close(out, ref)


def test_batchnorm_std_divides_by_the_batch_std_and_keeps_a_running_std():
    x = torch.randn(32, 10) * 3 + 1
    ours, ref = BatchNormStd(10), nn.BatchNorm1d(10, momentum=0.001)
    out = ours(x)
    ref(x)
    torch.testing.assert_close(out, F.batch_norm(x, x.mean(0), x.var(0), training=False, eps=0.0))
    torch.testing.assert_close(ours.bnmean_running.view(-1), ref.running_mean)
    torch.testing.assert_close(ours.bnstd_running.view(-1), 0.999 + 0.001 * x.std(0))
    ours.training = False
    torch.testing.assert_close(ours(x), (x - ours.bnmean_running) / ours.bnstd_running)
    assert [n for n, _ in ours.named_parameters()] == ["bngain", "bnbias"]


def test_wavenet_layer_shapes_are_the_lectures_table():
    p = get_preset("wavenet", "hierarchical")
    model, _ = build_model(p, V, 42)
    model(torch.zeros((32, 8), dtype=torch.long))
    shapes = [(name.split(" ", 1)[1], tuple(layer.out.shape)) for name, layer in model.named_layers()]
    assert shapes[:6] == [("Embedding", (32, 8, 10)), ("FlattenConsecutive", (32, 4, 20)),
                          ("Linear", (32, 4, 68)), ("BatchNorm1d", (32, 4, 68)), ("Tanh", (32, 4, 68)),
                          ("FlattenConsecutive", (32, 2, 136))]
    assert shapes[-1] == ("Linear", (32, 27))
    assert shapes[-3] == ("BatchNorm1d", (32, 68))  # the last FlattenConsecutive squeezed T=1 away


# --- every model speaks forward(idx, targets=None) -> (logits, loss) ---------------------------

ALL = [(m, p) for m in PRESETS for p in PRESETS[m] if m != "bigram" and not (m == "gpt" and p == "full")]


@pytest.mark.parametrize("model_name,preset_name", ALL)
def test_contract_and_fresh_loss(model_name, preset_name):
    p = get_preset(model_name, preset_name)
    model, _ = build_model(p, V, 2147483647)
    bs = model.get_block_size()
    if model_name == "gpt":
        X = torch.randint(0, V, (4, bs))
        Y = torch.randint(0, V, (4, bs))
    elif model_name == "bigram-nn":
        X, Y = torch.randint(0, V, (64,)), torch.randint(0, V, (64,))
    else:
        X, Y = batch(bs)
    logits, loss = model(X, Y)
    assert logits.shape[-1] == V
    assert loss.ndim == 0 and math.isfinite(loss.item())
    logits2, none = model(X)
    assert none is None
    if model_name in ("gpt", "deep", "wavenet") or preset_name not in ("raw", "lecture3-2d", "lecture3"):
        # a well-initialized model starts near the uniform guess -ln(1/27) = 3.2958
        limit = 0.6 if model_name != "bigram-nn" else 5  # bigram-nn's W is plain randn
        assert abs(loss.item() - math.log(V)) < limit, loss.item()
    else:  # plain randn (lecture 3, and lecture 4's starting point): confidently wrong from the start
        assert loss.item() > 3 * math.log(V), loss.item()
    assert all(p_.requires_grad for p_ in model.parameters())


@pytest.mark.parametrize("preset_name,params", [("raw", 11897), ("kaiming", 11897), ("batchnorm", 12097)])
def test_mlp_param_counts(preset_name, params):
    model, _ = build_model(get_preset("mlp", preset_name), V, 2147483647)
    assert model.num_params() == params


@pytest.mark.parametrize("preset_name,params", [("flat8", 22097), ("hierarchical", 22397),
                                                ("bnfix", 22397), ("scaled", 76579)])
def test_wavenet_param_counts(preset_name, params):
    model, _ = build_model(get_preset("wavenet", preset_name), V, 42)
    assert model.num_params() == params


def test_deep_param_count_and_gain_rules():
    model, _ = build_model(get_preset("deep", "deep-bn"), V, 2147483647, gain=5 / 3)
    assert model.num_params() == 47024
    last_bn = model.named_layers()[-1][1]
    assert torch.allclose(last_bn.gamma, torch.full((27,), 0.1))
    # with BatchNorm the last Linear is inside layers[:-1], so it gets the gain too
    g = torch.Generator().manual_seed(2147483647)
    torch.randn((27, 10), generator=g)
    w0 = torch.randn((30, 100), generator=g) / 30**0.5 * (5 / 3)
    torch.testing.assert_close(model.named_layers()[0][1].weight, w0)


def test_deep_without_tanh_has_no_tanh_layers():
    model, _ = build_model(get_preset("deep", "deep-linear"), V, 1)
    assert not any(isinstance(layer, Tanh) for _, layer in model.named_layers())


def test_gpt_full_size_is_the_lectures_10_788929_m_params():
    model, _ = build_model(get_preset("gpt", "full"), 65, 1337)
    assert model.num_params() == 10_788_929


def test_gpt_is_causal():
    model, _ = build_model(get_preset("gpt", "small"), V, 1337)
    model.eval()
    x = torch.randint(0, V, (1, 16))
    x2 = x.clone()
    x2[0, 10:] = (x2[0, 10:] + 1) % V  # change the future
    l1, _ = model(x)
    l2, _ = model(x2)
    torch.testing.assert_close(l1[0, :10], l2[0, :10])
    assert not torch.allclose(l1[0, 10:], l2[0, 10:])


def test_same_seed_same_parameters_different_seed_different():
    a, _ = build_model(get_preset("mlp", "kaiming"), V, 5)
    b, _ = build_model(get_preset("mlp", "kaiming"), V, 5)
    c, _ = build_model(get_preset("mlp", "kaiming"), V, 6)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.W1, c.W1)


def test_generator_seed_42_equals_lecture_6_global_seed():
    # lecture 6 draws from the global RNG after torch.manual_seed(42); we use a generator
    torch.manual_seed(42)
    emb = Embedding(27, 10)
    model, _ = build_model(get_preset("wavenet", "flat8"), V, 42)
    assert torch.equal(model.named_layers()[0][1].weight, emb.weight)


def test_bigram_counts_and_unseen_bigram_is_infinite_without_smoothing():
    xs = torch.tensor([0, 1, 1])
    ys = torch.tensor([1, 1, 0])
    m = Bigram(3, smoothing=0).fit(xs, ys)
    assert m.N.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert math.isinf(m.nll(torch.tensor([0]), torch.tensor([2])).item())
    m1 = Bigram(3, smoothing=1).fit(xs, ys)
    torch.testing.assert_close(m1.P[0], torch.tensor([1, 2, 1]) / 4.0)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1"])
def test_bigram_refuses_bad_smoothing(bad):
    with pytest.raises(ValueError):
        Bigram(27, smoothing=bad)


def test_flatten_consecutive_squeezes_the_last_group_away():
    x = Embedding(27, 4)(torch.zeros((5, 8), dtype=torch.long))
    x = FlattenConsecutive(2)(x)
    assert x.shape == (5, 4, 8)
    assert FlattenConsecutive(4)(x).shape == (5, 32)


def test_mlp_forward_is_the_lectures_expression():
    model, _ = build_model(get_preset("mlp", "fix-tanh"), V, 3)
    X, Y = batch(3)
    emb = model.C[X]
    h = torch.tanh(emb.view(32, -1) @ model.W1 + model.b1)
    ref = F.cross_entropy(h @ model.W2 + model.b2, Y)
    assert model(X, Y)[1].item() == ref.item()
