import json
import math
import struct

import numpy as np
import pytest
import torch

from core.capture import device, kernels
from core.capture.histogram import BINS, Summarizer, density
from core.capture.kernels import MAX_BINS, nice_bound
from core.capture.record import STATS, VERSION, pack_capture, unpack_capture
from core.capture.recorder import Recorder
from core.models.build import build_model
from core.models.presets import get_preset, train_config
from core.training.loop import PROBE_EVERY, Run, TensorBatches
from data import WordsDataset

V = 27


@pytest.fixture(params=[False, True], ids=["kernels", "device"])
def on_device(request):
    """Both code paths of the capture math: the CPU kernels and the device path (run here on CPU tensors)."""
    return request.param


@pytest.fixture
def recorder(on_device):
    return lambda model, **kw: Recorder(model, on_device=on_device, **kw)


def summarize(tensors, kinds, on_device=False):
    s = Summarizer()
    keys = [("act", f"t{i}") for i in range(len(tensors))]
    return s, s(keys, tensors, kinds, on_device)


# --- the histogram math, against torch as the oracle ---------------------------------------

def test_counts_match_torch_histc_on_the_same_edges(on_device):
    torch.manual_seed(0)
    x = torch.randn(5000) * 0.3
    y = torch.tanh(torch.randn(300, 7) * 2)
    s, (counts, edges, stats) = summarize([x, y], ["grad", "tanh"], on_device)
    for i, t in enumerate([x, y]):
        lo, hi = edges[i]
        ref = torch.histc(t.float(), bins=BINS, min=float(lo), max=float(hi))
        inner = counts[i, 1:-1]
        # histc puts values equal to hi in the last bin, we count them as "over"; allow that edge
        assert np.abs(inner - ref.numpy()).sum() <= 2 * (t == hi).sum().item()
        assert counts[i].sum() == t.numel()


def test_counts_match_torch_histc_for_any_length(on_device):
    # the kernel counts a chunk at a time, four values at a time: lengths around those boundaries
    torch.manual_seed(6)
    lengths = [1, 2, 3, 5, 7, 511, 512, 513, 1027, 2049]
    ts = [torch.randn(n) * 0.1 for n in lengths]
    _, (counts, edges, _) = summarize(ts, ["grad"] * len(ts), on_device)
    for i, t in enumerate(ts):
        lo, hi = (float(v) for v in edges[i])
        ref = torch.histc(t.double(), bins=BINS, min=lo, max=hi).numpy()
        assert np.array_equal(counts[i, 1:-1], ref.astype(counts.dtype)), lengths[i]
        assert counts[i].sum() == t.numel() and counts[i, 0] == counts[i, -1] == 0


def test_more_bins_than_the_vectorized_tally_takes_are_counted_the_same_way():
    torch.manual_seed(10)
    x = torch.randn(3000)
    bins = MAX_BINS + 3
    counts, edges, _ = Summarizer(bins)([("act", "x")], [x], ["grad"])
    lo, hi = (float(v) for v in edges[0])
    assert counts.shape == (1, bins + 2) and counts.sum() == 3000 and counts[0, 0] == counts[0, -1] == 0
    # the same bucket arithmetic in numpy: (x - lo) * scale in float32
    lo32, hi32 = np.float32(lo), np.float32(hi)
    y = (x.numpy() - lo32) * (np.float32(bins) / (hi32 - lo32))
    ref = np.bincount(np.floor(np.clip(y.astype(np.float64), -1, bins)).astype(np.int64) + 1, minlength=bins + 2)
    assert np.array_equal(counts[0], ref)


def test_stats_match_torch_mean_std_and_lecture_saturation(on_device):
    torch.manual_seed(1)
    h = torch.tanh(torch.randn(32, 200) * 3)
    _, (counts, edges, stats) = summarize([h], ["tanh"], on_device)
    assert stats[0, 0] == pytest.approx(h.mean().item(), abs=1e-6)
    assert stats[0, 1] == pytest.approx(h.std().item(), rel=1e-5)
    assert stats[0, 2] == pytest.approx((h.abs() > 0.97).float().mean().item(), abs=1e-7)
    assert tuple(edges[0]) == (-1.0, 1.0)


