"""
The WaveNet and GPT pages driven headless with AppTest: real scripts, real worker
processes, tiny real trainings. A tick is another .run() (AppTest never fires run_every).
"""

import json
import re

import pytest
from apptest import APP, USE_DATA_DIR, manager, page, status, tick_until, with_data_path
from streamlit.testing.v1 import AppTest

from dashboard.ui import lecture_view as lv

pytestmark = USE_DATA_DIR


def run_id_of(at):
    r = at.query_params["run"]
    return r[0] if isinstance(r, list) else r


def figures(at):
    return {json.loads(c.proto.spec)["layout"].get("title", {}).get("text", ""): json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def test_both_pages_are_listed_on_home_and_in_the_navigation():
    at = AppTest.from_file(APP, default_timeout=60).run()
    text = " ".join(m.value for m in at.markdown)
    assert "**WaveNet**" in text and "**GPT**" in text
    for name in ("wavenet", "gpt"):
        at.switch_page(f"views/{name}.py").run()
        assert not at.exception and at.title[0].value == {"wavenet": "WaveNet", "gpt": "GPT"}[name]


# --- WaveNet --------------------------------------------------------------------------------------

def test_wavenet_page_before_a_run_shows_the_layer_table_size_speed_and_the_lectures_log():
    at = page("wavenet", preset="hierarchical")
    table = at.code[0].value
    assert "Embedding             : (32, 8, 10)" in table
    assert "FlattenConsecutive    : (32, 4, 20)" in table and "Linear                : (32, 4, 68)" in table
    captions = " ".join(c.value for c in at.caption)
    assert "22,397 parameters" in captions and "per 1,000 steps" in captions
    log = next(m.value for m in at.markdown if m.value.startswith("| scenario |"))
    assert "| **flat8** | 22,097 | 1.918 | 2.027 |" in log
    assert "| **scaled** | 76,579 | 1.769 | 1.9937 |" in log


@pytest.mark.parametrize("seconds,words", [(0.0, "under a second"), (0.33, "under a second"),
                                           (2.345, "about 2.3 s"), (45.4, "about 45 s"), (600, "about 10.0 min"),
                                           (7200, "about 2.0 h")])
def test_a_duration_in_words_never_says_0_s(seconds, words):
    assert lv.about(seconds) == words


def test_wavenet_flat8_speed_is_a_real_estimate_for_one_step(names_path):
    at = page("wavenet", preset="flat8", steps=1)   # flat8 does 1,000 steps in about a third of a second here
    caption = next(c.value for c in at.caption if "per 1,000 steps" in c.value)
    assert re.search(r"\*\*(under a second|about \d+(\.\d)? s) per 1,000 steps\*\*", caption), caption
    assert "about 0 s" not in caption and "for 1 step." in caption


def test_a_new_scenario_starts_from_its_own_hyperparameters():
    at = page("wavenet", preset="flat8")
    assert at.number_input(key="ctl_n_hidden_wavenet").value == 200
    at.selectbox(key="ctl_preset_wavenet").set_value("scaled").run()
    assert not at.exception
    assert at.number_input(key="ctl_n_hidden_wavenet").value == 128
    assert at.number_input(key="ctl_n_embd_wavenet").value == 24
    assert "76,579 parameters" in " ".join(c.value for c in at.caption)


def test_a_short_wavenet_run_fills_the_windowed_loss_and_the_results_table(names_path):
    at, _ = with_data_path(names_path, "wavenet", preset="bnfix", steps=2100, capture_every=700)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 300).run()  # one more: every panel has read the end
    figs = figures(at)
    title = next(t for t in figs if t.startswith("log10 loss, mean of every 1,000 steps"))
    train = figs[title]["data"][0]
    assert train["x"] == [999, 1999]                       # two full windows of 1,000; the last 100 wait
    assert 0.2 < train["y"][1] < train["y"][0] < 0.6        # log10 of a loss between 1.6 and 4, falling
    results = at.dataframe[0].value
    row = results[results["run"] == run_id_of(at)].iloc[0]
    assert row["scenario"] == "bnfix" and row["params"] == 22_397 and row["step"] == 2100
    assert 1.9 < row["val"] < 2.6 and row["lecture val"] == 2.022 and row["data"] == "names.txt"
    assert "(32, 4, 20)" in at.code[0].value and "at step 2,100" in " ".join(c.value for c in at.caption)
    assert any(t.startswith("activations at step") for t in figs)   # the shared diagnostics panels


