import streamlit as st

from dashboard.ui import doctor_view, live, run_view

st.title("Activations & gradients")
st.caption("Lecture 4 · *Building makemore Part 3: Activations & Gradients, BatchNorm*. Press Start and "
           "watch, while the model trains, what the lecture plots only after training: the first loss, tanh "
           "saturation, gradients layer by layer and the update:data ratios -- with a diagnosis in plain words.")

# --- controls ---------------------------------------------------------------------------
spec, errors = live.scenario_controls()
run_id = live.run_controls(spec, errors)
live.stop_until_started(run_id, "Pick a scenario and press **Start** (or **Step** to train one step at a time). "
                        "Start with **raw**: a confidently wrong softmax and saturated tanh units. Then try "
                        "**kaiming** and **batchnorm**, the lecture's fixes.")

# --- the run, live: panels, diagnosis, compare, scrubber, samples, downloads ---------------
run_view.show(run_id)

# --- the model doctor on this scenario's model: the six common mistakes, under/over-fitting ----
doctor_view.section(spec, run_id)
