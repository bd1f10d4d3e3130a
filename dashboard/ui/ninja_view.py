"""
The backprop-ninja page's helpers: its session keys (every one starts with nj_), the
cached lecture computations, the drawing of one tensor's check and of a closed form, and
the side-by-side training of the manual and autograd runs. The math lives in
core/models/ninja.py; training happens in two worker processes (core.runs.worker), which
this module only starts, stops and reads.
"""

import inspect
import textwrap

import numpy as np
import pandas as pd
import streamlit as st

from core.models.ninja import PARAMS, STEPS, Ninja, run_exercises
from core.runs.db import LIVE_STATES
from core.runs.manager import CapacityError
from core.runs.spec import SpecError, check_spec
from dashboard import state
from dashboard.plot import charts
from dashboard.ui import live, run_view
from dashboard.ui.registry import dataset_key, manager, words_dataset

# --- session keys ------------------------------------------------------------------------
NJ_TENSOR = "nj_tensor"      # selectbox: the tensor looked at in exercise 1
NJ_RUNS = "nj_runs"          # [manual run id, autograd run id] of this session's training
NJ_STEPS = "nj_steps"        # number_input: steps for both runs

RUNS = ("manual", "autograd")  # the two presets of core.models.presets "ninja", in this order
MANUAL_BACKWARD_SOURCE = textwrap.dedent(inspect.getsource(Ninja.manual_backward))  # shown as is, never copied


# --- the lecture's computations, once per dataset and seed --------------------------------


def exercises(source, seed):
    """(dataset, core.models.ninja.Exercises) for the sidebar's data and seed. DataError for a file of non-words,
    or of too few words for the lecture's split (its minibatch is drawn from Xtr)."""
    ds = words_dataset(source, 3).check_split()
    return ds, _exercises(*dataset_key(source), source.get("name"), seed)


@st.cache_resource(max_entries=4, show_spinner="Running the lecture's forward and backward passes...")
def _exercises(kind, path, mtime, name, seed):
    ds = words_dataset({"kind": kind, "path": path, "name": name}, 3)
    return run_exercises(ds.Xtr, ds.Ytr, ds.vocab_size, seed)


def tensor_of(ex, name):
    return dict(ex.net.named_parameters())[name] if name in PARAMS else ex.t[name]


def autograd_of(ex, name):
    return tensor_of(ex, name).grad


# --- exercise 1: one tensor, and the table of all --------------------------------------------


def verdict(check):
    if check.exact:
        return "exact"
    return "approximate" if check.approx else "WRONG"


def tensor_detail(ex, name):
    """The forward line, the backward line(s), the math, and the check against autograd."""
    step, check = STEPS[name], next(c for c in ex.checks if c.name == name)
    kind = "a parameter" if name in PARAMS else "an intermediate"
    st.latex(step.latex)
    left, right = st.columns([1.1, 1])
    with left:
        st.markdown(f"**{name}** is {kind} of shape `{tuple(check.shape)}`. The forward made it with")
        st.code(step.forward, language="python")
        st.markdown(f"and backward, by hand, gives **d{name}**:")
        st.code(step.backward, language="python")
    with right:
        st.markdown(f"**Why:** {step.why}")
        m = st.columns(3)
        m[0].metric("exact", str(check.exact), help="torch.all(d{0} == {0}.grad): every bit the same".format(name))
        m[1].metric("approximate", str(check.approx), help="torch.allclose(d{0}, {0}.grad)".format(name))
        m[2].metric("max difference", f"{check.maxdiff:.2e}" if check.maxdiff else "0",
                    help="(d{0} - {0}.grad).abs().max()".format(name))
        if check.exact:
            st.success(f"d{name} is bit-for-bit what autograd computed.", icon=":material/check_circle:")
        elif check.approx:
            st.info(f"d{name} agrees with autograd up to float rounding ({check.maxdiff:.1e}), not bit-for-bit.",
                    icon=":material/approval:")
        else:
            st.error(f"d{name} does not match autograd (max difference {check.maxdiff:.3g}).")
    st.plotly_chart(grad_figure_of(name, ex.d[name], autograd_of(ex, name)), key="nj_grad_chart", width="stretch")


def grad_figure_of(name, manual, autograd, title=None):
    """The manual gradient and its difference from autograd's, as two heatmaps."""
    manual = manual.reshape(autograd.shape)
    return charts.grad_figure(name, manual.numpy(), (manual - autograd).numpy(), title)


def closed_form(step, intro, check, tensor, first_metric):
    """Exercises 2 and 3: the forward in one line, the backward's formula and code, and four numbers --
    first_metric (label, value, help), then the check of d`tensor` against autograd."""
    st.markdown(intro)
    st.code(step.forward, language="python")
    st.latex(step.latex)
    st.code(step.backward, language="python")
    m = st.columns(4)
    m[0].metric(*first_metric)
    m[1].metric(f"d{tensor} exact", str(check.exact))
    m[2].metric(f"d{tensor} approximate", str(check.approx))
    m[3].metric(f"d{tensor} max difference", f"{check.maxdiff:.2e}")


def check_table(ex):
    """The lecture's cmp() lines as a table, in its order."""
    rows = [dict(tensor=f"d{c.name}", shape=str(tuple(c.shape)), exact=c.exact, approximate=c.approx,
                 maxdiff=c.maxdiff, verdict=verdict(c)) for c in ex.checks]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=35 * len(rows) + 38,
                 key="nj_table",
                 column_config={"maxdiff": st.column_config.NumberColumn("max difference", format="%.2e"),
                                "exact": st.column_config.CheckboxColumn("exact"),
                                "approximate": st.column_config.CheckboxColumn("approximate")})


