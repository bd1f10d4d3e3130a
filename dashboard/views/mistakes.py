import streamlit as st

from core.doctor.bugs import BUGS
from dashboard import state
from dashboard.ui import doctor_view, mistakes_view

st.title("Mistakes")
st.caption("Karpathy's *most common neural net mistakes* (and lectures 3-6), each planted in one of our "
           "lecture models. Pick one, train it next to the healthy model -- the same seed, the same batches -- "
           "watch the symptom in the live panels, and read what the model doctor says.")

# --- which mistake ------------------------------------------------------------------------
names = list(BUGS)
bug = state.url_get("bug", names[0])
bug = st.selectbox("Mistake", names, index=names.index(bug) if bug in names else 0, key="mk_bug",
                   format_func=lambda b: f"{BUGS[b].title} ({b})")
state.url_set(bug=bug)
b = BUGS[bug]
st.markdown(f"Planted in **{b.model}** (preset `{b.preset}`); the doctor's check `{b.check}` should catch it.  \n"
            f"**What to look for:** {b.symptom}")

# --- train both ---------------------------------------------------------------------------
ids = mistakes_view.train_controls(bug)

if ids is None:
    st.info("Press **Train both**: the model with the mistake and the healthy model train side by side, each in "
            "its own worker -- the bug's curves solid, the healthy model's dashed (B) -- and the model doctor "
            "examines the model with the mistake in a process of its own.", icon=":material/school:")
else:  # --- the pair, live ---------------------------------------------------------------
    mistakes_view.panels(ids)
    mistakes_view.samples(ids)

# --- the doctor's verdict (its own process: a short run and a copy trained, about half a minute) --
source, seed = state.data_source(), mistakes_view.seed_for(bug)
with st.expander(f"The model doctor on the model with the mistake: python -m core doctor --model {b.model} "
                 f"--bug {bug}", expanded=True, icon=":material/stethoscope:"):
    path = doctor_view.report_path(b.model, b.preset, bug, source, seed)
    if doctor_view.status(path)[0] == "none":
        st.button("Ask the model doctor", key="mk_doctor", icon=":material/stethoscope:",
                  on_click=doctor_view.ask, args=(b.model, b.preset, bug, source, seed))
    doctor_view.panel(path, key="mk_report")
