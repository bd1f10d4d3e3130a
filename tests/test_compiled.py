"""The compiled recorder (core/_capture.cpp through core.compiled): it builds, it gives exactly the
Python recorder's records on every kind of model, on the spot and on its worker thread, and without
it the Python recorder takes over."""

import numpy as np
import pytest
import torch

from core import compiled
from core.capture import CompiledRecorder, Recorder, make_recorder
from core.presets import get_preset, train_config
from core.train import Run, TensorBatches, TextBatches, build_model


def test_the_compiled_recorder_builds(compiled_capture):
    assert compiled_capture is not None, f"core/_capture.cpp did not build: {compiled.build_error()}"
    assert compiled.build_error() is None


def _run(model, preset, recorder, steps, words, background=False):
    import data
    p = get_preset(model, preset)
    cfg = train_config(p, steps=steps, capture_every=1)
    if model == "gpt":
        ds = data.TextDataset("\n".join(words[:2000]) + "\n", p.block_size)
        m, g = build_model(p, ds.vocab_size, cfg.seed)
        batches, probe = TextBatches(lambda split: ds.get_batch(split, cfg.batch_size), 2), None
    else:
        ds = data.WordsDataset(words[:4000], p.block_size)
        m, g = build_model(p, ds.vocab_size, cfg.seed)
        batches = TensorBatches({"train": (ds.Xtr, ds.Ytr), "val": (ds.Xdev, ds.Ydev)}, cfg.batch_size, g)
        probe = ds.Xdev[:32]
    run = Run(m, batches, cfg, probe=probe, capture=False)
    run.recorder = recorder(m, background=background)
    run.run(chunk=7)
    run.recorder.close()
    return run.store.captures


@pytest.mark.parametrize("model,preset,steps", [("deep", "deep-bn", 120), ("mlp", "kaiming", 30),
                                                ("wavenet", "hierarchical", 20), ("gpt", "small", 4)])
def test_compiled_records_are_the_python_recorders_records(compiled_capture, names_words, model, preset, steps):
    def fast(m, background):
        return CompiledRecorder(m, compiled_capture, background=background)
    a = _run(model, preset, Recorder, steps, names_words)
    for b in (_run(model, preset, fast, steps, names_words),
              _run(model, preset, fast, steps, names_words, background=True)):
        assert [c.step for c in a] == [c.step for c in b] == list(range(steps))
        for x, y in zip(a, b):
            assert x.keys == y.keys and x.kinds == y.kinds and x.weights == y.weights and x.loss == y.loss
            for f in ("counts", "edges", "stats", "wratio"):
                u, v = getattr(x, f), getattr(y, f)
                assert u.dtype == v.dtype and np.array_equal(u, v, equal_nan=True), (x.step, f)
            assert x.raster_step == y.raster_step and x.raster == y.raster


def test_without_the_compiled_path_the_python_recorder_records(monkeypatch):
    m, _ = build_model(get_preset("mlp", "kaiming"), 27, 1)
    assert type(make_recorder(m)) is CompiledRecorder
    monkeypatch.setenv("ZTH_COMPILED", "0")
    assert type(make_recorder(m)) is Recorder


def _sgd_step(model, rec, step, X, Y, loss_fn=None):
    """One capture step of plain SGD through the recorder's calls, as Run makes them."""
    rec.begin(step)
    out = model(X)
    loss = torch.nn.functional.cross_entropy(out, Y) if loss_fn is None else loss_fn(out)
    rec.after_forward()
    model.zero_grad(set_to_none=True)
    loss.backward()
    rec.after_backward(loss.item())
    rec.before_update()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    rec.after_update()


def _on_the_worker(compiled_capture, n_in, hidden, n_out, batch):
    """A seeded Linear-Tanh-Linear model, its compiled recorder with the worker thread, and a batch."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_out))
    rec = CompiledRecorder(model, compiled_capture, background=True)
    return model, rec, torch.randn(batch, n_in), torch.randint(0, n_out, (batch,))


def test_the_worker_keeps_up_and_flush_waits_for_it(compiled_capture):
    # many capture steps queued on the worker: flush() returns every record, in step order
    model, rec, X, Y = _on_the_worker(compiled_capture, 50, 400, 5, 256)
    for step in range(40):
        _sgd_step(model, rec, step, X, Y)
    caps = rec.flush()
    assert [c.step for c in caps] == list(range(40)) and rec.pending == 0
    assert all(c.counts[0].sum() == 256 * 400 for c in caps)  # the tanh output, every value counted
    rec.close()


def test_the_worker_finishes_steps_nobody_waits_for(compiled_capture):
    # the worker is woken only from its idle sleep or for a long queue (a wake-up is a system call):
    # a lone step, and a few more after it went idle again, still arrive through ready() alone
    import time
    model, rec, X, Y = _on_the_worker(compiled_capture, 8, 32, 3, 16)
    got = []
    for steps in ([0], [1, 2, 3]):
        for step in steps:
            _sgd_step(model, rec, step, X, Y)
        deadline = time.monotonic() + 10
        while len(got) < steps[-1] + 1 and time.monotonic() < deadline:
            got += rec.ready()
            time.sleep(0.001)
        assert [c.step for c in got] == list(range(steps[-1] + 1))
        time.sleep(0.05)  # long enough for the worker to go back to its idle sleep
    assert rec.pending == 0
    rec.close()


def _both(compiled_capture, make_model, steps, X, Y, loss_fn=None):
    """The records of the same SGD steps through the Python recorder and the compiled one (on the spot and
    on its worker), checked equal; returns the Python recorder's."""
    def train(model, rec):
        for step in steps:
            _sgd_step(model, rec, step, X, Y, loss_fn)
    return _each_recorder(compiled_capture, make_model, train)