# --- exercise 4: the manual and the autograd run, side by side -------------------------------


def current_runs():
    """
    This session's pair: the URL's ?ninja_runs=a,b (a reload re-attaches), else the session's,
    else the pair of a ?run= the Runs page opened here (each run of a pair names both in its meta).
    """
    raw = state.url_get("ninja_runs", None)
    ids = raw.split(",") if raw else state.get(NJ_RUNS)
    if not ids and state.url_get("run", None):
        r = manager().db.get_run(state.url_get("run", None))
        ids = (r or {}).get("meta", {}).get("pair")
    if not ids or len(ids) != 2 or any(manager().db.get_run(i) is None for i in ids):
        return None
    return list(ids)


def spec_for(preset, steps, seed, check=True):
    spec = {"model": "ninja", "preset": preset, "model_kw": {},
            "train": {"steps": int(steps), "capture_every": 0, "seed": int(seed)},
            "data": state.data_source(), "device": "cpu"}
    if check:
        check_spec(spec)  # SpecError: the page shows it
    return spec


def train_errors(steps, seed):
    """What stops training from starting, as messages (empty when it can)."""
    return live.validate(spec_for("manual", steps, seed, check=False))


def start_both(steps, seed):
    """
    Stop this session's live runs (on any page: the pair counts as the session's one training),
    then start a worker for each preset: same seed, same data, same batches.
    """
    mgr, ids = manager(), []
    for r in mgr.db.live_runs():
        if r["session"] == state.session_id() or r["id"] in (current_runs() or []):
            mgr.stop(r["id"])
    try:
        for preset in RUNS:
            ids.append(mgr.start(spec_for(preset, steps, seed), f"ninja/{preset}", session=state.session_id()))
    except (CapacityError, SpecError) as e:
        for run_id in ids:
            mgr.stop(run_id)
        state.put(state.FLASH, f"{e} Both runs need a free slot: the comparison trains them at the same time.")
        return
    for run_id in ids:
        mgr.db.update_run(run_id, meta=dict(pair=ids))  # so the Runs page can reopen the pair from either
    state.put(NJ_RUNS, ids)
    state.url_set(run=None, ninja_runs=",".join(ids))
    live.poke(10.0)  # a worker takes a moment to load torch and the data


def any_live(ids):
    return any((manager().db.get_run(i) or {}).get("state") in LIVE_STATES for i in ids or [])


def stop_both():
    ids = current_runs()
    for run_id in ids or []:
        r = manager().db.get_run(run_id)
        if r and r["state"] in LIVE_STATES:
            manager().stop(run_id)


def train_controls(seed):
    """Steps, Train both and Stop, with what stops training from starting. Returns the pair (or None)."""
    c1, c2, c3, _ = st.columns([1.2, 1.3, 1, 2.5])
    steps = c1.number_input("steps", min_value=1, max_value=200_000, value=200_000, step=1000, key=NJ_STEPS)
    errors = train_errors(steps, seed)
    for e in errors:
        st.error(e, icon=":material/error:")
    live.show_flash()
    ids = current_runs()
    c2.button("Train both", type="primary", icon=":material/play_arrow:", on_click=start_both,
              args=(steps, seed), disabled=bool(errors), key="nj_start", width="stretch")
    c3.button("Stop", icon=":material/stop:", on_click=stop_both, key="nj_stop", width="stretch",
              disabled=not any_live(ids))
    return ids


def training_panel(ids, expected_loss):
    """Both runs' losses overlaid, their per-step gap, and their speeds; refreshed once a second while training."""
    live.watch(ids[0], lambda man, auto, ticking: _draw(man, auto, expected_loss, ticking), compare_id=ids[1])


def _draw(man, auto, expected_loss, ticking):
    for d in (man, auto):
        final = d.meta.get("final") or {}
        fin = (f" · final train **{final['train']:.4f}** / val **{final['val']:.4f}**"
               if final.get("val") is not None else "")
        run_view.header(d, extra=fin)
    if "starting" in (man.state, auto.state):
        st.caption("Each worker loads torch and builds the dataset before its first step: a few seconds.")
    n = min(len(man.loss), len(auto.loss))
    gap = np.abs(man.loss[:n] - auto.loss[:n])
    m = st.columns(4)
    m[0].metric("steps both have run", f"{n:,}")
    m[1].metric("largest loss gap so far", f"{gap.max():.1e}" if n else "—",
                help="max over steps of |loss(manual) − loss(autograd)|")
    m[2].metric("identical steps", f"{100 * (gap == 0).mean():.0f}%" if n else "—",
                help="steps whose two losses are bit-for-bit equal")
    sm, sa = (d.row["steps_per_s"] if d.row else None for d in (man, auto))
    m[3].metric("manual / autograd speed", f"{sm / sa:.2f}×" if sm and sa else "—",
                help="steps per second of the manual run over the autograd run's (both in their own process)")
    points = 1000 if ticking else 4000
    curves = [(f"{d.label}", *charts.downsample(d.steps, d.loss, points), d.evals()) for d in (man, auto)]
    left, right = st.columns(2)
    left.plotly_chart(charts.loss_figure(curves, init_expected=expected_loss), key="nj_loss_chart", width="stretch")
    right.plotly_chart(charts.loss_gap_figure(man.steps[:n], gap), key="nj_gap_chart", width="stretch")
    st.caption("A float32 loss near 2.3 can only change in steps of about 2.4e-7, so a gap of 1e-7 to 1e-6 is one "
               "or a few roundings; the two runs drift apart only as slowly as those roundings accumulate.")
