"""Interventions mid-run: each action on a real model, exact replay, the CLI, a real worker process, the
markers on the charts and the page's control."""

import json
import time

import numpy as np
import pytest
import torch
from apptest import USE_DATA_DIR, page, run_of, tick_until
from test_cli import assert_one_line_error, run_cli

from core.runs.db import RunDB
from core.runs.manager import RunManager
from core.runs.spec import SpecError, build_job, check_spec
from core.training.interventions import InterventionError, from_list, parse, replay_spec
from core.training.loop import Run
from dashboard.plot import charts, svg


def spec(names_path, model="mlp", preset="kaiming", interventions=None, **train):
    s = {"model": model, "preset": preset, "model_kw": {},
         "train": {"steps": 60, "capture_every": 10, **train}, "data": {"kind": "file", "path": str(names_path)}}
    if interventions is not None:
        s["interventions"] = interventions
    return s


def make_run(s):
    model, batches, cfg, probe, _, _ = build_job(s)
    return Run(model, batches, cfg, probe=probe, interventions=s.get("interventions"))


def params(run):
    return {n: p.detach().clone() for n, p in run.model.named_parameters()}


# -----------------------------------------------------------------------------
# each action on a real model


def test_scale_multiplies_one_weight_and_nothing_else(names_path):
    run = make_run(spec(names_path))
    run.advance(5)
    before = params(run)
    iv = run.intervene("scale:W1:0.5")
    after = params(run)
    assert iv.step == 5 and torch.equal(after["W1"], before["W1"] * 0.5)
    assert all(torch.equal(after[n], before[n]) for n in before if n != "W1")
    run.intervene("scale:hpreact:2")  # the layer the CLI's JSON names: its weight is W1
    assert torch.equal(params(run)["W1"], before["W1"] * 0.5 * 2)
    assert run.store.meta["interventions"] == [dict(step=5, action="scale", args=["W1", 0.5]),
                                               dict(step=5, action="scale", args=["hpreact", 2.0])]


def test_a_batchnorm_layer_name_scales_its_gain(names_path):
    run = make_run(spec(names_path, "deep", "deep-bn", steps=20))
    run.advance(3)
    gamma = params(run)["1 BatchNorm1d.gamma"]
    run.intervene("scale:1 BatchNorm1d:3")
    assert torch.equal(params(run)["1 BatchNorm1d.gamma"], gamma * 3)


def test_reinit_draws_from_the_original_init_and_constants_come_back_exactly(names_path):
    run = make_run(spec(names_path, "deep", "deep-bn", steps=40))
    w0 = params(run)["3 Linear.weight"]
    run.advance(30)
    trained = params(run)
    assert not torch.equal(trained["4 BatchNorm1d.gamma"], torch.ones(100))
    run.intervene("reinit:3 Linear")
    run.intervene("reinit:4 BatchNorm1d")  # a whole layer: gamma and beta
    now = params(run)
    assert torch.equal(now["4 BatchNorm1d.gamma"], torch.ones(100))
    assert torch.equal(now["4 BatchNorm1d.beta"], torch.zeros(100))
    w = now["3 Linear.weight"]
    assert not torch.equal(w, trained["3 Linear.weight"]) and not torch.equal(w, w0)  # a fresh draw...
    assert abs(w.std().item() / w0.std().item() - 1) < 0.03                        # ...of the same init


def test_reinit_kaiming_has_kaimings_std(names_path):
    run = make_run(spec(names_path, "mlp", "raw"))
    run.advance(2)
    run.intervene("reinit:W1:kaiming")
    std = params(run)["W1"].std().item()
    assert abs(std / ((5 / 3) / 30**0.5) - 1) < 0.05  # gain 5/3 for tanh over sqrt(fan_in = 3 * 10)


def test_lr_0_freezes_the_weights_and_holds_against_the_decay(names_path):
    s = spec(names_path, interventions=["10:lr:0"], steps=40, lr_decay_step=20, lr_final=0.05)
    run = make_run(s)
    start = params(run)
    run.advance(10)
    at_10 = params(run)
    run.run()
    end = params(run)
    assert all(not torch.equal(start[n], at_10[n]) for n in start)  # it trained before the intervention
    assert all(torch.equal(at_10[n], end[n]) for n in at_10)        # not a bit after, decay or not
    _, _, lr = run.store.losses()
    assert list(lr[:10]) == [0.1] * 10 and list(lr[10:]) == [0.0] * 30


