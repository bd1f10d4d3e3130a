import streamlit as st

from dashboard.ui import live, mlp_view, run_view

st.title("MLP")
st.caption("Lecture 3 · *Building makemore Part 2: MLP*. Bengio et al.'s idea on makemore's names: embed each "
           "character as a small vector, look at three characters to predict the fourth. Build the dataset, "
           "find a learning rate, train with a step decay, check train / dev / test, and watch the 2-D "
           "embedding sort the letters.")

# --- 1. the dataset ----------------------------------------------------------------------
st.subheader("1 · The dataset: every context and the character that follows")
st.markdown("`build_dataset` slides a window of `block_size` characters along each word, padded with `.`: "
            "the window is an input row of `X`, the next character its label in `Y`.")
mlp_view.dataset_builder()

# --- 2. the model --------------------------------------------------------------------------
st.subheader("2 · The model")
spec, errors = live.scenario_controls(models=("mlp",), presets={"mlp": mlp_view.LECTURE3_PRESETS})
mlp_view.model_summary(spec, errors)

# --- 3. a learning rate --------------------------------------------------------------------
st.subheader("3 · Find a learning rate")
mlp_view.lr_finder(spec, errors)

# --- 4. training ---------------------------------------------------------------------------
st.subheader("4 · Train, with the step decay")
st.caption("The lecture's schedule: lr 0.1, then 0.01 from step 100,000 (under *Hyperparameters* above). The "
           "whole train and dev splits are evaluated every 10,000 steps and at the end; test only at the end.")
run_id = live.run_controls(spec, errors)
live.stop_until_started(run_id, "Keep **lecture3-2d** and press **Start**: the loss falls from ~17 towards 2.3, and "
                        "the embedding below rearranges itself while the model trains. Then pick **lecture3** "
                        "(n_embd 10, n_hidden 200) for the lecture's final numbers.")
main = run_view.show(run_id, samples=False, diagnostics=False)  # histograms and diagnosis: lecture 4
mlp_view.split_losses(main)

# --- 5. what the model learned -------------------------------------------------------------
st.subheader("5 · The embedding and samples")
mlp_view.embedding(main, spec)
run_view.samples_and_downloads(main, train_mode_option=False)
