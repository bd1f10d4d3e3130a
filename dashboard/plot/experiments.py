"""
Drawing an experiment: its trials (rows as core.experiments.study.trial_row gives them) in, Plotly figures
out. Finished trials are dots, pruned ones hollow (their last dev loss), the best a star; the goal a line.
"""

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

BLUE, RED, GREY, GREEN = "#3b6ea5", "#d1495b", "#9aa0a6", "#2e933c"
LAYOUT = dict(margin=dict(l=10, r=10, t=36, b=10), template="plotly_white", showlegend=False, uirevision="keep")


def _scored(rows):
    return [r for r in rows if r["dev_loss"] is not None and math.isfinite(r["dev_loss"])]


def _log_axis(values):
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(nums) > 1 and min(nums) > 0 and max(nums) / min(nums) >= 50


def by_hyperparameter(rows, keys, best=None, goal=None):
    """Dev loss against each hyperparameter, side by side: one subplot a knob, shared y."""
    rows = _scored(rows)
    fig = make_subplots(rows=1, cols=max(1, len(keys)), shared_yaxes=True, subplot_titles=list(keys),
                        horizontal_spacing=0.04)
    for i, k in enumerate(keys, 1):
        for state, symbol, color in (("finished", "circle", BLUE), ("pruned", "circle-open", GREY),
                                     ("running", "diamond-open", GREEN), ("failed", "x", RED)):
            sel = [r for r in rows if r["state"] == state and k in r["params"]]
            if sel:
                fig.add_trace(go.Scatter(x=[_plain(r["params"][k]) for r in sel], y=[r["dev_loss"] for r in sel],
                                         mode="markers", marker=dict(symbol=symbol, size=9, color=color),
                                         text=[f"trial {r['number']} ({state})" for r in sel], name=state,
                                         hovertemplate="%{text}<br>" + k + " %{x}<br>dev %{y:.4f}<extra></extra>"),
                              row=1, col=i)
        if best is not None and k in best["params"]:
            fig.add_trace(go.Scatter(x=[_plain(best["params"][k])], y=[best["dev_loss"]], mode="markers",
                                     marker=dict(symbol="star", size=16, color="#edae49", line=dict(width=1)),
                                     hovertemplate=f"best: trial {best['number']}<extra></extra>"), row=1, col=i)
        if _log_axis([r["params"].get(k) for r in rows]):
            fig.update_xaxes(type="log", row=1, col=i)
        if goal is not None:
            fig.add_hline(y=goal, line=dict(color=RED, dash="dot", width=1), row=1, col=i)
    fig.update_yaxes(title_text="dev loss", row=1, col=1)
    fig.update_layout(height=300, **LAYOUT)
    return fig


def _plain(v):
    return str(v) if isinstance(v, bool) else v


def parallel(rows, keys):
    """Parallel coordinates: a line per scored trial through each hyperparameter to its dev loss."""
    rows = _scored(rows)
    dims = []
    for k in keys:
        vals = [r["params"].get(k) for r in rows]
        if any(isinstance(v, bool) for v in vals):
            vals = [float(bool(v)) for v in vals]
        log = _log_axis(vals)
        dims.append(dict(label=f"log10 {k}" if log else k,
                         values=[math.log10(v) if log else v for v in vals]))
    dev = [r["dev_loss"] for r in rows]
    dims.append(dict(label="dev loss", values=dev))
    fig = go.Figure(go.Parcoords(line=dict(color=dev, colorscale="Viridis_r", showscale=True,
                                           colorbar=dict(title="dev")), dimensions=dims))
    fig.update_layout(height=300, **{**LAYOUT, "margin": dict(l=50, r=40, t=40, b=20)})
    return fig


def curves(runs, goal=None):
    """Training loss (thin) and dev loss at the checkpoints (dots) of one or two trials: [(label, steps, loss,
    evals)], evals as the runs file keeps them: (step, train, val)."""
    fig = go.Figure()
    for (label, steps, loss, evals), color in zip(runs, (BLUE, RED)):
        if len(steps):
            stride = max(1, len(steps) // 2000)  # a few thousand points are plenty for a line
            fig.add_trace(go.Scatter(x=steps[::stride], y=loss[::stride], mode="lines", name=f"{label} train",
                                     line=dict(color=color, width=1), opacity=0.35))
        ev = [e for e in evals if e[2] is not None]
        fig.add_trace(go.Scatter(x=[e[0] for e in ev], y=[e[2] for e in ev], mode="lines+markers",
                                 name=f"{label} dev", line=dict(color=color, width=2)))
    if goal is not None:
        fig.add_hline(y=goal, line=dict(color=RED, dash="dot", width=1), annotation_text=f"goal {goal:g}")
    fig.update_layout(height=300, yaxis_title="loss", xaxis_title="step",
                      **{**LAYOUT, "showlegend": True, "legend": dict(orientation="h", y=1.12)})
    fig.update_yaxes(range=[1.9, 3.4])  # the first steps' losses (up to 27 at a raw init) would flatten the rest
    return fig