def test_std_of_values_far_from_zero_does_not_cancel(on_device):
    torch.manual_seed(2)
    x = 1000 + torch.randn(10_000) * 1e-3  # mean/std = 1e6: a plain sum of squares would cancel
    _, (_, _, stats) = summarize([x], ["grad"], on_device)
    assert stats[0, 0] == pytest.approx(x.double().mean().item(), rel=1e-7)
    assert stats[0, 1] == pytest.approx(x.double().std().item(), rel=1e-3)


def test_non_contiguous_float64_and_integer_tensors_read_as_their_float32_values(on_device):
    torch.manual_seed(4)
    w = torch.randn(30, 20)
    ref = summarize([w.t().contiguous(), w.double().float(), torch.arange(12).float()], ["grad"] * 3, on_device)[1]
    got = summarize([w.t(), w.double(), torch.arange(12)], ["grad"] * 3, on_device)[1]
    for a, b in zip(ref, got):
        assert np.array_equal(a, b, equal_nan=True)


def test_values_at_the_ends_of_float32_are_counted_never_written_out_of_bounds(on_device):
    s = Summarizer()
    key = [("act", "x")]
    steps = [[1e38, 1.0], [1.5e38] + [1.0] * 1000, [2e38, 1.0, -3.0], [3.4e38, -3.4e38, 0.0]]
    for values in steps:
        counts, edges, stats = s(key, [torch.tensor(values)], ["grad"], on_device)
        assert counts[0].sum() == len(values) and np.isfinite(edges[0]).all()
    # a ReLU layer whose outputs are all but zero: edges stay wide enough for a finite scale
    for values in ([1e-38, 0.0, 0.0], [0.0, 0.0, 1e-38]):
        counts, edges, _ = s([("act", "r")], [torch.tensor(values)], ["relu"], on_device)
        assert counts[0].sum() == 3 and edges[0][1] >= 1e-30


def test_a_value_just_below_lo_is_under_not_in_the_first_bucket(on_device):
    s = Summarizer()
    s([("act", "r")], [torch.tensor([0.0, 1.0, 0.5])], ["relu"], on_device)  # edges (0, 2)
    counts, edges, _ = s([("act", "r")], [torch.tensor([-1e-30, 0.0, 1.0, 0.5])], ["relu"], on_device)
    assert tuple(edges[0]) == (0.0, 2.0) and counts[0, 0] == 1 and counts[0, 1] == 1


def test_update_stds_refuses_vectors_of_the_wrong_length():
    with pytest.raises(ValueError, match="update_stds"):
        Summarizer().update_stds(torch.ones(10), torch.ones(9), [10])


def test_a_step_job_runs_once():
    s = Summarizer()
    job = s.prepare([("act", "x")], ["grad"], [torch.randn(10)])
    job.run()
    with pytest.raises(RuntimeError, match="once"):
        job.run()


def test_relu_zero_fraction(on_device):
    x = torch.relu(torch.linspace(-1, 1, 1001))
    _, (_, edges, stats) = summarize([x], ["relu"], on_device)
    assert stats[0, 3] == pytest.approx(501 / 1001)
    assert edges[0][0] == 0.0
    assert math.isnan(stats[0, 2])  # "saturated" is a tanh notion


def test_input_with_nan_and_inf_is_counted_not_crashing(on_device):
    x = torch.tensor([0.5, float("nan"), float("inf"), -float("inf"), -0.5, 0.0])
    _, (counts, edges, stats) = summarize([x], ["grad"], on_device)
    assert stats[0, 4] == 1 and stats[0, 5] == 2
    assert counts[0].sum() == 3  # only finite values are bucketed
    assert stats[0, 0] == pytest.approx(0.0) and np.isfinite(stats[0, 1])


def test_input_with_all_same_values(on_device):
    _, (counts, edges, stats) = summarize([torch.ones(100)], ["grad"], on_device)
    assert counts[0].sum() == 100 and stats[0, 1] == 0.0
    assert edges[0][0] < 1.0 < edges[0][1]


