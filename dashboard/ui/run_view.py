"""
The live view of one run that every training page shares: the compare picker, the
step scrubber, the once-a-second panels (loss, update ratios, histograms, raster,
diagnosis), samples and downloads. A page builds its controls, then calls show().
"""

import numpy as np
import pandas as pd
import plotly.io as pio
import streamlit as st

from core.capture.diagnose import dead_units, diagnose_records
from core.capture.record import stats_table, ud_history
from core.training.loop import PROBE_EVERY
from dashboard import state
from dashboard.plot import charts, svg
from dashboard.ui import interventions, live
from dashboard.ui.registry import manager
from data import plural


def show(run_id, compare=True, samples=True, diagnostics=True):
    """Everything below a page's controls, for the run `run_id`. Returns its RunData.
    diagnostics=False keeps to the loss (a lecture before lecture 4's histograms and diagnosis)."""
    compare_id = compare_picker(run_id) if compare else None
    main = live.run_data(run_id)
    scrub = scrubber(main) if diagnostics else None
    interventions.control(main)
    live.watch(run_id, lambda d, o, ticking: _frame(d, o, ticking, scrub, diagnostics), compare_id)
    if samples:
        samples_and_downloads(main)
    return main


def header(d, extra=""):
    """The run's status line -- name, state, step of all its steps, speed -- and why it stopped, if it did."""
    row = d.row or {}
    total = d.meta.get("steps") or row.get("spec", {}).get("train", {}).get("steps") or 0
    rate = f" · {row['steps_per_s']:,.0f} steps/s" if row.get("steps_per_s") else ""
    of = f" of {total:,}" if total else ""  # a learner's own loop (core.watch) has no planned step count
    spec = row.get("spec") or {}
    if spec.get("watch"):  # where the learner's loop runs (core.watch writes its source; the row its host, pid)
        where = spec.get("source") or d.meta.get("source") or "script"
        where += f" on {row['host']}" if row.get("host") else ""
        where += f", pid {row['pid']}" if row.get("pid") else ""
        extra += f" · your own code ({where})"
    if d.meta.get("backend") == "ray":  # trains on a cluster node; this server only relays and draws
        extra += f" · on the Ray cluster (node {d.meta['node']})" if d.meta.get("node") else " · on the Ray cluster"
    st.markdown(f"**{d.label}** · `{d.state}` · step **{row.get('step', 0):,}**{of}{rate}{extra} · "
                f"run `{d.run_id}`")
    if d.meta.get("message") and d.state == "starting":  # a full cluster's queue: where the run stands
        st.info(f"{d.label}: {d.meta['message']}")
    if d.meta.get("message") and d.state in ("failed", "stopped", "diverged"):
        (st.error if d.state in ("failed", "diverged") else st.warning)(f"{d.label}: {d.meta['message']}")


def compare_picker(run_id):
    """A second run overlaid on this one (its id in the URL)."""
    others = [r for r in manager().db.list_runs() if r["id"] != run_id]
    labels = {r["id"]: f"{r['name']} · {r['state']} · step {r['step']:,} · {r['id']}" for r in others}
    with st.expander("Compare with another run", expanded=bool(state.get(state.page_key(state.COMPARE_ID)))):
        c1, c2 = st.columns([2, 1])
        ids = [None] + list(labels)
        cur = state.url_get("compare", None)
        compare_id = c1.selectbox("Overlay", ids, index=ids.index(cur) if cur in ids else 0,
                                  format_func=lambda i: "none" if i is None else labels[i], key="compare_pick")
        c2.caption("Tip: set the other scenario above and press Start -- the seed and data order are the same, "
                   "so the runs differ only by the scenario. Then pick the earlier run here.")
    state.put(state.page_key(state.COMPARE_ID), compare_id)
    state.url_set(compare=compare_id)
    return compare_id


def scrubber(d):
    """After pausing or finishing, look at any recorded step."""
    if d.live and d.state != "paused":
        return None
    steps = d.capture_steps()
    if len(steps) < 2:
        return None
    return st.select_slider("Recorded step", options=steps, value=steps[-1], key=f"scrub_{d.run_id}",
                            help="Histograms, raster and diagnosis at any captured step.")


# the panels in the order the live grid, the still view and the HTML download show them
PANELS = ("loss", "ud", "act", "agrad", "wgrad", "raster")