def test_bn_train_sets_the_sampling_mode(names_path):
    run = make_run(spec(names_path, "deep", "deep-bn", steps=10))
    assert run.interventions.sample_mode == "eval"
    run.intervene("bn:train")
    assert run.interventions.sample_mode == "train"
    run.intervene("bn:eval")
    assert run.interventions.sample_mode == "eval"


# -----------------------------------------------------------------------------
# replay


def test_the_same_interventions_give_identical_numbers_and_none_give_others(names_path):
    ivs = ["20:scale:W1:0.2", "30:reinit:W2", "40:lr:0.01"]
    a, b, none = (make_run(spec(names_path, interventions=x)) for x in (ivs, list(ivs), None))
    for r in (a, b, none):
        r.run()
    la, lb, ln = (r.store.losses()[1] for r in (a, b, none))
    assert np.array_equal(la, lb) and a.final == b.final
    assert np.array_equal(la[:20], ln[:20])  # the same numbers up to the boundary before step 20...
    assert la[20] != ln[20]                   # ...whose forward pass already sees the smaller W1
    assert a.store.meta["interventions"] == [dict(step=20, action="scale", args=["W1", 0.2]),
                                             dict(step=30, action="reinit", args=["W2"]),
                                             dict(step=40, action="lr", args=[0.01])]


def test_a_live_intervention_replays_from_its_record(names_path):
    s = spec(names_path)
    live = make_run(s)
    live.advance(17)
    live.intervene("reinit:W1:kaiming")
    live.advance(8)
    live.intervene("scale:C:1.5")
    live.run()
    again = make_run(replay_spec(s, live.store.meta["interventions"]))
    again.run()
    assert np.array_equal(live.store.losses()[1], again.store.losses()[1])


# -----------------------------------------------------------------------------
# bad input: one clear line


@pytest.mark.parametrize("text,needle", [
    ("5:scale:W9:2", "unknown layer 'W9'"),
    ("5:scale:h:2", "layer 'h' has no weights of its own"),
    ("5:scale:W1:abc", "scale's k must be a number"),
    ("5:scale:W1", "scale is written scale:W1:0.5"),
    ("5:lr:-1", "the learning rate must be a finite number from 0"),
    ("5:lr:nan", "the learning rate must be a finite number"),
    ("5:reinit:b1:kaiming", "Kaiming's init draws a 2-D weight; 'b1'"),
    ("5:reinit:W1:xavier", "reinit takes the original init or kaiming"),
    ("5:bn:train", "has no BatchNorm layer"),
    ("5:grow:W1", "unknown intervention 'grow'"),
    ("five:lr:0", "an intervention is STEP:ACTION"),
    ("-1:lr:0", "step must be a whole number >= 0"),
])
def test_a_bad_intervention_is_one_clear_line(names_path, text, needle):
    with pytest.raises(ValueError) as e:
        build_job(spec(names_path, "mlp", "raw", interventions=[text]))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_an_intervention_after_the_last_step_is_refused(names_path):
    with pytest.raises(SpecError, match="comes after the run's last step"):
        check_spec(spec(names_path, interventions=["60:lr:0"]))


def test_a_finished_run_takes_no_intervention(names_path):
    run = make_run(spec(names_path, steps=3))
    run.run()
    with pytest.raises(InterventionError, match="the run has finished"):
        run.intervene("lr:0")


def test_text_and_records_read_alike():
    assert from_list(["7:scale:W1:0.5", {"step": 3, "action": "lr", "args": [0]}]) == [
        parse("3:lr:0"), parse("7:scale:W1:0.5")]
    assert parse("7:scale:W1:0.5").command() == "scale:W1:0.5" and parse("0:lr:0.001").label() == "lr 0.001"


# -----------------------------------------------------------------------------
# the CLI