def test_all_zero_input_gets_unit_edges(on_device):
    _, (counts, edges, stats) = summarize([torch.zeros(10)], ["grad"], on_device)
    assert tuple(edges[0]) == (-1.0, 1.0) and counts[0].sum() == 10


def test_empty_input(on_device):
    _, (counts, edges, stats) = summarize([torch.zeros(0), torch.ones(3)], ["grad", "grad"], on_device)
    assert counts[0].sum() == 0 and counts[1].sum() == 3
    assert tuple(edges[0]) == (-2.0, 2.0) and not np.nan_to_num(stats[0]).any()  # no values: edges as for |x| <= 1


def test_edges_stay_fixed_until_the_data_outgrows_them(on_device):
    s = Summarizer()
    key = [("act", "x")]
    torch.manual_seed(0)
    s(key, [torch.randn(1000)], ["grad"], on_device)
    first = s.edges[("act", "x")]
    s(key, [torch.randn(1000) * 1.1], ["grad"], on_device)
    assert s.edges[("act", "x")] == first
    counts, edges, _ = s(key, [torch.randn(1000) * 100], ["grad"], on_device)
    assert s.edges[("act", "x")] != first and counts[0, 0] + counts[0, -1] == 0
    counts, edges, _ = s(key, [torch.randn(1000) * 1e-3], ["grad"], on_device)  # shrank into the middle
    assert edges[0][1] < 0.1


def test_nice_bound():
    assert [nice_bound(v) for v in (0.7, 1.0, 1.5, 3, 7, 0.012)] == [1.0, 1.0, 2.0, 5.0, 10.0, 0.02]


def test_device_nice_bound_is_the_kernels():
    values = [0.7, 1.0, 1.5, 3, 7, 0.012, 1e-30, 5e37, 0.0, -2.0, float("nan"), float("inf"), 2.0000001, 1.9999999]
    got = device.nice_bound(torch.tensor(values, dtype=torch.float64)).float().tolist()
    assert got == np.float32([nice_bound(v) for v in values]).tolist()  # as the edges keep them: float32


def test_density_integrates_to_one():
    counts = np.array([1, 2, 3, 4])
    d = density(counts, 0, 4)
    assert (d * 1.0).sum() == pytest.approx(1.0)


# --- the recorder on real models ------------------------------------------------------------

def makemore_run(model="mlp", preset="kaiming", steps=10, capture_every=1, lr=None, seed=2147483647,
                 optimizer=None, n=2000):
    p = get_preset(model, preset)
    g0 = torch.Generator().manual_seed(0)
    X = torch.randint(0, V, (n, p.block_size), generator=g0)
    Y = torch.randint(0, V, (n,), generator=g0)
    cfg = train_config(p, steps=steps, capture_every=capture_every, lr=lr, optimizer=optimizer, seed=seed)
    m, g = build_model(p, V, cfg.seed)
    return Run(m, TensorBatches({"train": (X, Y), "val": (X[:200], Y[:200])}, cfg.batch_size, g), cfg)


def test_activation_gradients_match_retain_grad_oracle():
    run = makemore_run("deep", "deep-tanh", steps=1)
    # oracle: the same forward on a copy, the lecture's way (retain_grad)
    p = get_preset("deep", "deep-tanh")
    twin, g = build_model(p, V, 2147483647)
    Xb, Yb = TensorBatches(run.batches.splits, 32, g).get_batch("train")
    _, loss = twin(Xb, Yb)
    for _, layer in twin.named_layers():
        layer.out.retain_grad()
    loss.backward()
    run.advance(1)
    cap = run.store.latest_capture()
    stats = {r["layer"]: r for r in cap.layer_stats()}
    for name, layer in twin.named_layers():
        if name in stats:
            assert stats[name]["std"] == pytest.approx(layer.out.std().item(), rel=1e-4)
            assert stats[name]["grad_std"] == pytest.approx(layer.out.grad.std().item(), rel=1e-4)
    assert len(stats) == 5  # five Tanh layers, no BatchNorm in this preset
    # the gradient histograms are binned on the gradients' own range (not tanh's fixed -1..1):
    # the lecture's picture of each layer's gradient distribution, checked against torch.histc
    for name, kind, i in cap.rows("agrad"):
        lo, hi = (float(v) for v in cap.edges[i])
        grad = dict(twin.named_layers())[name].out.grad
        assert kind == "tanh" and -hi == lo and grad.abs().max() <= hi < 0.1
        inner = cap.counts[i, 1:-1]
        assert (inner > 0).sum() > 10   # spread over many bins, not one spike at 0
        assert np.array_equal(inner, torch.histc(grad.double(), len(inner), lo, hi).numpy().astype(inner.dtype))


