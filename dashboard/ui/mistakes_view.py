"""
The Mistakes page's parts: a planted bug and the healthy model trained side by side (two workers, the same
seed, data and batches), their live panels overlaid, samples from both, and the model doctor's verdict.
"""

import numpy as np
import pandas as pd
import streamlit as st

from core.doctor.bugs import BUGS
from core.models.presets import MAKEMORE_SEED, get_preset, train_config
from core.runs.db import LIVE_STATES
from core.runs.manager import CapacityError
from core.runs.spec import SpecError, check_spec
from dashboard import state
from dashboard.ui import doctor_view, live, run_view
from dashboard.ui.registry import manager

MK_RUNS = "mk_runs"    # this session's pair: [bug run, healthy run]
MK_STEPS = "mk_steps"  # number_input: steps for both runs
STEPS = 3000           # enough for every symptom to show; a few seconds a thousand steps on one core
EVAL_EVERY = 500       # val loss of both, so a mistake that only hurts unseen data shows too


def seed_for(bug):
    """The sidebar's seed, or the bug's preset's own (42 for WaveNet) when the sidebar keeps the default."""
    b = BUGS[bug]
    seed = state.get(state.SEED, MAKEMORE_SEED)
    return train_config(get_preset(b.model, b.preset)).seed if seed == MAKEMORE_SEED else int(seed)


def spec_for(bug, healthy, steps, check=True):
    b = BUGS[bug]
    spec = {"model": b.model, "preset": b.preset, "model_kw": {},
            "train": {"steps": int(steps), "seed": seed_for(bug), "eval_every": EVAL_EVERY},
            "data": state.data_source(), "device": "cpu"}
    if not healthy:
        spec["bug"] = bug
    if check:
        check_spec(spec)  # SpecError: the page shows it
    return spec


def errors(bug, steps):
    """What stops training from starting, as messages (empty when it can)."""
    return live.validate(spec_for(bug, False, steps, check=False))


def current_runs():
    """This session's pair: the URL's ?mistake_runs=a,b (a reload re-attaches), else the session's."""
    raw = state.url_get("mistake_runs", None)
    ids = raw.split(",") if raw else state.get(MK_RUNS)
    if not ids or len(ids) != 2 or any(manager().db.get_run(i) is None for i in ids):
        return None
    return list(ids)


def start_both(bug, steps):
    """Stop this session's live runs, then start the bug's model and the healthy one: same seed, same batches."""
    mgr, ids = manager(), []
    for r in mgr.db.live_runs():
        if r["session"] == state.session_id() or r["id"] in (current_runs() or []):
            mgr.stop(r["id"])
    b = BUGS[bug]
    try:
        for healthy in (False, True):
            name = f"{b.model}/{b.preset} " + ("healthy" if healthy else f"bug {bug}")
            ids.append(mgr.start(spec_for(bug, healthy, steps), name, session=state.session_id()))
    except (CapacityError, SpecError) as e:
        for run_id in ids:
            mgr.stop(run_id)
        state.put(state.FLASH, f"{e} Both runs need a free slot: the comparison trains them at the same time.")
        return
    for run_id in ids:
        mgr.db.update_run(run_id, meta=dict(pair=ids))
    state.put(MK_RUNS, ids)
    state.url_set(mistake_runs=",".join(ids))
    live.poke(10.0)
    doctor_view.ask(b.model, b.preset, bug, state.data_source(), seed_for(bug))


def stop_both():
    for run_id in current_runs() or []:
        r = manager().db.get_run(run_id)
        if r and r["state"] in LIVE_STATES:
            manager().stop(run_id)


def train_controls(bug):
    """Steps, Train both and Stop. Returns the pair (or None)."""
    c1, c2, c3, _ = st.columns([1.2, 1.6, 1, 2.2])
    steps = c1.number_input("steps", min_value=100, max_value=200_000, value=STEPS, step=500, key=MK_STEPS)
    problems = errors(bug, steps)
    for e in problems:
        st.error(e, icon=":material/error:")
    live.show_flash()
    ids = current_runs()
    c2.button("Train both", type="primary", icon=":material/play_arrow:", on_click=start_both, args=(bug, steps),
              disabled=bool(problems), key="mk_start", width="stretch",
              help="The model with the mistake and the healthy one, each in its own worker, same seed and batches")
    c3.button("Stop", icon=":material/stop:", on_click=stop_both, key="mk_stop", width="stretch",
              disabled=not any((manager().db.get_run(i) or {}).get("state") in LIVE_STATES for i in ids or []))
    return ids


# -----------------------------------------------------------------------------
# the pair, live


def panels(ids):
    """Both runs overlaid (loss, update ratios, histograms: the bug's solid, the healthy one's dashed), the
    parameters' gradient std side by side, refreshed once a second while they train."""
    live.watch(ids[0], _draw, compare_id=ids[1])


def _draw(bug, healthy, ticking):
    for d in (bug, healthy):
        final = d.meta.get("final") or {}
        run_view.header(d, extra=f" · final val **{final['val']:.4f}**" if final.get("val") is not None else "")
    if not len(bug.loss):
        st.info("Waiting for step 1: each worker loads PyTorch and the data first.", icon=":material/hourglass_top:")
        return
    cap, hcap = bug.capture(), healthy.capture()
    figs = run_view.figures(bug, cap, healthy, healthy.capture(cap.step) if cap is not None else hcap,
                            points=1000 if ticking else 4000)
    left, right = st.columns([3, 2])
    with left:
        run_view.live_panels({k: figs[k] for k in ("loss", "ud", "act", "wgrad") if k in figs})
    with right:
        n = min(len(bug.loss), len(healthy.loss))
        if n:
            tail = slice(max(0, n - 200), n)
            m = st.columns(2)
            m[0].metric("loss, last 200 steps (bug)", f"{np.mean(bug.loss[tail]):.3f}",
                        f"{np.mean(bug.loss[tail]) - np.mean(healthy.loss[tail]):+.3f} vs healthy",
                        delta_color="inverse")
            m[1].metric("loss, last 200 steps (healthy)", f"{np.mean(healthy.loss[tail]):.3f}")
        if cap is not None and hcap is not None:
            st.markdown("**Gradient std per parameter** at the latest capture (a parameter whose gradient is 0 "
                        "never learns)")
            st.dataframe(_grad_std(cap, hcap), hide_index=True, width="stretch", key="mk_grad_std")


def _grad_std(cap, hcap):
    theirs = {w["name"]: w["grad_std"] for w in hcap.weight_stats()}
    return pd.DataFrame([{"parameter": w["name"], "shape": str(tuple(w["shape"])),
                          "with the bug": f"{w['grad_std']:.2e}",
                          "healthy": f"{theirs[w['name']]:.2e}" if w["name"] in theirs else "(none)"}
                         for w in cap.weight_stats()])


def _ask_samples(ids):
    for run_id in ids:
        manager().send(run_id, "sample:10:eval")
    live.poke()


def samples(ids):
    """Ten names from each model, sampled in eval mode (as they should be)."""
    live_runs = [i for i in ids if (manager().db.get_run(i) or {}).get("state") in LIVE_STATES]
    st.button("Sample 10 names from both", on_click=_ask_samples, args=(live_runs,), disabled=not live_runs,
              key="mk_sample", help="in eval mode, as sampling should be: model.eval() first")
    cols = st.columns(2)
    for col, run_id, what in zip(cols, ids, ("with the bug", "healthy")):
        with col:
            st.markdown(f"**{what}**")
            run_view._samples_box(run_id, run_id in live_runs)
