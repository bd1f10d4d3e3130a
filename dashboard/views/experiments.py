import streamlit as st

from core.experiments import study as studies
from core.experiments.presets import SCENARIOS
from dashboard.ui import experiment_view

st.title("Experiments")
st.caption("Lecture 3 · *Building makemore Part 2: MLP*. \"Set up an evaluation harness to kick off lots of "
           "experiments\": many trials of the lecture's net, each judged on the **dev** split, the hopeless ones "
           "stopped early. The **test** split is looked at once, at the very end, for the chosen trial.")

names = studies.names()
current = experiment_view.current(names)

# --- define: a lecture scenario, its ranges and budget as a small TOML spec ---------------------------
with st.expander("Define an experiment", expanded=current is None, icon=":material/tune:"):
    left, right = st.columns([2, 3])
    scenario = left.selectbox("Lecture scenario", list(SCENARIOS), format_func=lambda k: SCENARIOS[k].title,
                              key="exp_scenario")
    left.caption(SCENARIOS[scenario].note)
    left.caption("Lecture 3 on makemore's **names.txt**: train 2.12, dev **2.17** after 200,000 steps (pick the file "
                 "in the sidebar). The offline default, the newest year of US Social Security names (29,910 names), "
                 "is a different data set: its losses are not comparable with the lecture's.")
    right.text_area("Spec: each hyperparameter a list `[a, b]` or a range `{log = [lo, hi]}`, `{int = [lo, hi]}`; "
                    "the budget in `trials` (and `minutes`)", SCENARIOS[scenario].toml, height=330,
                    key=f"exp_toml_{scenario}")
    st.button("Start", icon=":material/play_arrow:", type="primary", on_click=experiment_view.start,
              args=(f"exp_toml_{scenario}",), key="exp_start")
experiment_view.show_error()

# --- the experiment: trials arriving live ---------------------------------------------------------
if current is None:
    st.info("No experiment yet: pick a scenario and press **Start**. Trials train in worker processes (on a Ray "
            "cluster with ZTH_RAY_ADDRESS) and appear on the Runs page too.", icon=":material/info:")
    st.stop()
st.selectbox("Experiment", names, index=names.index(current), key="exp_pick", on_change=experiment_view.pick)
experiment_view.show(current)
