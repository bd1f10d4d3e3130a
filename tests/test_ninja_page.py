"""
The Backprop ninja page driven headless with AppTest through the real router: the lecture's
numbers on names.txt, picking a tensor, the table, the closed forms, and a short side-by-side
training of the manual and autograd runs in real worker processes. AppTest never fires
run_every by itself, so a tick is another .run().
"""

import json
import time

import apptest
from apptest import USE_DATA_DIR, with_data_path
from apptest import page as app_page

pytestmark = USE_DATA_DIR


def page(path=None, **params):
    """The ninja page; with a path, the sidebar's dataset is that file (set before the first run)."""
    if path is None:
        return app_page("ninja", **params)
    at, _ = with_data_path(path, "ninja", **params)
    ok(at)
    return at


def ok(at):
    assert not at.exception, at.exception


def text(at):
    return "\n".join(m.value for m in at.markdown)


def metrics(at):
    return {m.label: m.value for m in at.metric}


def figure_titles(at):
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def manager():
    return apptest.manager()


def test_the_lectures_network_and_table_on_names_txt(names_path):
    at = page(names_path)
    assert "**4,137 parameters**" in text(at)
    assert "182,625 / 22,655 / 22,866 examples" in text(at)
    assert f"Its loss is **{3.5571:.4f}**" in text(at)  # the lecture's first batch with seed 2147483647
    table = at.dataframe[0].value
    assert table["tensor"].tolist()[:3] == ["dlogprobs", "dprobs", "dcounts_sum_inv"]
    assert table["tensor"].tolist()[-1] == "dC" and len(table) == 26
    exact = dict(zip(table["tensor"], table["exact"]))
    assert exact["dlogprobs"] and exact["db2"] and not exact["dhpreact"] and not exact["dC"]
    assert table["approximate"].all() and table["maxdiff"].max() < 1e-8
    # the selected tensor's check, and the three gradient pictures (exercise 1, 2, 3)
    assert metrics(at)["exact"] == "True" and metrics(at)["max difference"] == "0"
    assert sum("dlogits" in t for t in figure_titles(at)) >= 1 and len(at.get("plotly_chart")) == 3
    assert any("dlogprobs[range(n), Yb] = -1.0/n" in c.value for c in at.code)


def test_picking_a_tensor_shows_its_formula_and_an_honest_verdict(names_path):
    at = page(names_path)
    at.selectbox(key="nj_tensor").set_value("hpreact").run()
    ok(at)
    m = metrics(at)
    assert m["exact"] == "False" and m["approximate"] == "True" and float(m["max difference"]) < 1e-8
    assert any("dhpreact = (1.0 - h**2) * dh" in c.value for c in at.code)
    assert any("not bit-for-bit" in i.value for i in at.info)
    assert at.query_params["tensor"] in ("hpreact", ["hpreact"])
    assert any(r"\texttt{dhpreact}" in lx.value for lx in at.latex)


def test_a_link_to_a_tensor_opens_it_and_a_bad_one_falls_back():
    at = page(tensor="C")
    assert at.selectbox(key="nj_tensor").value == "C"
    assert any("dC[ix] += demb[k,j]" in c.value for c in at.code)
    at = page(tensor="nonsense")
    assert at.selectbox(key="nj_tensor").value == "logprobs"


def test_closed_forms_are_shown_with_their_checks():
    at = page()
    assert any("dlogits[range(n), Yb] -= 1" in c.value for c in at.code)
    assert any("n/(n-1)*bnraw*(dhpreact*bnraw).sum(0)" in c.value for c in at.code)
    m = metrics(at)
    assert m["dlogits approximate"] == "True" and float(m["dlogits max difference"]) < 1e-8
    assert m["dhprebn approximate"] == "True" and float(m["dhprebn max difference"]) < 1e-8
    assert float(m["hpreact_fast vs hpreact"]) < 1e-4


def test_running_text_is_refused_with_a_clear_error(shakespeare_path):
    at = page(shakespeare_path)
    assert any("one word per line" in e.value for e in at.error)
    assert not at.get("plotly_chart")