def test_update_to_data_ratio_equals_the_lectures_formula_for_sgd():
    run = makemore_run("mlp", "kaiming", steps=1, lr=0.1)
    p = get_preset("mlp", "kaiming")
    twin, g = build_model(p, V, 2147483647)
    Xb, Yb = TensorBatches(run.batches.splits, 32, g).get_batch("train")
    _, loss = twin(Xb, Yb)
    loss.backward()
    ref = {}
    for name, t in twin.named_parameters():
        grad = t.grad.clone()
        t.data += -0.1 * grad
        ref[name] = (((0.1 * grad).std() / t.data.std()).log10().item(), grad.std().item() / t.data.std().item())
    run.advance(1)
    ws = {w["name"]: w for w in run.store.latest_capture().weight_stats()}
    for name in ("C", "W1", "W2"):
        assert ws[name]["update_data_log10"] == pytest.approx(ref[name][0], abs=1e-4)
        assert ws[name]["grad_data_ratio"] == pytest.approx(ref[name][1], rel=1e-4)


def test_update_ratios_of_consecutive_capture_steps_match_the_lecture_at_every_step():
    # capture every step reuses one step's updated copy of the parameters as the next one's "before":
    # each step's ratios must still be the lecture's formula on that step's own update
    steps = 6
    run = makemore_run("deep", "deep-bn", steps=steps, lr=0.1, capture_every=1)
    p = get_preset("deep", "deep-bn")
    twin, g = build_model(p, V, 2147483647)
    batches = TensorBatches(run.batches.splits, 32, g)
    ref = []
    for _ in range(steps):
        Xb, Yb = batches.get_batch("train")
        _, loss = twin(Xb, Yb)
        for t in twin.parameters():
            t.grad = None
        loss.backward()
        with torch.no_grad():
            for t in twin.parameters():
                t.data += -0.1 * t.grad
            ref.append({name: ((0.1 * t.grad).std() / t.data.std()).log10().item()
                        for name, t in twin.named_parameters() if t.ndim == 2})
    run.advance(steps)
    caps = run.store.captures
    assert [c.step for c in caps] == list(range(steps))
    for c, r in zip(caps, ref):
        ws = {w["name"]: w["update_data_log10"] for w in c.weight_stats()}
        for name, v in r.items():
            assert ws[name] == pytest.approx(v, abs=1e-4), (c.step, name)


def test_update_to_data_ratio_uses_the_real_update_for_adam():
    run = makemore_run("mlp", "kaiming", steps=1, lr=1e-3, optimizer="adamw")
    before = {n: t.detach().clone() for n, t in run.model.named_parameters()}
    run.advance(1)
    ws = {w["name"]: w for w in run.store.latest_capture().weight_stats()}
    for name, t in run.model.named_parameters():
        if t.ndim == 2:
            ref = ((t.detach() - before[name]).std() / t.detach().std()).log10().item()
            assert ws[name]["update_data_log10"] == pytest.approx(ref, abs=1e-4)


