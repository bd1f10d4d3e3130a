"""The Bigrams page (lecture 2) in AppTest: the count figure, the NLL, the samplers, one word's
table, and the neural bigram trained live by a real worker."""

import json
from collections import Counter

import pytest
from apptest import USE_DATA_DIR, page, status, tick_until, values, with_data_path

pytestmark = USE_DATA_DIR


def figure(at, title):
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(f for f in figs if f["layout"]["title"]["text"].startswith(title))


@pytest.fixture(scope="module")
def at(names_path):
    at, (errors, _) = with_data_path(names_path, "bigram")
    assert not errors
    return at


def test_the_heatmap_shows_every_count_of_names_txt(at, names_path):
    counts = Counter()
    for w in names_path.read_text().split():
        chs = "." + w + "."
        counts.update(a + b for a, b in zip(chs, chs[1:]))
    heat = figure(at, "N[ix1, ix2]")["data"][0]
    chars = heat["x"]
    assert chars == list(".abcdefghijklmnopqrstuvwxyz") and heat["y"] == chars
    for i, a in enumerate(chars):
        for j, b in enumerate(chars):
            assert heat["z"][i][j] == counts[a + b]
            assert heat["text"][i][j] == f"{a}{b}<br>{counts[a + b]}"
    assert any(m.value == "2.4544" for m in at.metric)   # smoothing 1: the lecture's NLL


def test_smoothing_zero_and_the_lecture_sampler(at):
    at.select_slider(key="bg_smoothing").set_value(0).run()
    assert any(m.value == "2.4541" for m in at.metric)
    at.select_slider(key="bg_smoothing").set_value(1).run()
    at.radio(key="bg_sampler").set_value("lecture").run()
    assert at.code[0].value.split() == ["mor.", "axx.", "minaymoryles.", "kondlaisah.", "anchshizarie."]
    at.radio(key="bg_sampler").set_value("torch").run()
    assert at.code[0].value.split() != ["mor.", "axx.", "minaymoryles.", "kondlaisah.", "anchshizarie."]
    assert not at.exception


def test_a_words_table_and_the_infinite_loss(at):
    at.text_input(key="bg_word").set_value("andrejq").run()
    table = at.dataframe[0].value
    assert table["bigram"].tolist() == [".a", "an", "nd", "dr", "re", "ej", "jq", "q."]
    assert any(m.value == "3.4834" for m in at.metric)
    at.select_slider(key="bg_smoothing").set_value(0).run()
    assert any(m.value == "inf" for m in at.metric) and any("infinite" in w.value for w in at.warning)
    at.text_input(key="bg_word").set_value("andrej!").run()
    assert any("'!' is not in this dataset's vocabulary" in e.value for e in at.error)
    assert not at.exception
    at.select_slider(key="bg_smoothing").set_value(1).run()


def test_the_neural_bigram_trains_toward_the_count_model(at):
    at.number_input(key="bg_steps").set_value(60).run()
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 90)
    tick_until(at, lambda a: any(c.proto.spec and "softmax(W)" in c.proto.spec for c in a.get("plotly_chart")), 30)
    loss = figure(at, "loss")
    line = values(loss["data"][0]["y"])
    assert len(line) == 60 and line[-1] < line[0] - 0.5        # 3.77 at step 0, toward 2.45
    assert loss["layout"]["shapes"][0]["y0"] == pytest.approx(2.4543561935424805)
    rows = figure(at, "P(next character | '.')")
    assert [t["name"] for t in rows["data"]] == ["counts (smoothing 1)", "softmax(W) at step 60"]
    assert sum(values(rows["data"][1]["y"])) == pytest.approx(1, abs=1e-4)


def test_a_page_does_not_show_another_pages_run(names_path):
    at = page(model="mlp", preset="raw", steps=5)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 60)
    at.switch_page("views/bigram.py")
    at.query_params.pop("run", None)
    at.run()
    assert not at.exception
    assert any("Press **Start**" in i.value for i in at.info)   # the bigram page's own slot is empty


def test_a_file_without_the_letters_of_andrej_opens_on_its_own_first_word(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("emma\nmia\n")           # no n, d, r or j: 'andrej' cannot be spelled
    at, (errors, captions) = with_data_path(path, "bigram")
    assert not errors and not at.exception and not at.error, [e.value for e in at.error]
    assert at.text_input(key="bg_word").value == "emma"
    assert at.dataframe[0].value["bigram"].tolist() == [".e", "em", "mm", "ma", "a."]
    assert any("short.txt: 2 lines. Too few words for an 80/10/10 split (need 6)" in c for c in captions)
    assert any("2 words, 9 bigrams" in m.value for m in at.markdown)


def test_a_new_dataset_starts_its_word_from_its_own_example(tmp_path, names_path):
    at, _ = with_data_path(names_path, "bigram")
    assert at.text_input(key="bg_word").value == "andrej"
    path = tmp_path / "one.txt"
    path.write_text("emma\n")
    at.session_state["data_path"] = str(path)   # the sidebar's path field, as a learner retypes it
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.text_input(key="bg_word").value == "emma"
    assert any("1 word," in m.value for m in at.markdown)
