"""
The MLP page (lecture 3) driven headless with AppTest: the dataset builder, the
learning-rate sweep through a real worker, a short training run with its split
losses, embedding and samples. AppTest never fires run_every: a tick is a .run().
"""

import json

import pytest
from apptest import USE_DATA_DIR, manager, page, tick_until, with_data_path

pytestmark = USE_DATA_DIR


def mlp_page(data_path=None, **params):
    if data_path is None:
        return page("mlp", **params)
    at, _ = with_data_path(data_path, "mlp", **params)
    return at


def figure(at, key):
    charts = [c for c in at.get("plotly_chart") if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith(key)]
    assert charts, [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    return json.loads(charts[0].proto.spec)


def run_state(at, slot="run"):
    run_id = at.query_params[slot]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    return manager().db.get_run(run_id)


def test_the_dataset_builder_prints_the_lectures_rows():
    at = mlp_page()
    assert at.code[0].value == "... ---> e\n..e ---> m\n.em ---> m\nemm ---> a\nmma ---> ."
    df = at.dataframe[0].value
    assert df["X (ints)"].tolist()[:2] == ["[0, 0, 0]", "[0, 0, 5]"] and df["Y"].tolist() == [5, 13, 13, 1, 0]
    at.number_input(key="ds_block").set_value(2).run()
    assert at.code[0].value.splitlines()[:2] == [".. ---> e", ".e ---> m"]
    at.text_input(key="ds_word").set_value("ava").run()
    assert at.code[0].value.splitlines()[-1] == "va ---> ."


@pytest.mark.parametrize("word,needle", [
    ("Emma", "The character 'E' is not in this dataset's vocabulary"),
    ("em.ma", "marks the start and end"),
    ("   ", "Type a word"),
])
def test_a_bad_word_is_a_clear_message_not_a_traceback(word, needle):
    at = mlp_page()
    at.text_input(key="ds_word").set_value(word).run()
    assert not at.exception
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]


def test_on_names_txt_the_splits_have_the_lectures_sizes(names_path):
    at = mlp_page(data_path=names_path)
    caption = next(c.value for c in at.caption if "`Xtr` is" in c.value)
    assert "`Xtr` is 182,625 × 3, `Xdev` 22,655 × 3, `Xte` 22,866 × 3" in caption


def test_the_page_offers_lecture_3s_scenarios_and_shows_their_shapes():
    at = mlp_page()
    assert at.selectbox(key="ctl_preset_mlp").options == ["lecture3-2d", "lecture3"]
    code = at.code[1].value
    assert "C  = torch.randn((27, 2)" in code and "W1 = torch.randn((6, 100)" in code and "3,481 parameters" in code
    at.number_input(key="ctl_n_hidden_mlp").set_value(300).run()   # the lecture's next experiment
    assert "W1 = torch.randn((6, 300)" in at.code[1].value and at.query_params["n_hidden"] == "300"
    at.selectbox(key="ctl_preset_mlp").set_value("lecture3").run()   # a scenario brings its own sizes
    assert not at.exception
    assert at.number_input(key="ctl_n_embd_mlp").value == 10 and at.number_input(key="ctl_n_hidden_mlp").value == 200
    assert "11,897 parameters" in at.code[1].value and at.query_params["n_hidden"] == "200"


def test_the_lr_sweep_runs_in_a_worker_and_suggests_a_rate():
    at = mlp_page()
    at.button(key="btn_lr_sweep").click().run()
    assert not at.exception and "lrf" in at.query_params and "run" not in at.query_params
    tick_until(at, lambda a: run_state(a, "lrf")["state"] in ("finished", "diverged"), 90)
    at.run()
    fig = figure(at, "learning-rate sweep")
    lri = fig["data"][0]["x"]
    assert len(lri) == 1000 and lri[0] == pytest.approx(-3, abs=1e-6) and lri[-1] == pytest.approx(0, abs=1e-6)
    assert any("suggested" in a["text"] for a in fig["layout"]["annotations"])
    text = " ".join(m.value for m in at.markdown)
    assert "The smoothed loss is lowest at lre" in text
    use = at.button(key="btn_use_lr")
    lr = float(use.label.split("= ")[1])
    assert 10**-2 <= lr <= 10**-0.3
    use.click().run()
    assert not at.exception
    assert at.number_input(key="ctl_lr_mlp").value == pytest.approx(lr) and at.query_params["lr"] == f"{lr:g}"
    at.button(key="btn_start").click().run()   # Start sends the field's new value (a browser test: test_inputs_browser)
    assert run_state(at)["spec"]["train"]["lr"] == pytest.approx(lr)
    at.button(key="btn_stop").click().run()


def test_a_short_2d_run_shows_split_losses_the_embedding_and_samples():
    at = mlp_page(steps=300, capture_every=100)
    at.button(key="btn_start").click().run()
    assert not at.exception
    tick_until(at, lambda a: run_state(a)["state"] == "finished", 90)
    at.run()
    assert not at.exception
    final = run_state(at)["meta"]["final"]
    assert set(final) == {"train", "val", "test"}
    metrics = {m.label: m.value for m in at.get("metric")}
    assert metrics["test loss (whole split)"] == f"{final['test']:.4f}"
    assert metrics["dev loss (whole split)"] == f"{final['val']:.4f}"
    emb = figure(at, "the embedding C")
    labels = sorted(ch for t in emb["data"] for ch in t["text"])
    assert len(labels) == 27 and "." in labels and "z" in labels
    vowels = next(t for t in emb["data"] if t["name"] == "vowels")
    assert sorted(vowels["text"]) == list("aeiou")
    assert "at step 300" in emb["layout"]["title"]["text"]   # the worker's last checkpoint
    assert any(len(c.value.split()) == 10 for c in at.code)  # the 10 names sampled at the end


def test_a_10d_run_explains_why_there_is_no_scatter():
    at = mlp_page(preset="lecture3", steps=20, n_embd=10, n_hidden=200)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: run_state(a)["state"] == "finished", 90)
    at.run()
    assert any("needs n_embd = 2" in i.value for i in at.info)


def test_a_four_word_file_disables_start_with_the_words_needed(tmp_path):
    four = tmp_path / "four.txt"
    four.write_text("emma\nolivia\nava\nmia\n")
    at = mlp_page(data_path=four)
    assert not at.exception
    needle = "four.txt has 4 words: too few words for an 80/10/10 split (need 6)"
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="btn_start").proto.disabled and at.button(key="btn_lr_sweep").proto.disabled
    assert "run" not in at.query_params
