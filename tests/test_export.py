"""TensorBoard export: a real run written with tensorboard's own writer, read back with its own reader."""

import json
import math
import zipfile
from io import BytesIO

import numpy as np
import pytest
from apptest import USE_DATA_DIR, page
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import assert_one_line_error, run_cli

from core.capture.record import UD
from core.runs import export
from core.runs.db import RunDB
from core.runs.spec import build_job
from core.runs.store import RunStore
from core.training.loop import Run

EVERYTHING = {"scalars": 0, "histograms": 0, "tensors": 0}  # the reader keeps every event, not a sample


@pytest.fixture(scope="module")
def trained(names_path, tmp_path_factory):
    """A deep BatchNorm run with evals, captures and an intervention, in a runs file of its own."""
    db = RunDB(tmp_path_factory.mktemp("tb") / "runs.sqlite")
    s = {"model": "deep", "preset": "deep-bn", "train": {"steps": 120, "capture_every": 20, "eval_every": 50},
         "data": {"kind": "file", "path": str(names_path)}, "interventions": ["60:lr:0.01"]}
    model, batches, cfg, probe, _, _ = build_job(s)
    run = Run(model, batches, cfg, store=RunStore(db, name="deep/deep-bn"), probe=probe,
              interventions=s["interventions"])
    run.run()
    run.store.flush()
    return db, run.store.run_id


def read(folder):
    ea = EventAccumulator(str(folder), size_guidance=EVERYTHING)
    ea.Reload()
    return ea


def test_scalars_match_the_run_step_for_step(trained, tmp_path):
    db, run_id = trained
    folder, counts = export.tensorboard(db, run_id, tmp_path)
    ea = read(folder)
    steps, loss, lr = db.steps_since(run_id)
    train = ea.Scalars("loss/train")
    assert [e.step for e in train] == steps.tolist() == list(range(120))
    assert np.array_equal([e.value for e in train], loss.astype(np.float32))  # simple_value is a float32
    assert [e.value for e in ea.Scalars("lr")][58:62] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    evals = db.evals(run_id)
    assert [(e.step, e.value) for e in ea.Scalars("loss/val")] == [(s, pytest.approx(v)) for s, _, v in evals]
    assert [e.step for e in ea.Scalars("loss/train_eval")] == [50, 100, 120]
    caps = db.captures_after(run_id, -1)
    ud = ea.Scalars("update:data/3 Linear.weight")
    w = [n for n, _ in caps[0].weights].index("3 Linear.weight")
    assert [(e.step, e.value) for e in ud] == [(c.step, pytest.approx(float(c.wratio[w, UD]))) for c in caps]
    assert counts["scalars"] == sum(len(ea.Scalars(t)) for t in ea.Tags()["scalars"])


def test_a_histograms_buckets_are_the_recorded_counts(trained, tmp_path):
    db, run_id = trained
    folder, counts = export.tensorboard(db, run_id, tmp_path)
    ea = read(folder)
    caps = db.captures_after(run_id, -1)
    events = ea.Histograms("activations/2 Tanh")
    assert [e.step for e in events] == [c.step for c in caps] == [0, 20, 40, 60, 80, 100, 119]
    for e, cap in zip(events, caps):
        i = cap.keys.index(("act", "2 Tanh"))
        h = e.histogram_value
        assert h.bucket == cap.counts[i].tolist()       # under, the 64 bins, over
        assert h.bucket_limit[0] == pytest.approx(float(cap.edges[i, 0]))   # the under bucket ends at lo
        assert h.bucket_limit[-2] == pytest.approx(float(cap.edges[i, 1]))  # the last bin ends at hi
        assert h.num == cap.counts[i].sum()
    assert {t.split("/")[0] for t in ea.Tags()["histograms"]} == {"activations", "activation_grads",
                                                                 "weight_grads"}
    assert counts["histograms"] == sum(len(ea.Histograms(t)) for t in ea.Tags()["histograms"])


def test_the_intervention_is_a_text_entry_at_its_step(trained, tmp_path):
    db, run_id = trained
    folder, counts = export.tensorboard(db, run_id, tmp_path)
    (event,) = read(folder).Tensors("interventions")
    assert event.step == 60 and event.tensor_proto.string_val == [b"step 60: lr:0.01"]
    assert counts["interventions"] == 1


def test_a_second_export_replaces_the_first(trained, tmp_path):
    db, run_id = trained
    folder, _ = export.tensorboard(db, run_id, tmp_path)
    folder2, _ = export.tensorboard(db, run_id[:6], tmp_path)  # the start of an id is enough
    assert folder == folder2 and len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert len(read(folder).Scalars("loss/train")) == 120
    with zipfile.ZipFile(BytesIO(export.zipped(folder))) as z:
        assert [n.split("/")[0] for n in z.namelist()] == [folder.name]


def test_an_unknown_run_is_one_clear_line(trained, tmp_path):
    db, _ = trained
    with pytest.raises(ValueError, match="no run 'nope' in"):
        export.tensorboard(db, "nope", tmp_path)


def test_a_diverged_runs_nan_losses_stay_nan(names_path, tmp_path):
    db = RunDB(tmp_path / "runs.sqlite")
    model, batches, cfg, _, _, _ = build_job({"model": "mlp", "preset": "raw", "train": {"steps": 50},
                                              "data": {"kind": "file", "path": str(names_path)}})
    run = Run(model, batches, cfg, store=RunStore(db, name="mlp/raw"), interventions=["3:scale:W2:1e38"])
    run.run()  # logits overflow to inf at step 3: the loss is NaN
    run.store.flush()
    assert run.state == "diverged" and run.diverged_at == 3
    folder, _ = export.tensorboard(db, run.store.run_id, tmp_path / "tb")
    values = [e.value for e in read(folder).Scalars("loss/train")]
    assert len(values) == run.diverged_at + 1 and math.isnan(values[-1])


def test_cli_export_writes_what_tensorboard_reads(names_path, tmp_path):
    code, out, err = run_cli("train", "--model", "mlp", "--data", str(names_path), "--steps", "30",
                             "--capture-every", "10", "--json")
    assert code == 0, err
    run_id = json.loads(out.strip().splitlines()[-1])["run"]
    code, out, err = run_cli("export", run_id, "--tensorboard", str(tmp_path))
    assert code == 0, err
    assert "tensorboard --logdir" in out
    (folder,) = tmp_path.iterdir()
    ea = read(folder)
    assert len(ea.Scalars("loss/train")) == 30 and len(ea.Histograms("activations/h")) == 4  # 0, 10, 20, 29


def test_cli_export_of_an_unknown_run_is_one_line(tmp_path):
    assert_one_line_error(*run_cli("export", "nope", "--tensorboard", str(tmp_path)), "no run 'nope'")


@USE_DATA_DIR
def test_the_runs_page_button_exports_the_picked_run(names_path):
    model, batches, cfg, _, _, _ = build_job({"model": "mlp", "preset": "kaiming", "train": {"steps": 20},
                                              "data": {"kind": "file", "path": str(names_path)}})
    run = Run(model, batches, cfg)  # the runs file of this module's app (ZTH_DATA_DIR)
    run.run()
    run.close()
    at = page("runs")
    at.selectbox(key="runs_pick").set_value(run.store.run_id).run()
    at.button(key="runs_tensorboard").click().run()
    assert not at.exception
    assert any(s.value.startswith("Wrote ") for s in at.success), [s.value for s in at.success]
    folder = RunDB().path.parent / "tensorboard" / export.run_folder(RunDB().get_run(run.store.run_id))
    assert len(read(folder).Scalars("loss/train")) == 20
