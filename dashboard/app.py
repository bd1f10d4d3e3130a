"""Zero to Hero Lab: the router. Each page lives in dashboard/views/ and reads like a lecture."""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path; core/ and data/ sit one level up
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="Zero to Hero Lab", page_icon=":material/neurology:", layout="wide")

import state  # noqa: E402  (after the sys.path fix above)
from settings import shared_settings  # noqa: E402

PAGES = Path(__file__).parent / "views"  # not pages/: that name switches on the old automatic multipage mode
pg = st.navigation({
    "Zero to Hero Lab": [st.Page(PAGES / "home.py", title="Home", icon=":material/home:", default=True)],
    "Lectures": [
        st.Page(PAGES / "micrograd.py", title="micrograd", icon=":material/account_tree:", url_path="micrograd"),
        st.Page(PAGES / "bigram.py", title="Bigrams", icon=":material/grid_on:", url_path="bigram"),
        st.Page(PAGES / "activations.py", title="Activations & gradients", icon=":material/monitoring:",
                url_path="activations"),
        st.Page(PAGES / "ninja.py", title="Backprop ninja", icon=":material/swords:", url_path="backprop-ninja"),
        st.Page(PAGES / "wavenet.py", title="WaveNet", icon=":material/stacks:", url_path="wavenet"),
        st.Page(PAGES / "gpt.py", title="GPT", icon=":material/auto_stories:", url_path="gpt"),
    ],
    "Your runs": [st.Page(PAGES / "runs.py", title="Runs", icon=":material/history:", url_path="runs")],
})
state.put(state.PAGE, pg.url_path)  # each page keeps its own current run (state.page_key)
shared_settings()
pg.run()
