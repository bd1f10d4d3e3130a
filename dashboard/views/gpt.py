import streamlit as st

from core.models.presets import get_preset
from dashboard.ui import lecture_view as lv
from dashboard.ui import run_view

st.title("GPT")
st.caption("Lecture 7 · *Let's build GPT: from scratch, in code, spelled out*. A character-level Transformer on "
           "names (the default dataset) or any running text: upload tiny Shakespeare in the sidebar to follow "
           "the lecture. Its steps are the scenarios: bigram only, one head, four heads, + feed-forward, "
           "+ residual blocks and LayerNorm.")

# --- controls: the lecture's step, the model's size and speed ---------------------------------
spec, errors, run_id = lv.controls("gpt")

if run_id is None:
    st.info("Pick a step and press **Start**. Each one trains 5,000 steps of AdamW (lr 1e-3, batch 32, "
            "block_size 8, n_embd 32) and estimates train/val loss every 500 steps -- and samples text there, "
            "so you can read it improve.", icon=":material/school:")
    lv.lecture_log("gpt", ["bigram", "one-head", "four-heads", "ffwd", "blocks", "small", "full"],
                   "**The lecture's steps** (val loss on tiny Shakespeare)")
    st.stop()

# --- the run: loss estimates and generated text, then diagnostics and attention (tabs: a long page) ---
lv.gpt_progress(run_id, get_preset("gpt", spec["preset"]))  # with the table of your runs next to the lecture's
diagnostics, attention = st.tabs(["Live diagnostics", "Attention maps"])
with diagnostics:
    run_view.show(run_id)
with attention:
    lv.attention(run_id)