def figures(d, cap, o=None, ocap=None, points=4000):
    """
    The run's figures by panel name: the loss (with the compared run o), and with a capture the
    update ratios, the three histogram groups (ocap: the compared run's, dashed) and the raster.
    points: at most this many raw loss points (a live refresh draws fewer).
    """
    curves = [(d.label, *charts.downsample(d.steps, d.loss, points), d.evals())]
    if o is not None:
        curves.append((f"B: {o.label}", *charts.downsample(o.steps, o.loss, points), o.evals()))
    marks = interventions.markers(d.meta)  # the run's interventions, on every time chart
    figs = {"loss": charts.loss_figure(curves, init_expected=d.meta.get("expected_init_loss"), markers=marks)}
    if cap is None:
        return figs
    pair = [("A", cap)] + ([("B", ocap)] if ocap is not None else [])
    ocaps = o.captures(max_n=200) if o is not None else None
    ud = ud_history(d.captures(max_n=200))
    if np.isfinite(ud[2]).any():  # the first capture has no update yet: no panel of empty axes
        figs["ud"] = charts.update_ratio_figure(ud, ud_history(ocaps) if ocaps else None, markers=marks)
    figs["act"] = charts.histogram_figure(pair, "act", f"activations at step {cap.step:,}")
    figs["agrad"] = charts.histogram_figure(pair, "agrad", f"activation gradients at step {cap.step:,}")
    figs["wgrad"] = charts.histogram_figure(pair, "wgrad", f"weight gradients at step {cap.step:,} (2-D)",
                                            only_2d=True)
    if cap.raster:
        name, m, dead, kind = _raster(cap)
        figs["raster"] = charts.raster_figure(m, dead, name, kind)
    return {k: f for k, f in figs.items() if f is not None}  # a model without a kind of layer: no panel for it


def _raster(cap):
    """(layer, matrix, dead units, kind) of the raster layer picked under the diagnosis (the first by default)."""
    name = state.get("raster_layer") if state.get("raster_layer") in cap.raster else next(iter(cap.raster))
    kind = dict((n, k) for (g, n), k in zip(cap.keys, cap.kinds) if g == "act").get(name, "tanh")
    return name, cap.raster_matrix(name), dead_units(cap, name), kind


def figures_html(d, step=None):
    """The run's figures as one self-contained HTML file (plotly.js inlined once)."""
    figs = figures(d, d.capture(step))
    parts = [pio.to_html(figs[k], full_html=False, include_plotlyjs=(i == 0))
             for i, k in enumerate(k for k in PANELS if k in figs)]
    return f"<html><head><meta charset='utf-8'><title>{d.label}</title></head><body>{''.join(parts)}</body></html>"


FIRST_LOSS_FAR = 0.5  # a first loss this far from -ln(1/V) is the lecture's "confidently wrong" softmax


def _first_loss(d):
    """The lecture's first check: the first loss against a blank model's -ln(1/V). The difference is red
    only when it is far off; a healthy init's +0.008 is noise, shown grey."""
    first, expected = d.init_loss(), d.meta.get("expected_init_loss")
    if first is not None and expected:
        far = abs(first - expected) > FIRST_LOSS_FAR
        st.metric("First loss vs −ln(1/vocab_size)", f"{first:.3f}", f"{first - expected:+.3f} vs {expected:.3f}",
                  delta_color="inverse" if far else "off",
                  help=f"A model that knows nothing spreads its bets evenly: loss −ln(1/{d.meta.get('vocab_size')})"
                       f" = {expected:.3f}. Much higher means a confidently wrong softmax at initialization.")


def _frame(d, o, ticking, scrub, diagnostics=True):
    header(d, extra=f" · {d.meta['params']:,} parameters" if d.meta.get("params") else "")
    if not len(d.loss):  # the first second of a run: say what is coming rather than draw empty axes
        st.info("Waiting for step 1: the worker is loading PyTorch and the data, then trains and records "
                "the first loss." if d.live else "This run recorded no training step.", icon=":material/hourglass_top:")
        return
    cap = d.capture(scrub) if diagnostics else None
    ocap = o.capture(cap.step) if o is not None and cap is not None else None
    figs = figures(d, cap, o, ocap, points=1000 if ticking else 4000)
    if state.presenting() and not (ticking and diagnostics):  # Plotly charts; the live SVG has its own sizes
        for f in figs.values():
            _presentable(f)
    if not diagnostics:
        left, right = st.columns([3, 2])
        left.plotly_chart(figs["loss"], key="loss_chart", width="stretch", config={"staticPlot": ticking})
        with right:
            _first_loss(d)
        return

    left, right = st.columns([3, 2])
    with left:  # the charts first: what the page is for shows even if a later part fails
        if ticking:  # live: the same panels drawn by the server as one SVG (cheap for the browser)
            live_panels(figs)
        else:  # still: every panel on its own, with legends, zoomable
            for k in PANELS:
                if k in figs:
                    st.plotly_chart(figs[k], key=f"{k}_chart", width="stretch")
        if cap is None:
            every = d.capture_every()
            st.caption("Histograms, update ratios and the raster appear at the first capture"
                       + (f" (every {plural(every, 'step')})." if every else "."))
    with right:
        _first_loss(d)
        _diagnosis(d, cap, scrub)
    if cap is not None:
        layer_numbers(cap)