def test_update_ratios_stay_right_when_parameters_move_or_cannot_be_read_in_place(recorder):
    # the recorder reads the parameters where torch keeps them and reuses one step's "after" as the next
    # one's "before"; parameters replaced between steps (p.data = ...), turned non-contiguous or float64
    # must still give the real update, as must the steps after they come back
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    rec = recorder(model)
    X, Y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    w0, w2 = model[0].weight, model[2].weight
    changes = {2: lambda: setattr(w0, "data", w0.data * 1.5),                      # moved, new values
               4: lambda: setattr(w2, "data", w2.data.t().contiguous().t()),   # non-contiguous
               6: model.double,                                                  # float64, the same parameters
               8: model.float}
    for step in range(10):
        if step in changes:
            changes[step]()
        rec.begin(step)
        loss = torch.nn.functional.cross_entropy(model(X.to(w2.dtype)).float(), Y)
        rec.after_forward()
        for q in model.parameters():
            q.grad = None
        loss.backward()
        rec.after_backward(loss.item())
        before = {n: q.detach().clone() for n, q in model.named_parameters()}
        rec.before_update()
        with torch.no_grad():
            for q in model.parameters():
                q -= 0.5 * q.grad
        rec.after_update()
        (cap,) = rec.flush()
        for w in cap.weight_stats():
            q = dict(model.named_parameters())[w["name"]].detach()
            ref = ((q - before[w["name"]]).float().std() / q.float().std()).log10().item()
            assert w["update_data_log10"] == pytest.approx(ref, abs=1e-4), (step, w["name"])
    rec.close()


def _sgd_capture(model, rec, step, X, Y, between=None):
    """One capture step of plain SGD on an nn model; `between` runs after backward, before the update."""
    rec.begin(step)
    loss = torch.nn.functional.cross_entropy(model(X), Y)
    rec.after_forward()
    for q in model.parameters():
        q.grad = None
    loss.backward()
    rec.after_backward(loss.item())
    if between is not None:
        between()
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    rec.before_update()
    with torch.no_grad():
        for q in model.parameters():
            if q.grad is not None:
                q -= 0.1 * q.grad
    rec.after_update()
    return rec.flush(), before


class _TwoVectors(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(10))
        self.b = torch.nn.Parameter(torch.randn(20) * 100)

    def forward(self, X):
        return self.a[:3] * X[:, :3] + self.b[:3] * X[:, 1:4]  # whatever their sizes


def test_update_ratios_when_parameters_change_size_between_advances(recorder):
    torch.manual_seed(7)
    m = _TwoVectors()
    rec = recorder(m)
    X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    _sgd_capture(m, rec, 0, X, Y)
    rec.forget()
    m.a.data, m.b.data = torch.randn(20) * 100, torch.randn(10)  # the sizes swap, the total stays
    (cap,), before = _sgd_capture(m, rec, 1, X, Y)
    for w in cap.weight_stats():
        q = dict(m.named_parameters())[w["name"]].detach()
        assert w["shape"] == list(q.shape)
        assert w["data_std"] == pytest.approx(q.std().item(), rel=1e-5)
        ref = ((q - before[w["name"]]).std() / q.std()).log10().item()
        assert w["update_data_log10"] == pytest.approx(ref, abs=1e-4)


def test_a_gradient_dropped_between_backward_and_the_update_is_an_error_not_garbage(recorder):
    torch.manual_seed(8)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    rec = recorder(m)
    X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))

    def drop():
        m[2].bias.grad = None
    with pytest.raises(ValueError, match="had a gradient"):
        _sgd_capture(m, rec, 0, X, Y, between=drop)


def test_a_layer_called_twice_as_different_outputs_of_its_node(recorder):
    class Tanh(torch.nn.Module):  # watched as "tanh"; its output is the last of an unbind's outputs
        def forward(self, x):
            return torch.tanh(x).unbind(0)[-1]

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.t = Tanh()

        def forward(self, X):
            h = self.t(self.lin(X).view(2, 8, 4))  # output 1 of 2
            return self.t(h.view(4, 2, 4))         # output 3 of 4

    torch.manual_seed(9)
    m = Twice()
    rec = recorder(m)
    X = torch.randn(16, 4)
    rec.begin(0)
    out = m(X)
    rec.after_forward()
    out.retain_grad()
    (out ** 2).sum().backward()
    rec.after_backward(0.0)
    rec.before_update()
    rec.after_update()
    (cap,) = rec.flush()
    (row,) = cap.layer_stats()
    assert row["grad_std"] == pytest.approx(out.grad.std().item(), rel=1e-5)  # the output seen last


