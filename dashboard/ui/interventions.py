"""
The "Intervene" control of a live run -- lecture 4's fixes applied while it trains: pick a weight, an
action and a value; Apply sends it to the run's worker, which applies it between two steps and records
it with its step (core.training.interventions says what each action does). The time charts mark each
one (markers()).
"""

import json

import streamlit as st

from core.runs.spec import fresh_model
from core.training.interventions import InterventionError, from_list, make, replay_spec
from dashboard import state
from dashboard.ui import live
from dashboard.ui.registry import manager, may_control, refusal

# what a learner picks -> the action it sends (a weight and a value are added where it takes them)
ACTIONS = {
    "scale its weights by k": "scale",
    "re-initialise it (its original init)": "reinit",
    "re-initialise it (Kaiming)": "kaiming",
    "set the learning rate": "lr",
    "sample with BatchNorm in training mode": "bn:train",
    "sample with BatchNorm in eval mode": "bn:eval",
}


def markers(meta):
    """A run's applied interventions as chart markers: [(step, short label)]."""
    return [(iv.step, iv.label()) for iv in applied(meta)]


def applied(meta):
    """The interventions a run's meta records, as Intervention objects."""
    try:
        return from_list(meta.get("interventions"))
    except InterventionError:  # a record written by another version: none rather than no page
        return []


def control(d):
    """The compact expander, while the run `d` (a live.RunData) can still train and is this session's."""
    if not d.live or not may_control(d.row):
        return
    meta = d.meta
    with st.expander("Intervene", icon=":material/tune:"):
        weights = _weights(d)
        actions = [a for a, cmd in ACTIONS.items() if not cmd.startswith("bn") or meta.get("batchnorm")]
        c1, c2, c3 = st.columns([2, 2, 1])
        cmd = ACTIONS[c1.selectbox("Action", actions, key="iv_action")]
        action = cmd
        if cmd in ("scale", "reinit", "kaiming"):
            names = [n for n, shape in weights if cmd != "kaiming" or len(shape) == 2]
            layer = c2.selectbox("Weight", names, key="iv_layer", help="named as the layer table and the CLI's "
                                 "JSON name it; its step is the next one the run trains")
            if cmd == "scale":
                k = c3.number_input("k", value=0.5, format="%.4g", key="iv_k")
                action = _command("scale", layer, float(k))
            else:
                action = _command("reinit", layer, *(["kaiming"] if cmd == "kaiming" else []))
            action = action if names else None
        elif cmd == "lr":
            now = float(d.lr[-1]) if len(d.lr) else meta.get("lr", 0.1)
            lr = c2.number_input("learning rate", value=now, min_value=0.0, format="%.4g", key="iv_lr",
                                 help="from the next step on, over the decay schedule; 0 freezes the weights")
            action = _command("lr", float(lr))
        c3.button("Apply", on_click=_send, args=(d.run_id, action), key="iv_apply", width="stretch",
                  disabled=action is None)
        if meta.get("intervention_error"):
            st.warning(meta["intervention_error"], icon=":material/warning:")
        done = applied(meta)
        if done:
            a, b = st.columns([3, 1])
            a.caption("Applied: " + "; ".join(f"step {iv.step:,}: {iv.label()}" for iv in done)
                      + ". `python -m core runs start replay.json` trains this run again, with these "
                      "interventions at their steps, to the same numbers.")
            b.download_button("replay.json", json.dumps(replay_spec(d.row["spec"], meta["interventions"]), indent=1),
                              f"{d.run_id}-replay.json", "application/json", key="iv_replay")


def _command(action, *args):
    """The worker's command text for an action (None when its value is out of range: Apply is disabled)."""
    try:
        return make(0, action, *args).command()
    except InterventionError:
        return None


def _send(run_id, action):
    if not manager().send(run_id, f"intervene:{action}"):  # another session's run, or a busy runs file
        state.put(state.FLASH, refusal(run_id))
    live.poke()  # a paused run is not refreshed: tick a moment so the marker shows


def _weights(d):
    """[(name, shape)] of the run's parameters, 2-D weights first (the CLI's `weights`): from its latest
    capture, or before the first one from a fresh copy of its model."""
    cap = d.capture()
    if cap is not None:
        named = [(n, tuple(s)) for n, s in cap.weights]
    else:
        named = _fresh_weights(json.dumps(d.row["spec"]), d.meta.get("vocab_size", 27))
    return [w for w in named if len(w[1]) == 2] + [w for w in named if len(w[1]) != 2]


@st.cache_data(max_entries=8, show_spinner=False)
def _fresh_weights(spec_json, vocab_size):
    try:
        model, _ = fresh_model(json.loads(spec_json), vocab_size)
    except ValueError:  # a run from the CLI or a notebook keeps no spec: its names come with its first capture
        return []
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]
