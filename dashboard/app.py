"""Zero to Hero Lab: the router. Each page lives in dashboard/views/ and reads like a lecture."""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path; core/ and data/ sit one level up
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="Zero to Hero Lab", page_icon=":material/neurology:", layout="wide")

from settings import shared_settings  # noqa: E402  (after the sys.path fix above)

PAGES = Path(__file__).parent / "views"  # not pages/: that name switches on the old automatic multipage mode
pg = st.navigation({
    "Zero to Hero Lab": [st.Page(PAGES / "home.py", title="Home", icon=":material/home:", default=True)],
    "Lectures": [
        st.Page(PAGES / "micrograd.py", title="micrograd", icon=":material/account_tree:", url_path="micrograd"),
        st.Page(PAGES / "mlp.py", title="MLP", icon=":material/scatter_plot:", url_path="mlp"),
        st.Page(PAGES / "activations.py", title="Activations & gradients", icon=":material/monitoring:",
                url_path="activations"),
    ],
    "Your runs": [st.Page(PAGES / "runs.py", title="Runs", icon=":material/history:", url_path="runs")],
})
shared_settings()
pg.run()