def layer_numbers(cap):
    """The per-layer and per-weight tables, the page's whole width: a GPT's weight names are long."""
    layers, weights = layer_tables(cap)
    # the label stays the same from tick to tick, so an expander a learner opened stays open
    with st.expander("Layer by layer: the lecture's numbers", expanded=not state.presenting()):
        st.caption(f"At step {cap.step:,}: each watched layer's output (mean, std, share saturated, gradient std) "
                   "and each 2-D weight's grad:data and log10 update:data (`ud`) ratios.")
        tables = [(df, key) for df, key in ((layers, "layers"), (weights, "weights")) if len(df)]  # no empty one
        for col, (df, key) in zip(st.columns([2, 3]) if len(tables) == 2 else [st.container()], tables):
            col.dataframe(df, hide_index=True, width="stretch", height=min(38 + 35 * len(df), 390),
                          key=f"{key}_table")


def _presentable(fig):
    """A figure for a projector (the still view's Plotly charts): 16 px ticks and legend, a larger title."""
    lay = fig["layout"]
    lay["font"] = dict(size=16)
    for axis in ("xaxis", "yaxis"):  # per axis: Streamlit's theme sets the ticks' size there, over layout.font
        ax = lay.setdefault(axis, {})
        ax["tickfont"] = dict(size=16)
        if isinstance(ax.get("title"), str):
            ax["title"] = dict(text=ax["title"])
        if ax.get("title"):
            ax["title"] = dict(ax["title"], font=dict(size=16))
    lay["title"] = dict(lay.get("title", {}), font=dict(size=18))
    lay["legend"] = dict(lay.get("legend", {}), font=dict(size=14))
    lay["height"] = max(lay.get("height", 320), 380)


def diagnosis_heading(d, cap, scrub=None):
    """Which step the diagnosis reads, and why that one: the status line's step runs ahead of the captures."""
    if cap is None:
        return "**Diagnosis** from the losses so far (no capture yet)"
    if scrub is not None and cap.step != d.capture_steps()[-1]:
        return f"**Diagnosis** at step {cap.step:,} (the recorded step picked above)"
    every = d.capture_every()
    why = f"; captures every {plural(every, 'step')}" if every else ""
    return f"**Diagnosis** at the latest capture, step {cap.step:,}{why}"


def _diagnosis(d, cap, scrub=None):
    """The findings in plain words at the shown step, the lecture's numbers per layer, the raster's layer."""
    meta = d.meta
    st.markdown(diagnosis_heading(d, cap, scrub))
    # a scrubbed step is judged on what was known then; the latest, on every step so far
    findings = diagnose_records(meta, (d.row or {}).get("spec"), d.captures(max_n=1 << 30), (d.steps, d.loss, d.lr),
                                d.evals(), step=scrub, state=d.state)
    for f in findings:
        box = {"error": st.error, "warn": st.warning, "info": st.info, "ok": st.success}[f.severity]
        box(f"**{f.title}** -- {f.evidence}" + (f"\n\n*Fix:* {f.fix}" if f.fix else ""))
    if cap is None:
        return
    if cap.raster:
        _, m, dead, _ = _raster(cap)
        st.selectbox("Raster layer", list(cap.raster), key="raster_layer")
        when = ("" if cap.raster_step == cap.step else
                f" The raster is from step {cap.raster_step:,}: the probe batch runs at most every "
                f"{PROBE_EVERY} steps.")
        st.caption(f"{len(dead)} dead unit{'s' if len(dead) != 1 else ''} of {m.shape[1]} (saturated for "
                   f"every one of the {m.shape[0]} probe examples); {100 * m.mean():.1f}% of the raster "
                   "is white." + when)