def test_ratios_that_overflow_float32_are_nan_not_inf():
    stats = np.array([[0, 1e-3, 0, 0, 0, 0]], dtype=np.float64)
    std = np.array([[1e-42, 1e-43], [1e39, 1.0]])
    out_stats = np.empty((1, 6), dtype=np.float32)
    wratio = np.empty((2, 3), dtype=np.float32)
    kernels.finish(stats, np.array([False]), std, np.array([0, 0], dtype=np.int64), out_stats, wratio)
    assert not np.isinf(wratio).any()
    assert np.isnan(wratio[0, 1]) and np.isnan(wratio[1, 0]) and wratio[0, 2] == pytest.approx(-1, abs=1e-3)


def test_recorder_on_torch_nn_modules_uses_forward_hooks(recorder):
    p = get_preset("gpt", "small")
    model, _ = build_model(p, V, 1337)
    rec = recorder(model)
    kinds = {k for _, k, _ in rec.points}
    assert kinds == {"relu", "layernorm"}
    X = torch.randint(0, V, (2, 8))
    rec.begin(0)
    _, loss = model(X, X)
    rec.after_forward()
    loss.backward()
    rec.after_backward(loss.item())
    rec.before_update()
    rec.after_update()
    (cap,) = rec.flush()
    names = [n for n, _, _ in cap.rows("act")]
    assert "ln_f" in names and "blocks.0.ffwd.net.1" in names
    assert len(cap.rows("agrad")) == len(names)
    relu = [r for r in cap.layer_stats() if r["kind"] == "relu"][0]
    assert 0 < relu["saturated_pct"] < 100  # fraction of zeros
    rec.close()
    assert not model.ln_f._forward_hooks


def test_capture_does_not_change_the_numbers():
    a = makemore_run("deep", "deep-bn", steps=20, capture_every=1)
    b = makemore_run("deep", "deep-bn", steps=20, capture_every=0)
    a.advance(20)
    b.advance(20)
    assert b.recorder is None and not b.store.captures
    _, la, _ = a.store.losses()
    _, lb, _ = b.store.losses()
    assert np.array_equal(la, lb)


def test_capture_cadence_and_last_step_always_captured():
    run = makemore_run(steps=25, capture_every=10)
    run.advance(25)
    assert [c.step for c in run.store.captures] == [0, 10, 20, 24]


def test_no_retain_grad_in_the_loop():
    run = makemore_run("deep", "deep-bn", steps=1)
    run.advance(1)
    outs = [layer.out for _, layer in run.model.named_layers()]
    assert not any(t.retains_grad for t in outs)
    assert all(t.grad is None for t in outs if t.requires_grad)


def test_capture_record_is_small_and_json_ready():
    run = makemore_run("deep", "deep-bn", steps=1)
    run.advance(1)
    cap = run.store.latest_capture()
    assert cap.nbytes() < 20_000  # counts and stats only, never raw tensors
    d = json.loads(json.dumps(cap.to_dict()))
    assert d["step"] == 0 and len(d["histograms"]) == len(cap.keys)
    assert all(len(h["counts"]) == BINS for h in d["histograms"])


# --- the saturation raster on a fixed probe batch -------------------------------------

def test_probe_raster_matches_the_lecture_imshow_and_leaves_training_unchanged(names_words):
    ds = WordsDataset(names_words[:2000], 3)
    outs = []
    for probe in (None, ds.Xdev[:32]):
        preset = get_preset("mlp", "batchnorm")
        cfg = train_config(preset, steps=30, capture_every=10)
        model, g = build_model(preset, 27, cfg.seed)
        run = Run(model, TensorBatches({"train": (ds.Xtr, ds.Ytr), "val": (ds.Xdev, ds.Ydev)}, 32, g), cfg,
                  probe=probe)
        run.run()
        outs.append((run.store.snapshot(), model))
    (a, _), (b, model) = outs
    assert np.array_equal(a["loss"], b["loss"])  # the probe forward changed nothing, running stats included
    assert a["captures"][-1].raster == {} and set(b["captures"][-1].raster) == {"h"}
    # the oracle: the lecture's h.abs() > 0.99 on the probe batch, in train mode, at the last step
    r = b["captures"][-1].raster_matrix("h")
    assert r.shape == (32, 200)
    model.train()
    with torch.no_grad():
        model(ds.Xdev[:32])
    h = dict(model.named_layers())["h"].out
    assert np.array_equal(r, (h.abs() > 0.99).numpy())