def _each_recorder(compiled_capture, make_model, train):
    """train(model, recorder) through the Python recorder and the compiled one (on the spot and on its
    worker), each on a fresh model seeded alike: their records, checked equal; returns the Python one's."""
    out = []
    for make in (Recorder, lambda m: CompiledRecorder(m, compiled_capture, background=False),
                 lambda m: CompiledRecorder(m, compiled_capture, background=True)):
        torch.manual_seed(0)
        model = make_model()
        rec = make(model)
        train(model, rec)
        out.append(rec.flush())
        rec.close()
    for b in out[1:]:
        _assert_same_records(out[0], b)
    return out[0]


def _assert_same_records(a, b):
    assert [c.step for c in a] == [c.step for c in b]
    for x, y in zip(a, b):
        assert x.keys == y.keys and x.weights == y.weights
        assert x.loss == y.loss or (np.isnan(x.loss) and np.isnan(y.loss))
        for f in ("counts", "edges", "stats", "wratio"):
            assert np.array_equal(getattr(x, f), getattr(y, f), equal_nan=True), (x.step, f)


class Tanh(torch.nn.Module):  # watched: the recorder goes by the class name
    def forward(self, x):
        return torch.tanh(x)


def test_a_layer_called_twice_gets_the_gradient_of_its_last_output(compiled_capture):
    class Twice(torch.nn.Module):  # t(3 * t(x)): both calls output 0 of their node
        def __init__(self):
            super().__init__()
            self.lin, self.t, self.head = torch.nn.Linear(4, 8), Tanh(), torch.nn.Linear(8, 3)

        def forward(self, X):
            self.last = self.t(3 * self.t(self.lin(X)))
            self.last.retain_grad()  # the oracle
            return self.head(self.last)

    X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    models = []

    def make():
        models.append(Twice())
        return models[-1]
    (cap,) = _both(compiled_capture, make, [0], X, Y)
    (row,) = cap.layer_stats()
    last = models[0].last
    assert row["std"] == pytest.approx(last.std().item(), rel=1e-5)
    assert row["grad_std"] == pytest.approx(last.grad.std().item(), rel=1e-5)


def test_a_watched_output_no_loss_depends_on_has_no_gradient_row(compiled_capture):
    class Tanh(torch.nn.Module):  # watched; its output is chunk 0, and only chunk 1 reaches the loss
        def forward(self, x):
            return torch.tanh(x).chunk(2, dim=1)[0]

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.t, self.head = torch.nn.Linear(4, 8), Tanh(), torch.nn.Linear(4, 3)

        def forward(self, X):
            h = self.lin(X)
            chunks = torch.tanh(h).chunk(2, dim=1)
            for hook in self.t._forward_hooks.values():  # the recorder sees chunk 0 as the layer's output
                hook(self.t, (h,), chunks[0])
            return self.head(chunks[1])

    X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    (cap,) = _both(compiled_capture, M, [0], X, Y)
    assert ("act", "t") in cap.keys and ("agrad", "t") not in cap.keys


def test_loss_nan_and_one_step_number_captured_twice_are_kept_as_given(compiled_capture):
    def make():
        return torch.nn.Sequential(torch.nn.Linear(4, 8), Tanh(), torch.nn.Linear(8, 3))
    X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    caps = _both(compiled_capture, make, [0, 0, 1], X, Y, loss_fn=lambda out: out.sum() * float("nan"))
    assert [c.step for c in caps] == [0, 0, 1] and all(np.isnan(c.loss) for c in caps)