def live_panels(figs):
    """The six panels as one server-drawn SVG (dashboard/plot/svg.py), one a row: no zoom or hover while it
    ticks, and a browser draws it in milliseconds where the Plotly figure cost most of a core. Inline
    markdown rather than st.image: an image whose data URI changes every second was not repainted
    (Chromium kept showing the first one), and st.html's sanitizer drops SVG."""
    panels = [(k, figs.get(k)) for k in PANELS]
    if state.presenting():  # ~720 px of column at 1280x720: 16 px labels, the loss panel ~330 px tall
        picture = svg.grid_svg(panels, cols=1, width=700, font=16, tall=0.74)
    else:                   # ~500 px of column: 13 px labels, each panel ~300 px tall
        picture = svg.grid_svg(panels, cols=1)
    st.markdown(picture + NO_FADE, unsafe_allow_html=True)


# A hack, admitted: Streamlit dims a fragment's elements while it reruns (opacity with a transition);
# for a picture replaced every second that is a flicker, and repainting the fade costs the browser
# more than drawing the picture. This keeps the live picture's container opaque.
NO_FADE = ("<style>[data-testid='stElementContainer']:has(svg.zth-live)"
           "{opacity:1 !important;transition:none !important}</style>")


def layer_tables(cap):
    """Per layer and per weight (2-D), the numbers the lecture prints beside its plots, as two tables
    (st.dataframe: a GPT's long weight names scroll inside the table instead of clipping its last column)."""
    layers = pd.DataFrame([{"layer": f"{r['layer']} ({r['kind']})", "mean": f"{r['mean']:+.2f}",
                            "std": f"{r['std']:.2f}",
                            "saturated": "" if r["saturated_pct"] is None else f"{r['saturated_pct']:.1f}%",
                            "grad std": "" if r["grad_std"] is None else f"{r['grad_std']:.2e}"}
                           for r in cap.layer_stats()])
    weights = pd.DataFrame([{"weight": w["name"], "shape": str(tuple(w["shape"])),
                             "grad:data": f"{w['grad_data_ratio']:.2e}",
                             "log10 ud": "" if w["update_data_log10"] is None
                             else f"{w['update_data_log10']:.2f}"}
                            for w in cap.weight_stats() if len(w["shape"]) == 2])
    return layers, weights


def _ask_samples(run_id, mode):
    manager().send(run_id, f"sample:10:{mode}")
    live.poke()  # a paused run is not refreshed: tick a moment so its answer shows


def _samples_box(run_id, live_run):
    """The run's latest samples, re-read once a second while it is live: one row read, not a second
    live.watch (its heartbeat and full refresh belong to the charts' fragment)."""
    @st.fragment(run_every=1.0 if live_run else None)
    def box():
        _samples(((manager().db.get_run(run_id) or {}).get("meta")) or {})
    box()


def _samples(meta):
    samples = meta.get("samples")
    if samples:
        step = f"{samples['step']:,}" if isinstance(samples.get("step"), int) else "?"
        st.caption(f"at step {step}, {samples['mode']} mode")
        st.code(" ".join(samples["words"]) if samples["words"] else samples.get("error", ""), language=None,
                wrap_lines=True)


def samples_and_downloads(main, train_mode_option=True):
    """Sample from the run (eval or the BatchNorm-bug train mode) and download its records."""
    run_id = main.run_id
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Samples**")
        if main.live:
            a, b = st.columns(2)
            train_mode = train_mode_option and b.checkbox("in training mode (the BatchNorm bug)",
                                                          key="sample_train_mode")
            a.button("Sample 10 names", key="btn_sample", on_click=_ask_samples,
                     args=(run_id, "train" if train_mode else "eval"))
        # the worker answers within a flush (~0.2 s), while the page only reruns its fragments: the
        # samples are drawn in one, or they would wait for the next full rerun (Pause or Stop)
        _samples_box(run_id, main.live)
    with c2:
        st.markdown("**Download**")
        if main.state not in ("starting", "ready", "running"):
            df = pd.DataFrame({"step": main.steps, "loss": main.loss, "lr": main.lr})
            st.download_button("Losses (CSV)", df.to_csv(index=False), f"{run_id}-loss.csv", "text/csv",
                               key="dl_loss")
            st.download_button("Histogram statistics (CSV)",
                               pd.DataFrame(stats_table(main.captures())).to_csv(index=False),
                               f"{run_id}-stats.csv", "text/csv", key="dl_stats")
            st.download_button("Everything (JSON)", live.export_json(main), f"{run_id}.json", "application/json",
                               key="dl_json")
            st.download_button("Figures (HTML)", figures_html(main, state.get(f"scrub_{run_id}")),
                               f"{run_id}-figures.html", "text/html", key="dl_fig")
        else:
            st.caption("Downloads appear when the run is paused, stopped or finished.")