def test_probe_on_gpt_restores_buffers_and_rng(recorder):
    preset = get_preset("gpt", "small")
    model, g = build_model(preset, 27, 1337, dropout=0.2)
    rec = recorder(model)
    X = torch.randint(0, 27, (4, 32), generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    raster = rec.probe(X)
    assert torch.equal(state, torch.get_rng_state())
    assert len(raster) == 4  # one ReLU per block
    shape, _ = next(iter(raster.values()))
    assert shape == (64, 256)


# --- capture off the training thread, in batches of steps ------------------------------------

def test_summarizing_many_steps_at_once_equals_one_at_a_time_refits_and_nan_included(on_device):
    torch.manual_seed(3)
    keys, kinds = [("act", "h"), ("agrad", "h"), ("wgrad", "W")], ["tanh", "tanh", "grad"]
    steps = [[torch.tanh(torch.randn(32, 50) * s), torch.randn(32, 50) * 1e-2, torch.randn(20, 10) * g]
             for s, g in [(1, 1), (2, 1), (1, 100), (3, 1e-4), (1, 1), (1, 1)]]
    steps[4][2][0, 0] = float("nan")  # a NaN halfway through
    one = Summarizer()
    ref = [one(keys, ts, kinds, on_device) for ts in steps]
    counts, edges, stats = Summarizer().steps(keys, kinds, steps, on_device)
    assert len({tuple(e[2]) for _, e, _ in ref}) >= 3  # the weight's edges refit twice in the batch
    for j, (c, e, s) in enumerate(ref):
        assert np.array_equal(counts[j], c) and np.array_equal(edges[j], e)
        assert np.array_equal(stats[j], s, equal_nan=True)
        # and the oracle: torch's own numbers for this step
        for q, t in enumerate(steps[j]):
            fin = t[torch.isfinite(t)]
            assert counts[j, q].sum() == fin.numel()
            assert stats[j, q, 1] == pytest.approx(fin.std().item(), rel=1e-5)
    assert stats[4, 2, 4] == 1


def test_the_device_path_gives_the_kernels_records_within_float32_rounding():
    """The GPU's code path, run on CPU tensors, against the kernels: a deep-bn run whose edges refit."""
    runs = []
    for on_device in (False, True):
        run = makemore_run("deep", "deep-bn", steps=40, capture_every=1, lr=1.0)
        run.recorder.close()
        run.recorder = Recorder(run.model, on_device=on_device)
        run.run(chunk=7)
        runs.append(run.store.captures)
    a, b = runs
    assert [c.step for c in a] == [c.step for c in b] == list(range(40))
    refits = 0
    for x, y in zip(a, b):
        assert x.keys == y.keys and x.kinds == y.kinds and x.weights == y.weights
        assert np.array_equal(x.edges, y.edges)
        # a value on a bucket's edge may round to its neighbour: a handful of moves at most, never a loss
        assert np.array_equal(x.counts.sum(1), y.counts.sum(1))
        assert (np.abs(x.counts - y.counts).sum(1) <= 4).all()
        np.testing.assert_allclose(y.stats, x.stats, rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(y.wratio, x.wratio, rtol=2e-5, atol=1e-7)
    for x0, x1 in zip(a, a[1:]):
        refits += int((x0.edges != x1.edges).any())
    assert refits >= 1  # lr 1.0 moves the weights' gradients out of their first edges


def test_device_update_stds_are_the_kernels():
    torch.manual_seed(9)
    before = [torch.randn(30, 20), torch.randn(7), torch.randn(1), torch.zeros(0)]
    after = [b + torch.randn(b.shape) * 1e-3 for b in before]
    sizes = np.array([t.numel() for t in before])
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])  # noqa: E731
    ref = Summarizer.update_stds(flat(after), flat(before), sizes)
    got = device.update_stds(after, before).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_every_capture_is_in_the_store_when_advance_returns():
    run = makemore_run("deep", "deep-bn", steps=100, capture_every=1)
    assert run.advance(13) == 13
    assert [c.step for c in run.store.captures] == list(range(13))
    assert run.recorder.pending == 0
    run.pause()
    run.resume()
    run.advance(5)
    run.stop()
    assert [c.step for c in run.store.captures] == list(range(18))