def cli_losses(names_path, *intervene):
    args = ["train", "--model", "mlp", "--preset", "kaiming", "--data", str(names_path), "--steps", "60",
            "--json"]
    for iv in intervene:
        args += ["--intervene", iv]
    code, out, err = run_cli(*args)
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    return res, RunDB().steps_since(res["run"])[1]  # the CLI's run, in this test session's runs file


def test_cli_intervene_is_listed_and_replays(names_path):
    res, a = cli_losses(names_path, "30:scale:W1:0.5", "40:lr:0")
    _, b = cli_losses(names_path, "30:scale:W1:0.5", "40:lr:0")
    _, none = cli_losses(names_path)
    assert res["interventions"] == [dict(step=30, action="scale", args=["W1", 0.5]),
                                    dict(step=40, action="lr", args=[0.0])]
    assert len(a) == 60 and np.array_equal(a, b)
    assert np.array_equal(a[:30], none[:30]) and a[30] != none[30]


def test_cli_unknown_layer_is_one_line(names_path):
    code, out, err = run_cli("train", "--model", "mlp", "--data", str(names_path), "--steps", "10",
                             "--intervene", "5:scale:W7:2")
    assert_one_line_error(code, out, err, "unknown layer 'W7'")


# -----------------------------------------------------------------------------
# a real worker process


def wait_for(db, run_id, pred, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        r = db.get_run(run_id)
        if pred(r):
            return r
        time.sleep(0.05)
    raise AssertionError(f"timed out: {db.get_run(run_id)['state']} at step {db.get_run(run_id)['step']}")


def test_the_worker_applies_a_pages_intervention_and_it_replays(tmp_path, names_path):
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=60)
    try:
        s = spec(names_path, steps=50)
        run_id = m.start(s, "iv", paused=True)
        wait_for(m.db, run_id, lambda r: r["state"] == "paused")
        m.send(run_id, "step:20")
        wait_for(m.db, run_id, lambda r: r["step"] == 20 and r["state"] == "paused")
        m.send(run_id, "intervene:scale:W1:0.3")
        wait_for(m.db, run_id, lambda r: r["meta"].get("interventions"))
        m.send(run_id, "intervene:scale:W5:2")  # a bad one: a message for the page, the run goes on
        r = wait_for(m.db, run_id, lambda r: r["meta"].get("intervention_error"))
        assert "unknown layer 'W5'" in r["meta"]["intervention_error"]
        m.send(run_id, "resume")
        r = m.wait(run_id, 60)
        assert r["state"] == "finished"
        assert r["meta"]["interventions"] == [dict(step=20, action="scale", args=["W1", 0.3])]
        _, loss, _ = m.db.steps_since(run_id)
    finally:
        m.stop_all()
    again = make_run(replay_spec(s, r["meta"]["interventions"]))
    again.run()
    assert np.array_equal(loss, again.store.losses()[1])


# -----------------------------------------------------------------------------
# markers on the time charts


def test_markers_are_in_the_plotly_figures_and_the_live_svg():
    steps = np.arange(100)
    marks = [(40, "W1 ×0.5"), (70, "lr 0")]
    loss = charts.loss_figure([("run", steps, np.linspace(3, 2, 100), [])], markers=marks)
    ud = charts.update_ratio_figure((np.arange(0, 100, 10), ["W1"], np.full((10, 1), -3.0)), markers=marks)
    for fig in (loss, ud):
        lines = [s for s in fig["layout"]["shapes"] if s["xref"] == "x"]
        assert [(s["x0"], s["x1"]) for s in lines] == [(40, 40), (70, 70)]
        assert {a["text"] for a in fig["layout"]["annotations"]} >= {"W1 ×0.5", "lr 0"}
    picture = svg.grid_svg([("loss", loss), ("ud", ud)], cols=1)
    assert picture.count("class='marker'") == 4 and picture.count("W1 ×0.5") == 2
    none = svg.figure_svg(charts.loss_figure([("run", steps, np.linspace(3, 2, 100), [])]))
    assert "class='marker'" not in none
    # the WaveNet page's windowed loss and the GPT page's estimates mark them too
    window = charts.window_loss_figure([("run", np.arange(3000), np.linspace(3, 2, 3000), [])], markers=marks)
    est = charts.eval_figure([(0, 3.0, 3.1), (50, 2.5, 2.6), (99, 2.2, 2.3)], markers=marks)
    for fig in (window, est):
        assert [(s["x0"], s["x1"]) for s in fig["layout"]["shapes"] if s["xref"] == "x"] == [(40, 40), (70, 70)]


