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


def test_the_worker_keeps_up_and_flush_waits_for_it(compiled_capture):
    # many capture steps queued on the worker: flush() returns every record, in step order
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(50, 400), torch.nn.Tanh(), torch.nn.Linear(400, 5))
    rec = CompiledRecorder(model, compiled_capture, background=True)
    X, Y = torch.randn(256, 50), torch.randint(0, 5, (256,))
    for step in range(40):
        rec.begin(step)
        loss = torch.nn.functional.cross_entropy(model(X), Y)
        rec.after_forward()
        model.zero_grad(set_to_none=True)
        loss.backward()
        rec.after_backward(loss.item())
        rec.before_update()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        rec.after_update()
    caps = rec.flush()
    assert [c.step for c in caps] == list(range(40)) and rec.pending == 0
    assert all(c.counts[0].sum() == 256 * 400 for c in caps)  # the tanh output, every value counted
    rec.close()
