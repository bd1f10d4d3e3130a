import streamlit as st

from dashboard.ui import lecture_view as lv
from dashboard.ui import run_view

st.title("WaveNet")
st.caption("Lecture 6 · *Building makemore Part 5: Building a WaveNet*. Eight characters of context, fused two "
           "at a time by `FlattenConsecutive` instead of crushed into one layer. Run the lecture's log one "
           "scenario after another -- flat8, hierarchical, bnfix, scaled -- and compare them in the table below. "
           "For the lecture's own numbers choose makemore's `names.txt` in the sidebar.")

# --- controls: the scenario, its size and speed, its layers ---------------------------------
spec, errors, run_id = lv.controls("wavenet")
lv.layer_table(spec, run_id, errors)

if run_id is None:
    st.info("Pick a scenario and press **Start**: 200,000 steps of SGD (lr 0.1, then 0.01 from step 150,000), "
            "with the validation loss every 10,000 steps. The runs keep going while you look at other pages "
            "for as long as this tab stays open.", icon=":material/school:")
    lv.lecture_log("wavenet", ["flat8", "hierarchical", "bnfix", "scaled"],
                   "**The lecture's performance log** (makemore's names.txt)")
    st.stop()

# --- the run: the lecture's loss plot, then the live diagnostics ----------------------------
lv.window_loss(run_id)  # with the table of your runs next to the lecture's log
st.subheader("Live diagnostics")
run_view.show(run_id)
