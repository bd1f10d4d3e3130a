"""
The dashboard driven headless with AppTest: real scripts, real worker processes,
real training (tiny runs). AppTest never fires run_every by itself, so a tick is
another .run().
"""

import json
import re

import pytest
from apptest import USE_DATA_DIR, manager, page, run_of, status, tick_until, with_data_path
from streamlit.proto.Metric_pb2 import Metric as MetricProto

from core.training.loop import PROBE_EVERY

pytestmark = USE_DATA_DIR


def live_svgs(at):
    """The live panels while a run trains: the server-drawn SVG the page shows inline."""
    return [m.value for m in at.markdown if m.value.startswith("<svg")]


def color(metric):
    return MetricProto.MetricColor.Name(metric.proto.color)


def test_home_lists_every_page_by_its_title():
    at = page("home")
    text = " ".join(m.value for m in at.markdown)
    missing = [title for title in ("micrograd", "Bigrams", "MLP", "Activations & gradients", "Backprop ninja",
                                   "WaveNet", "GPT", "Runs") if f"| **{title}** |" not in text]
    assert missing == []


def test_no_run_yet_shows_how_to_begin():
    at = page()
    assert any("press **Start**" in i.value for i in at.info)
    assert at.button(key="btn_stop").proto.disabled


def test_start_tick_histograms_diagnosis_finish_scrub_download():
    at = page(model="mlp", preset="raw", steps=400, capture_every=50)
    at.button(key="btn_start").click().run()
    assert not at.exception
    assert "run" in at.query_params
    tick_until(at, lambda a: "`finished`" in status(a), 90)
    charts = at.get("plotly_chart")
    assert len(charts) >= 6   # loss, activations, act grads, weight grads, update ratio, raster
    errors = " ".join(e.value for e in at.error)
    assert "The softmax is confidently wrong at initialization" in errors and "-ln(1/27) = 3.30" in errors
    # which step the diagnosis reads, and why that one (the status line's step runs ahead of the captures)
    assert any("**Diagnosis** at the latest capture, step 399; captures every 50 steps" in m.value
               for m in at.markdown)
    first = next(m for m in at.metric if m.label.startswith("First loss"))
    assert color(first) == "RED"   # ~27 against 3.30: the lecture's confidently wrong softmax
    assert "tanh units are saturated" in errors
    r = run_of(at)
    assert r["state"] == "finished" and r["step"] == 400
    # the scrubber: look at step 0 again
    scrub = at.select_slider[0]
    assert scrub.options[0] == "0" and scrub.options[-1] == "399"
    scrub.set_value(0).run()
    assert not at.exception
    assert any("**Diagnosis** at step 0 (the recorded step picked above)" in m.value for m in at.markdown)
    labels = [b.label for b in at.get("download_button")]
    assert {"Losses (CSV)", "Everything (JSON)", "Figures (HTML)"} <= set(labels)


def test_a_capture_between_probes_says_which_step_its_raster_is_from():
    at = page(model="mlp", preset="raw", steps=PROBE_EVERY + 15, capture_every=1)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 60)
    at.select_slider[0].set_value(PROBE_EVERY + 5).run()   # probes ran at steps 0, PROBE_EVERY and the last
    captions = " ".join(c.value for c in at.caption)
    assert (f"The raster is from step {PROBE_EVERY}: the probe batch runs at most every {PROBE_EVERY} steps."
            in captions)
    at.select_slider[0].set_value(PROBE_EVERY).run()
    assert "The raster is from step" not in " ".join(c.value for c in at.caption)


def test_pause_step_resume_stop_answer_at_once():
    at = page(model="deep", preset="deep-bn", steps=1_000_000, capture_every=100)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: run_of(a)["step"] > 0 and len(live_svgs(a)) == 1, 30)
    # while it trains: the six panels in one server-drawn SVG picture, not Plotly charts
    assert re.findall(r"data-panel='(\w+)'", live_svgs(at)[0]) == ["loss", "ud", "act", "agrad", "wgrad", "raster"]
    assert not at.get("plotly_chart")
    at.button(key="btn_pause").click().run()
    tick_until(at, lambda a: run_of(a)["state"] == "paused", 5)
    s0 = run_of(at)["step"]
    at.number_input(key="step_n").set_value(5).run()
    at.button(key="btn_step").click().run()
    tick_until(at, lambda a: run_of(a)["step"] == s0 + 5, 5)
    assert run_of(at)["state"] == "paused"
    at.button(key="btn_resume").click().run()
    tick_until(at, lambda a: run_of(a)["step"] > s0 + 50, 10)
    at.button(key="btn_stop").click().run()   # answers at once; the worker ends within a moment
    tick_until(at, lambda a: run_of(a)["state"] == "stopped", 20)
    at.button(key="btn_reset").click().run()
    assert "run" not in at.query_params and not at.exception


def test_a_reload_reattaches_to_the_running_run():
    at = page(model="mlp", preset="kaiming", steps=1_000_000)
    at.button(key="btn_start").click().run()
    run_id = at.query_params["run"]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    at2 = page(model="mlp", preset="kaiming", steps=1_000_000, run=run_id)  # a new session: a reload
    assert run_id in status(at2)
    manager().stop(run_id)