def test_a_marker_sits_at_its_step_on_the_svgs_axis():
    fig = charts.loss_figure([("run", np.arange(101), np.linspace(3, 2, 101), [])], markers=[(50, "lr 0")])
    body = svg.figure_svg(fig)
    x = float(body.split("class='marker'")[0].rsplit("d='M", 1)[1].split(" ")[0])
    left = float(body.split("<rect x='")[1].split("'")[0])
    width = float(body.split("<rect x='")[1].split("width='")[1].split("'")[0])
    assert abs((x - left) / width - 0.5) < 0.01  # step 50 of 0..100: the middle of the plot


# -----------------------------------------------------------------------------
# the page's control


def marked(at, label):
    """Is the marker's label on the page: in the live SVG while it ticks, or in a Plotly chart's layout?"""
    texts = [a["text"] for c in at.get("plotly_chart")
             for a in json.loads(c.proto.spec)["layout"].get("annotations", [])]
    return label in texts or any(label in m.value for m in at.markdown if m.value.startswith("<svg"))


@USE_DATA_DIR
def test_the_intervene_control_sends_an_intervention_and_the_chart_marks_it():
    at = page(model="mlp", preset="kaiming", steps=1_000_000, capture_every=50)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: run_of(a)["step"] > 60, 60)
    at.button(key="btn_pause").click().run()
    tick_until(at, lambda a: run_of(a)["state"] == "paused", 10)
    at.run()  # the paused page: its controls now show the run as it stands
    at.selectbox(key="iv_action").set_value("scale its weights by k").run()
    at.selectbox(key="iv_layer").set_value("W1").run()
    at.number_input(key="iv_k").set_value(0.25).run()
    at.button(key="iv_apply").click().run()
    tick_until(at, lambda a: run_of(a)["meta"].get("interventions"), 10)
    r = run_of(at)
    assert r["meta"]["interventions"] == [dict(step=r["step"], action="scale", args=["W1", 0.25])]
    tick_until(at, lambda a: marked(a, "W1 ×0.25"), 10)
    assert any("Applied: step" in c.value and "runs start replay.json" in c.value for c in at.caption)
    assert any(b.proto.label == "replay.json" for b in at.get("download_button"))
    at.button(key="btn_stop").click().run()


@pytest.mark.parametrize("model,preset,data", [("mlp", "batchnorm", "names"), ("gpt", "small", "shakespeare")])
def test_sampling_mid_run_even_in_training_mode_does_not_change_the_run(model, preset, data, names_path,
                                                                        shakespeare_path):
    # BatchNorm's running statistics (mlp) and dropout's global RNG (a GPT with dropout) must come back
    from core.runs.worker import _samples
    path = names_path if data == "names" else shakespeare_path
    s = {"model": model, "preset": preset, "model_kw": {"dropout": 0.2} if model == "gpt" else {},
         "train": {"steps": 40, "capture_every": 10}, "data": {"kind": "file", "path": str(path)}}
    runs = []
    for sample in (False, True):
        model_, batches, cfg, probe, info, _ = build_job(s)
        run = Run(model_, batches, cfg, probe=probe)
        run.advance(20)
        if sample:
            got = _samples(run, info, 5, train_mode=True)
            assert got["words"] or got.get("error")
        run.run()
        runs.append(run)
    (a, b) = runs
    assert np.array_equal(a.store.losses()[1], b.store.losses()[1]) and a.final == b.final


def test_two_layers_reinitialised_at_one_step_draw_different_values(names_path):
    run = make_run(spec(names_path, model="deep", preset="deep-tanh"))
    run.advance(10)
    run.intervene("reinit:2 Linear.weight")
    run.intervene("reinit:4 Linear.weight")
    p = params(run)
    assert p["2 Linear.weight"].shape == p["4 Linear.weight"].shape
    assert not torch.allclose(p["2 Linear.weight"], p["4 Linear.weight"])
