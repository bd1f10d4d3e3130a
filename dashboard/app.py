"""Zero to Hero Lab: the router. Each page lives in dashboard/views/ and reads like a lecture."""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path; core/ and data/ sit one level up
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dashboard import state  # noqa: E402  (after the sys.path fix above)

present = state.sync_present()  # a projector: the sidebar starts folded away, the page drops its chrome
st.set_page_config(page_title="Zero to Hero Lab", page_icon=":material/neurology:", layout="wide",
                   initial_sidebar_state="collapsed" if present else "auto")

# A hack, admitted: Streamlit has no compact theme, so presentation mode trims its chrome with CSS --
# less padding, a smaller title, no blurb under the title -- and the page's first chart starts above a
# 720 px fold. (:has() picks the caption that directly follows the page's h1.)
PRESENT_CSS = """<style>
[data-testid="stMainBlockContainer"] {padding: 3.2rem 1.5rem 2rem !important; max-width: none !important}
[data-testid="stMainBlockContainer"] h1 {font-size: 1.75rem !important; padding: 0 0 0.3rem !important}
[data-testid="stElementContainer"]:has(h1) + [data-testid="stElementContainer"]:has([data-testid="stCaptionContainer"])
  {display: none}
[data-testid="stMainBlockContainer"] [data-testid="stVerticalBlock"] {gap: 0.6rem}
</style>"""
if present:
    st.html(PRESENT_CSS)

# the first render of a fresh server imports torch and the data layer (~3 s): say so instead of a blank page
with st.spinner("Starting: loading PyTorch and the data…"):
    from dashboard.ui.settings import shared_settings  # noqa: E402

PAGES = Path(__file__).parent / "views"  # not pages/: that name switches on the old automatic multipage mode
FILES = {}  # url_path -> the page's file name (state.PAGE: each page keeps its own current run)


def page(file, title, icon, url_path=None, **kw):
    p = st.Page(PAGES / file, title=title, icon=icon, url_path=url_path, **kw)
    FILES[p.url_path] = Path(file).stem
    return p


pg = st.navigation({
    "Zero to Hero Lab": [page("home.py", "Home", ":material/home:", default=True)],
    "Lectures": [
        page("micrograd.py", "micrograd", ":material/account_tree:", "micrograd"),
        page("bigram.py", "Bigrams", ":material/grid_on:", "bigram"),
        page("mlp.py", "MLP", ":material/scatter_plot:", "mlp"),
        page("activations.py", "Activations & gradients", ":material/monitoring:", "activations"),
        page("ninja.py", "Backprop ninja", ":material/swords:", "backprop-ninja"),
        page("wavenet.py", "WaveNet", ":material/stacks:", "wavenet"),
        page("gpt.py", "GPT", ":material/auto_stories:", "gpt"),
        page("mistakes.py", "Mistakes", ":material/bug_report:", "mistakes"),
    ],
    "Your runs": [page("runs.py", "Runs", ":material/history:", "runs"),
                  page("experiments.py", "Experiments", ":material/science:", "experiments")],
})
state.put(state.PAGE, FILES.get(pg.url_path, pg.url_path))  # the file's name, as live.page_for gives it
shared_settings()
with st.sidebar:
    st.toggle("Presentation mode", key=state.PRESENT, on_change=state.present_changed,
              help="For a projector: bigger chart labels, the settings folded away, the charts above the fold. "
                   "?present=1 in a link does the same.")
state.url_set(present=1 if state.presenting() else None)  # page switches drop the URL; a link keeps the mode
pg.run()