def test_compare_overlays_a_second_scenario():
    a = page(model="mlp", preset="raw", steps=200, capture_every=50)
    a.button(key="btn_start").click().run()
    tick_until(a, lambda x: "`finished`" in status(x), 60)
    first = run_of(a)["id"]
    b = page(model="mlp", preset="kaiming", steps=200, capture_every=50)
    b.button(key="btn_start").click().run()
    tick_until(b, lambda x: "`finished`" in status(x), 60)
    b.selectbox(key="compare_pick").set_value(first).run()
    assert not b.exception
    figs = {json.loads(c.proto.spec)["layout"]["title"]["text"].split(" at ")[0]: json.loads(c.proto.spec)
            for c in b.get("plotly_chart")}
    names = lambda title: [t.get("name", "") for t in figs[title]["data"]]
    assert "B: mlp/raw (smoothed)" in names("loss (log10)") and "mlp/kaiming (smoothed)" in names("loss (log10)")
    assert any(n.startswith("[B] h (tanh)") for n in names("activations"))


@pytest.mark.parametrize("params,needle", [
    (dict(lr=-1), "lr must be between"),
    (dict(lr=0), "lr must be between"),
    (dict(n_hidden=0), "n_hidden must be between"),
    (dict(batch_size=0), "batch size"),
    (dict(n_hidden=4096, n_embd=1024), "over the cap"),
])
def test_bad_hyperparameters_show_an_error_and_disable_start(params, needle):
    at = page(model="mlp", preset="raw", **params)
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="btn_start").proto.disabled


def test_nan_in_a_link_falls_back_with_a_warning():
    # the number field itself refuses NaN (Streamlit keeps the old value); a link can still carry one
    at = page(model="mlp", preset="raw", lr="nan", n_hidden="abc")
    assert any("lr='nan' is not a finite number; using 0.1" in w.value for w in at.warning)
    assert any("n_hidden='abc'" in w.value for w in at.warning)
    assert at.number_input(key="ctl_lr_mlp").value == 0.1 and not at.button(key="btn_start").proto.disabled


def test_a_bad_data_file_is_refused_in_the_sidebar(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    at, (errors, _) = with_data_path(blob, model="mlp", preset="raw")
    assert any("binary" in e for e in errors)
    assert any("Dataset:" in e.value for e in at.error) and at.button(key="btn_start").proto.disabled


def test_running_text_is_refused_for_a_word_model_but_fine_for_gpt(shakespeare_path):
    at, (errors, captions) = with_data_path(shakespeare_path, model="mlp", preset="raw")
    assert not errors and any("running text (GPT only)" in c for c in captions)
    assert any("It can still train the GPT" in e.value for e in at.error)


def test_names_txt_from_a_path_gives_the_lectures_first_loss(names_path):
    at, (_, captions) = with_data_path(names_path, model="mlp", preset="raw", steps=1)
    assert any("32,033 lines" in c for c in captions)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 60)
    first = {m.label: m.value for m in at.metric}["First loss vs −ln(1/vocab_size)"]
    assert first.startswith("27.88"), first   # the lecture's 27.8817


def test_the_server_cap_answers_with_a_clear_message():
    page("home")  # the server's manager, as the app builds it
    mgr = manager()
    spec = {"model": "mlp", "preset": "raw", "model_kw": {}, "train": {"steps": 10_000_000},
            "data": {"kind": "ssa"}}
    ids = [mgr.start(spec, "filler") for _ in range(mgr.max_live)]
    try:
        at = page(model="mlp", preset="raw")
        at.button(key="btn_start").click().run()
        assert any("the cap is" in e.value for e in at.error)
    finally:
        for i in ids:
            mgr.stop(i)


def test_runs_page_lists_opens_and_deletes():
    at = page(model="mlp", preset="fix-tanh", steps=50)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 60)
    run_id = run_of(at)["id"]
    runs = at.switch_page("views/runs.py").run()   # the same session: its own run may be deleted
    assert run_id in runs.dataframe[0].value["id"].tolist()
    runs.selectbox(key="runs_pick").set_value(run_id).run()
    runs.button(key="runs_delete").click().run()
    assert not runs.exception
    assert manager().db.get_run(run_id) is None


def test_a_healthy_first_loss_is_not_coloured_red():
    at = page(model="mlp", preset="kaiming", steps=3, capture_every=1)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 60)
    first = next(m for m in at.metric if m.label.startswith("First loss"))
    delta = float(first.delta.split()[0].replace("−", "-"))
    assert abs(delta) < 0.5 and color(first) == "GRAY", (first.delta, color(first))


def test_a_model_without_a_kind_of_layer_gets_no_empty_panel_or_table():
    # GPT's one-head step: attention and a linear head, no tanh, ReLU or norm layer to histogram
    at = page("gpt", preset="one-head", steps=30, capture_every=10)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 120)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any(t.startswith("weight gradients at step") for t in titles)
    assert not any(t.startswith(("activations at step", "activation gradients at step")) for t in titles)
    tables = [df.value for df in at.dataframe]
    assert any("weight" in t.columns for t in tables) and not any("layer" in t.columns for t in tables)


def test_presentation_mode_from_the_link_and_the_toggle():
    at = page(model="mlp", preset="raw", present=1)
    assert at.toggle(key="present_toggle").value is True
    assert at.expander[0].label == "Scenario and hyperparameters"   # the scenario folds into one line
    at.toggle(key="present_toggle").set_value(False).run()
    assert "present" not in at.query_params and not at.exception
    assert at.expander[0].label == "Hyperparameters"
    at.toggle(key="present_toggle").set_value(True).run()
    assert at.query_params["present"] in ("1", ["1"])