# --- GPT ------------------------------------------------------------------------------------------

def test_gpt_page_controls_size_and_bad_settings():
    at = page("gpt")
    assert at.selectbox(key="ctl_preset_gpt").value == "blocks"
    assert "42,369 parameters" not in " ".join(c.value for c in at.caption)   # names: vocabulary 27, not 65
    assert "per 1,000 steps" in " ".join(c.value for c in at.caption)
    for key in ("ctl_n_embd_gpt", "ctl_n_head_gpt", "ctl_n_layer_gpt", "ctl_block_size_gpt", "ctl_dropout_gpt"):
        at.number_input(key=key)  # every control the lecture varies is there
    at.number_input(key="ctl_n_head_gpt").set_value(5).run()
    assert any("multiple of the number of heads" in e.value for e in at.error)
    assert at.button(key="btn_start").proto.disabled and not at.exception


def test_gpt_page_counts_the_vocabulary_of_tiny_shakespeare(shakespeare_path):
    at, _ = with_data_path(shakespeare_path, "gpt", preset="blocks")
    assert "**42,369 parameters** (vocabulary 65)" in " ".join(c.value for c in at.caption)


def test_a_text_too_short_for_the_split_disables_start_with_the_characters_needed(tmp_path):
    four = tmp_path / "four.txt"
    four.write_text("emma\nolivia\nava\nmia\n")   # 20 characters; block_size 8 needs 81
    at, _ = with_data_path(four, "gpt", preset="bigram")
    assert not at.exception
    assert any("four.txt has 20 characters: too few for a 90/10 split with block_size 8 (need 81" in e.value
               for e in at.error), [e.value for e in at.error]
    assert at.button(key="btn_start").proto.disabled


def test_a_four_word_file_on_wavenet_disables_start_with_the_words_needed(tmp_path):
    four = tmp_path / "four.txt"
    four.write_text("emma\nolivia\nava\nmia\n")
    at, _ = with_data_path(four, "wavenet", preset="flat8")
    assert not at.exception
    assert any("four.txt has 4 words: too few words for an 80/10/10 split (need 6)" in e.value for e in at.error)
    assert at.button(key="btn_start").proto.disabled


def test_a_short_gpt_run_shows_estimates_generated_text_and_attention_maps(names_path):
    at = page("gpt", preset="four-heads", steps=200, capture_every=50)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 300).run()  # one more: every panel has read the end
    run = manager().db.get_run(run_id_of(at))
    assert [g["step"] for g in run["meta"]["generated"]] == [0, 200]
    assert any("Generated at step 200" in m.value for m in at.markdown)
    text = run["meta"]["generated"][-1]["text"]
    assert len(text) == 300 and set(text) <= set(run["meta"]["chars"])
    figs = figures(at)
    est = figs["estimated loss (mean of eval_iters batches)"]
    assert [t["name"] for t in est["data"]] == ["gpt/four-heads train", "gpt/four-heads val"]
    assert est["data"][1]["x"] == [200] and 2.0 < est["data"][1]["y"][0] < 3.3
    att = next(f for t, f in figs.items() if t.startswith("attention in block 0 at step 200"))
    mask = [t for t in att["data"] if "masked" in t["hovertemplate"]]
    heat = [t for t in att["data"] if "masked" not in t["hovertemplate"]]
    assert len(heat) == 4 and len(mask) == 4                # four heads, each with its causal mask drawn
    assert mask[0]["z"][0][1] == 1 and mask[0]["z"][1][0] is None
    z = heat[0]["z"]
    T = len(z)
    assert T == 8 and z[0][1] is None and z[0][0] == 1.0    # the causal mask, and the first row reads itself
    assert all(abs(sum(v for v in row if v is not None) - 1) < 1e-3 for row in z)
    # a character the vocabulary lacks is refused in words, not with a traceback
    at.text_area(key=f"att_prompt_{run['id']}").set_value("emma!").run()
    assert any("does not know: '!'" in e.value for e in at.error) and not at.exception
    results = at.dataframe[0].value
    assert results.iloc[-1]["lecture val"] == 2.28


def test_the_bigram_step_says_it_has_no_attention():
    at = page("gpt", preset="bigram", steps=20, capture_every=10)
    assert any(n.value == 0 for n in at.number_input if n.key == "ctl_n_layer_gpt")
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: "`finished`" in status(a), 90)
    assert any("has no self-attention" in i.value for i in at.info)