def test_finished_steps_do_not_hold_their_tensors(compiled_capture):
    # a caller that collects records only at the end: the steps' tensors must be released as they finish,
    # and by the training thread (a storage with a Python object takes the GIL to drop: the worker never does)
    import gc
    import threading
    import weakref

    for background in (False, True):
        torch.manual_seed(0)
        # wide enough that the worker is still counting when the step's last Python reference goes
        model = torch.nn.Sequential(torch.nn.Linear(4, 50_000), Tanh(), torch.nn.Linear(50_000, 3))
        rec = CompiledRecorder(model, compiled_capture, background=background)
        X, Y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        alive, dropped_on = [], []
        for step in range(4):
            h = {}
            handle = model[1].register_forward_hook(lambda m, i, o: h.update(s=o.untyped_storage()))
            _sgd_step(model, rec, step, X, Y)
            handle.remove()
            storage = h.pop("s")  # the watched output's, with a Python object: from here kept by the recorder only
            alive.append(weakref.ref(storage))
            weakref.finalize(storage, lambda: dropped_on.append(threading.get_ident()))
            del storage
            if background:
                while rec.pending:
                    pass
        gc.collect()
        # the last step's tensors may still be held (its job is the latest), none of the earlier ones
        assert sum(r() is not None for r in alive[:-1]) == 0, background
        rec.flush()
        assert sum(r() is not None for r in alive) == 0, background
        assert dropped_on == [threading.get_ident()] * 4, background
        rec.close()


def test_a_model_whose_captured_tensors_keep_changing_is_recorded_right(compiled_capture):
    # every step freezes another set of weights, so every step has another set of captured tensors: past
    # 16 of them the compiled recorder starts its layouts afresh, and its records stay the Python one's
    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(*[m for _ in range(5) for m in (torch.nn.Linear(6, 6), torch.nn.Tanh())],
                                   torch.nn.Linear(6, 3))
    X, Y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    out = []
    for make_rec in (Recorder, lambda m: CompiledRecorder(m, compiled_capture, background=False)):
        model = make()
        rec = make_rec(model)
        caps = []
        for step in range(24):
            for k, layer in enumerate(model[:-1:2]):  # the first five Linear layers, by the bits of step
                layer.weight.requires_grad_(bool(step >> k & 1))
            _sgd_step(model, rec, step, X, Y)
            caps += rec.flush()
        rec.close()
        out.append(caps)
    a, b = out
    assert len({c.keys for c in a}) > 16 and [c.step for c in a] == list(range(24))
    _assert_same_records(a, b)


def test_a_capture_step_left_after_its_forward_pass_leaves_nothing_behind(compiled_capture):
    # a step abandoned after its forward pass (a NaN loss ends a run there): the next capture step's
    # record holds only what that step saw
    class Branches(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.a, self.b, self.head = torch.nn.Linear(4, 8), Tanh(), Tanh(), torch.nn.Linear(8, 3)

        def forward(self, X):
            return self.head((self.a if self.branch == "a" else self.b)(self.lin(X)))

    X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))

    def train(model, rec):
        model.branch = "b"
        _sgd_step(model, rec, 0, X, Y)  # a finished step, then one left after its forward pass
        model.branch = "a"
        rec.begin(1)
        model(X)
        rec.after_forward()
        rec.capturing = False  # as Run does when the loss is not finite
        model.branch = "b"
        _sgd_step(model, rec, 2, X, Y)
    caps = _each_recorder(compiled_capture, Branches, train)  # (all three recorders' records are equal)
    assert [c.step for c in caps] == [0, 2]
    for c in caps:
        assert [k for k in c.keys if k[0] != "wgrad"] == [("act", "b"), ("agrad", "b")]


def test_an_interrupt_as_a_step_is_handed_over_does_not_mix_up_records(compiled_capture):
    # Ctrl-C landing just as C++ has taken a step (after_update returned, Python not yet past it): that
    # step's record still comes back whole, and every record keeps its own step's loss and tensors
    class Interrupting:  # the recorder's C++ object, interrupted once right after after_update returns
        def __init__(self, cx):
            self.cx, self.armed = cx, False

        def __getattr__(self, name):
            return getattr(self.cx, name)

        def after_update(self, *args):
            out = self.cx.after_update(*args)
            if self.armed:
                self.armed = False
                raise KeyboardInterrupt
            return out

    def make():
        return torch.nn.Sequential(torch.nn.Linear(4, 8), Tanh(), torch.nn.Linear(8, 3))
    X, Y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    out = []
    for background in (False, True):
        torch.manual_seed(0)
        model = make()
        rec = CompiledRecorder(model, compiled_capture, background=background)
        rec._cx = Interrupting(rec._cx)
        for step in range(4):
            rec._cx.armed = step == 1
            try:
                _sgd_step(model, rec, step, X, Y)
            except KeyboardInterrupt:
                pass
            if step == 2:
                out.append(rec.ready() + rec.flush())
        out[-1] += rec.flush()
        rec.close()
    torch.manual_seed(0)
    model = make()
    oracle = Recorder(model)
    for step in range(4):
        _sgd_step(model, oracle, step, X, Y)
    expected = oracle.flush()
    for caps in out:
        _assert_same_records(expected, caps)