def test_train_both_tracks_autograd_live(names_path):
    at = page(names_path)
    assert any("Train both" in i.value for i in at.info)
    at.number_input(key="nj_steps").set_value(300).run()
    at.button(key="nj_start").click().run()
    ok(at)
    raw = at.query_params["ninja_runs"]
    ids = (raw[0] if isinstance(raw, list) else raw).split(",")
    assert len(ids) == 2
    t0 = time.time()
    while time.time() - t0 < 90:
        time.sleep(0.5)
        at.run()
        ok(at)
        if text(at).count("`finished`") == 2:
            break
    assert text(at).count("`finished`") == 2, text(at)
    runs = [manager().db.get_run(i) for i in ids]
    assert [r["name"] for r in runs] == ["ninja/manual", "ninja/autograd"]
    assert all(r["step"] == 300 and r["spec"]["data"]["kind"] == "file" for r in runs)
    m = metrics(at)
    assert m["steps both have run"] == "300" and float(m["largest loss gap so far"]) < 1e-4
    titles = figure_titles(at)
    assert "loss (log10)" in titles and any(t.startswith("|loss with manual gradients") for t in titles)
    loss = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if json.loads(c.proto.spec)["layout"]["title"]["text"] == "loss (log10)")
    names = [t.get("name", "") for t in loss["data"]]
    assert "ninja/manual (step)" in names and "ninja/autograd (step)" in names
    assert "final train" in text(at)
    assert at.button(key="nj_stop").proto.disabled
    assert all(r["meta"]["pair"] == ids for r in runs)
    # the Runs page opens either run of the pair back on this page, with both runs
    runs_page = app_page("runs")
    runs_page.selectbox(key="runs_pick").set_value(ids[1]).run()
    runs_page.button(key="runs_open").click().run()
    ok(runs_page)
    assert runs_page.selectbox(key="nj_tensor").value == "logprobs"  # it is the ninja page
    assert text(runs_page).count("`finished`") == 2 and ids[0] in text(runs_page)


def test_train_both_stops_the_sessions_run_on_another_page():
    at = page()
    at.session_state["session_id"] = "ninja-test"  # this browser session, as state.session_id() reads it
    mgr = manager()
    spec = {"model": "mlp", "preset": "raw", "model_kw": {}, "train": {"steps": 10_000_000},
            "data": {"kind": "ssa"}}
    other = mgr.start(spec, "mlp/raw", session="ninja-test")
    try:
        at.number_input(key="nj_steps").set_value(100_000).run()
        at.button(key="nj_start").click().run()
        ok(at)
        assert mgr.db.get_run(other)["state"] == "stopped"
        raw = at.query_params["ninja_runs"]
        ids = (raw[0] if isinstance(raw, list) else raw).split(",")
        assert {r["id"] for r in mgr.db.live_runs()} == set(ids)
        at.button(key="nj_stop").click().run()
        ok(at)
        assert not mgr.db.live_runs()
    finally:
        mgr.stop_all()


def test_train_both_needs_two_free_slots():
    at = page()
    mgr = manager()
    spec = {"model": "mlp", "preset": "raw", "model_kw": {}, "train": {"steps": 10_000_000},
            "data": {"kind": "ssa"}}
    filler = [mgr.start(spec, "filler") for _ in range(mgr.max_live - 1)]
    try:
        at.number_input(key="nj_steps").set_value(100_000).run()
        at.button(key="nj_start").click().run()
        ok(at)
        assert any("Both runs need a free slot" in e.value for e in at.error)
        assert "ninja_runs" not in at.query_params
        assert not [r for r in mgr.db.live_runs() if r["name"].startswith("ninja/")]
    finally:
        for i in filler:
            mgr.stop(i)


def test_a_one_word_file_says_too_few_words_not_a_traceback(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("emma\n")
    at = page(one)   # ok(): no traceback (it was `random_ expects 'from' to be less than 'to'`)
    assert any("one.txt has 1 word: too few words for an 80/10/10 split (need 6)" in e.value for e in at.error)
    assert not at.get("plotly_chart")