def test_a_diverging_run_keeps_the_captures_before_the_divergence():
    run = makemore_run("deep", "deep-linear", steps=50, capture_every=1, lr=1e6)
    run.advance(50)
    assert run.state == "diverged"
    assert [c.step for c in run.store.captures] == list(range(run.diverged_at))


def test_the_probe_runs_at_most_every_probe_every_steps_and_at_the_last(names_words):
    ds = WordsDataset(names_words[:2000], 3)
    preset = get_preset("mlp", "kaiming")
    cfg = train_config(preset, steps=2 * PROBE_EVERY + 5, capture_every=1)
    model, g = build_model(preset, 27, cfg.seed)
    run = Run(model, TensorBatches({"train": (ds.Xtr, ds.Ytr)}, 32, g), cfg, probe=ds.Xdev[:32])
    while not run.done:  # flushed as a worker does: the store keeps every capture of these 205 steps
        run.advance(50)
        run.store.flush()
    caps = run.store.captures
    assert [c.step for c in caps] == list(range(cfg.steps))
    fresh = [c.step for c in caps if c.raster_step == c.step]
    assert fresh == [0, PROBE_EVERY, 2 * PROBE_EVERY, cfg.steps - 1]
    assert all(c.raster and c.raster_step == max(s for s in fresh if s <= c.step) for c in caps)
    c = unpack_capture(pack_capture(caps[3]))  # the record format keeps where a raster came from
    assert c.step == 3 and c.raster_step == 0 and c.raster == caps[0].raster


def _repacked(blob, **head_changes):
    """A stored record with its JSON header edited (as an older writer would have written it)."""
    (n,) = struct.unpack_from("<I", blob)
    head = json.loads(blob[4:4 + n])
    for k, v in head_changes.items():
        if v is None:
            head.pop(k, None)
        else:
            head[k] = v
    h = json.dumps(head).encode()
    return struct.pack("<I", len(h)) + h + blob[4 + n:]


def test_a_record_stored_without_a_version_reads_as_it_was_written():
    run = makemore_run("deep", "deep-bn", steps=2, capture_every=1)
    run.advance(2)
    cap = run.store.latest_capture()
    old = unpack_capture(_repacked(pack_capture(cap), version=None, stats=None, wratio=None))  # version 1
    assert VERSION == 2 and old.keys == cap.keys and old.weights == cap.weights
    for a in ("counts", "edges", "stats", "wratio"):
        assert np.array_equal(getattr(old, a), getattr(cap, a), equal_nan=True)


def test_a_statistic_a_record_was_stored_without_reads_nan():
    run = makemore_run("deep", "deep-bn", steps=1, capture_every=1)
    run.advance(1)
    cap = run.store.latest_capture()
    blob = pack_capture(cap)
    # a writer that knew every column but "zero": drop that column from the arrays' bytes too
    k = len(cap.keys)
    j = STATS.index("zero")
    fewer = np.delete(cap.stats, j, axis=1).astype(np.float32)
    head_len = 4 + int.from_bytes(blob[:4], "little")
    start = head_len + cap.counts.nbytes + cap.edges.nbytes
    blob = blob[:start] + fewer.tobytes() + blob[start + k * len(STATS) * 4:]
    got = unpack_capture(_repacked(blob, stats=[s for s in STATS if s != "zero"]))
    assert np.isnan(got.stats[:, j]).all()
    assert np.array_equal(np.delete(got.stats, j, axis=1), fewer, equal_nan=True)
    assert np.array_equal(got.wratio, cap.wratio, equal_nan=True)
