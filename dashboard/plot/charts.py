"""
Drawing: figure builders that take recorded numbers (arrays, Capture records)
and return Plotly figures. No training, no hooks, no histogram math beyond
turning counts into a density -- that lives in core.capture.histogram.
Histograms arrive as precomputed counts and are drawn as lines (the lecture's
overlaid per-layer plots): ~100 points a layer, cheap for the browser.
The still view hands these figures to Plotly; while a run trains, dashboard/plot/svg.py draws
the same figures as one server-made SVG picture.
"""

import math

import numpy as np

from core.capture.histogram import bin_centers, density
from core.training.lr_finder import WINDOW, window_mean

COLORS = ["#3b6ea5", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#2e933c", "#8d6a9f", "#c05746",
          "#5d576b", "#1b998b"]
LAYOUT = dict(margin=dict(l=10, r=10, t=36, b=10), height=320, template="plotly_white",
              legend=dict(font=dict(size=11)), uirevision="keep")


class Fig(dict):
    """A figure as plain data ({"data": [...], "layout": {...}}): cheap to build every second;
    st.plotly_chart takes it as is. add_trace / add_hline / add_vline mirror plotly's names."""

    def add_trace(self, trace):
        self["data"].append(trace)

    def add_hline(self, y, line, annotation_text=None, annotation_position=None):
        self["layout"].setdefault("shapes", []).append(dict(type="line", xref="x domain", yref="y", x0=0, x1=1,
                                                            y0=y, y1=y, line=line))
        if annotation_text:
            self["layout"].setdefault("annotations", []).append(
                dict(text=annotation_text, xref="x domain", yref="y", x=1, y=y, showarrow=False,
                     xanchor="right", yanchor="bottom" if "top" in (annotation_position or "") else "top",
                     font=dict(size=11, color="#666")))

    def add_vline(self, x, line, annotation_text=None):
        """A vertical line at step x over the plot's height; its label reads up along it, from the top."""
        self["layout"].setdefault("shapes", []).append(dict(type="line", xref="x", yref="y domain", x0=x, x1=x,
                                                            y0=0, y1=1, line=line))
        if annotation_text:
            self["layout"].setdefault("annotations", []).append(
                dict(text=annotation_text, xref="x", yref="y domain", x=x, y=1, showarrow=False, textangle=-90,
                     xanchor="right", yanchor="top", font=dict(size=11, color=line.get("color", "#666"))))

    @property
    def title(self):
        return self["layout"]["title"]["text"]


def _fig(title, **kw):
    return Fig(data=[], layout=dict(title=dict(text=title, font=dict(size=14)), **{**LAYOUT, **kw}))


def Scatter(**kw):
    return dict(type="scatter", **kw)


def _arr(a):
    return np.asarray(a).tolist()


def color(i):
    return COLORS[i % len(COLORS)]


# -----------------------------------------------------------------------------
# loss

SMOOTH_POINTS = 200  # the smoothed loss line: about this many window means, however long the run


def loss_figure(curves, init_expected=None, log=True, reference=None, markers=None):
    """
    curves: [(label, steps, loss, evals)] -- the run first, then a compared run.
    log10 loss (or the loss itself, log=False), thin; a smoothed line over it; val loss as markers.
    reference: (value, text) drawn as a line, e.g. the count model's NLL.
    markers: [(step, label)] -- the run's interventions, as vertical lines (add_markers).
    """
    f = np.log10 if log else (lambda v: np.asarray(v, dtype=float))
    fig = _fig("loss (log10)" if log else "loss", xaxis=dict(title="step"),
               yaxis=dict(title="log10 loss" if log else "loss"))
    for k, (label, steps, loss, evals) in enumerate(curves):
        dash = "solid" if k == 0 else "dash"
        with np.errstate(divide="ignore", invalid="ignore"):
            y = f(loss)
        fig.add_trace(Scatter(x=steps, y=y, mode="lines", name=f"{label} (step)", opacity=0.3,
                              line=dict(color=color(k), width=1, dash=dash)))
        if len(y) > 20:
            s_steps, s_y = block_mean(steps, y, max(1, len(y) // SMOOTH_POINTS))
            fig.add_trace(Scatter(x=s_steps, y=s_y, mode="lines", name=f"{label} (smoothed)",
                                  line=dict(color=color(k), width=2.5, dash=dash)))
        _add_val(fig, label, k, evals, f)
    first = np.asarray(curves[0][1]) if curves else np.zeros(0)
    if 0 < len(first) < 10:  # the first second of a run: steps 0..10, not a -0.5..0.5 axis around one point
        fig["layout"]["xaxis"]["range"] = [0, max(10, int(first[-1]))]
    if init_expected:
        fig.add_hline(y=float(f(init_expected)), line=dict(color="#888", dash="dot"),
                      annotation_text="−ln(1/V): a blank model's loss", annotation_position="top right")
    if reference is not None:
        fig.add_hline(y=float(f(reference[0])), line=dict(color=color(1), dash="dash"),
                      annotation_text=reference[1], annotation_position="top right")
    return add_markers(fig, markers)


MARKER_COLOR = "#8d6a9f"


def add_markers(fig, markers):
    """Interventions mid-run (core.training.interventions): [(step, label)], each a dotted vertical line at
    the step it was applied before, labelled, so a learner sees what the curves answer to."""
    for step, label in markers or ():
        fig.add_vline(step, line=dict(color=MARKER_COLOR, dash="dot", width=1.5), annotation_text=label)
    return fig


def _add_val(fig, label, k, evals, f):
    """A run's val estimates (evals: [(step, train, val)]) as diamonds on a dotted line, through f."""
    val = [(step, float(f(v))) for step, _, v in evals or () if v is not None and v > 0]
    if val:
        fig.add_trace(Scatter(x=[s for s, _ in val], y=[v for _, v in val], mode="markers+lines",
                              name=f"{label} (val)", marker=dict(symbol="diamond", size=9, color=color(k + 3)),
                              line=dict(width=1, dash="dot", color=color(k + 3))))


def block_mean(steps, y, window):
    """The lecture's torch.tensor(lossi).view(-1, window).mean(1): one point per full window of steps,
    at the window's last step (a partial last window waits until it is full)."""
    ends, means = window_mean(y, window, every=window)
    return np.asarray(steps)[ends], means


def gap_breaks(steps, names, values, cadence=None):
    """
    Recorded steps as recorded: where two neighbouring captures lie further apart than the run's
    cadence (the store thinned old ones, TensorBoard-style), a NaN row goes between them, so no line
    is drawn across steps that were never kept. cadence: the expected gap (default: the median gap of
    the newest captures, which the store keeps exact). Returns (steps, names, values) with the breaks.
    """
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    gaps = np.diff(steps)
    if len(gaps) < 2:
        return steps, names, values
    cadence = cadence or float(np.median(gaps[-20:]))
    at = np.flatnonzero(gaps > 1.5 * cadence) + 1  # a break before each of these rows
    if not len(at):
        return steps, names, values
    return (np.insert(steps, at, np.nan), names,
            np.insert(values, at, np.full((len(at), values.shape[1]), np.nan), axis=0))


def _lone_points(y, size):
    """A marker size per point: `size` where a point has no line through it (no recorded neighbour on
    either side), 0 elsewhere -- so a capture the thinning left alone still shows as a dot."""
    ok = np.isfinite(np.asarray(y, dtype=float))
    if not len(ok):
        return []
    prev, nxt = np.r_[False, ok[:-1]], np.r_[ok[1:], False]
    return np.where(ok & ~prev & ~nxt, size, 0).tolist()


def downsample(steps, values, max_points=4000):
    """Every k-th point, keeping the last: the raw loss line never costs the browser more than max_points."""
    n = len(steps)
    if n <= max_points:
        return steps, values
    k = math.ceil(n / max_points)
    idx = np.r_[np.arange(0, n - 1, k), n - 1]
    return steps[idx], values[idx]


# -----------------------------------------------------------------------------
# histograms


def histogram_figure(caps, group, title, only_2d=False):
    """
    The lecture's overlaid per-layer histograms for one group ("act", "agrad", "wgrad").
    caps: [(label, Capture)] -- a compared run's capture is drawn dashed.
    None when the model has no watched layer of the kind: a panel with no data is not drawn.
    """
    fig = _fig(title, yaxis=dict(title="density"))
    for k, (label, c) in enumerate(caps):
        if c is None:
            continue
        shapes = dict(c.weights)
        stats = {r["layer"]: r for r in c.layer_stats()}
        wstats = {w["name"]: w for w in c.weight_stats()}
        for j, (name, kind, i) in enumerate(c.rows(group)):
            if only_2d and len(shapes.get(name, ())) != 2:
                continue
            lo, hi = float(c.edges[i, 0]), float(c.edges[i, 1])
            counts = c.counts[i, 1:-1]
            x = bin_centers(lo, hi, len(counts))
            y = density(counts, lo, hi)
            mean, std = float(c.stats[i, 0]), float(c.stats[i, 1])
            if group == "act":
                sat = stats[name]["saturated_pct"]
                extra = f", sat {sat:.1f}%" if sat is not None else ""
                text = f"{name} ({kind}): mean {mean:+.2f}, std {std:.2f}{extra}"
            elif group == "agrad":
                text = f"{name} ({kind}): std {std:.2e}"
            else:
                w = wstats[name]
                text = f"{name} {tuple(w['shape'])}: std {std:.2e}, grad:data {w['grad_data_ratio']:.2e}"
            if k:
                text = f"[{label}] {text}"
            fig.add_trace(Scatter(x=x, y=y, mode="lines", name=text, legendgroup=name,
                                  line=dict(color=color(j), width=2, dash="solid" if k == 0 else "dash"),
                                  visible=True if (group != "wgrad" or only_2d or len(shapes.get(name, ())) == 2)
                                  else "legendonly"))
    if not fig["data"]:  # e.g. GPT's attention-only steps: no tanh, ReLU or norm layer; no empty panel
        return None
    fig["layout"].update(height=340, legend=dict(font=dict(size=10), orientation="v"))
    return fig


def update_ratio_figure(series, compare=None, markers=None):
    """series: (steps, names, values (steps x names) of log10 update:data); the lecture's -3 line;
    markers: the run's interventions [(step, label)]."""
    fig = _fig("update:data ratio, log10(std(Δθ)/std(θ))", xaxis=dict(title="step"), yaxis=dict(title="log10"))
    for k, ser in enumerate([series, compare]):
        if ser is None:
            continue
        steps, names, values = gap_breaks(*ser)
        for j, name in enumerate(names):
            fig.add_trace(Scatter(x=steps, y=values[:, j], mode="lines+markers",
                                  name=name if k == 0 else f"[B] {name}", legendgroup=name,
                                  line=dict(color=color(j), width=1.8, dash="solid" if k == 0 else "dash"),
                                  marker=dict(color=color(j), size=_lone_points(values[:, j], 6))))
    fig.add_hline(y=-3, line=dict(color="#222", dash="dash"), annotation_text="−3: the lecture's rule of thumb",
                  annotation_position="bottom right")
    return add_markers(fig, markers)


def raster_figure(matrix, dead, name, kind="tanh"):
    """The lecture's plt.imshow(h.abs() > 0.99): white = saturated; dead columns marked red on top."""
    rows, cols = matrix.shape
    fig = _fig(f"{name}: {'|h| > 0.99' if kind == 'tanh' else 'h == 0'} (white), probe batch × units",
               height=max(180, min(420, 60 + rows * 6)))
    fig.add_trace(dict(type="heatmap", z=matrix.astype(np.uint8),
                       colorscale=[[0, "#111111"], [1, "#ffffff"]], showscale=False, zmin=0, zmax=1,
                       hovertemplate="example %{y}, unit %{x}: %{z}<extra></extra>"))
    if len(dead):
        fig.add_trace(Scatter(x=list(dead), y=[-1.5] * len(dead), mode="markers", name="dead unit",
                              marker=dict(symbol="triangle-down", color="#d1495b", size=8)))
    fig["layout"].update(yaxis=dict(autorange="reversed", title="example", range=[rows, -3]),
                         xaxis=dict(title="unit", range=[-0.5, cols - 0.5]), showlegend=bool(len(dead)))
    return fig


# -----------------------------------------------------------------------------
# lecture 2: bigrams


def count_heatmap(N, P, itos):
    """The lecture's 27x27 figure: each cell shows its bigram and its count; hover adds P."""
    V = N.shape[0]
    chars = [itos[i] for i in range(V)]
    n = np.asarray(N)
    p = np.asarray(P)
    text = [[f"{chars[i]}{chars[j]}<br>{n[i, j]}" for j in range(V)] for i in range(V)]
    custom = [[[f"{chars[i]}{chars[j]}", float(p[i, j])] for j in range(V)] for i in range(V)]
    fig = _fig("N[ix1, ix2]: how often ix2 follows ix1", height=860, margin=dict(l=10, r=10, t=36, b=10))
    fig.add_trace(dict(type="heatmap", z=n.tolist(), x=chars, y=chars, text=text, texttemplate="%{text}",
                       textfont=dict(size=9), colorscale="Blues", showscale=False, customdata=custom, xgap=1,
                       ygap=1, hovertemplate="<b>%{customdata[0]}</b>: %{z:,} times, "
                                             "P = %{customdata[1]:.4f}<extra></extra>"))
    fig["layout"].update(xaxis=dict(title="next character (ix2)", side="top", tickfont=dict(size=11)),
                         yaxis=dict(title="character (ix1)", autorange="reversed", tickfont=dict(size=11)),
                         template="plotly_white")
    return fig


def smoothing_figure(smoothings, nlls, current):
    """Average NLL against the smoothing added to every count; the chosen one marked."""
    fig = _fig("NLL vs smoothing", height=300, xaxis=dict(title="smoothing", type="log"),
               yaxis=dict(title="average NLL"))
    xs = [max(s, 1e-3) for s in smoothings]  # 0 drawn at the axis' left edge
    fig.add_trace(Scatter(x=xs, y=nlls, mode="lines+markers", name="NLL", line=dict(color=color(0))))
    i = smoothings.index(current) if current in smoothings else None
    if i is not None:
        fig.add_trace(Scatter(x=[xs[i]], y=[nlls[i]], mode="markers+text", name="chosen",
                              text=[f"{nlls[i]:.4f}"], textposition="top center",
                              marker=dict(color=color(1), size=12)))
    fig["layout"]["showlegend"] = False
    return fig


def prob_rows_figure(P, Q, itos, row, labels=("counts", "neural net")):
    """Row `row` of two probability matrices side by side: which character comes next."""
    chars = [itos[i] for i in range(P.shape[0])]
    fig = _fig(f"P(next character | '{itos[row]}')", height=300, yaxis=dict(title="probability"),
               barmode="group", legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    for k, (M, label) in enumerate(zip((P, Q), labels)):
        if M is not None:
            fig.add_trace(dict(type="bar", x=chars, y=np.asarray(M[row]).tolist(), name=label,
                               marker=dict(color=color(k))))
    return fig


def prob_matrix_figure(P, itos, title):
    """A probability matrix as a small heatmap (rows: this character, columns: the next)."""
    chars = [itos[i] for i in range(P.shape[0])]
    fig = _fig(title, height=380)
    fig.add_trace(dict(type="heatmap", z=np.asarray(P).round(4).tolist(), x=chars, y=chars, colorscale="Blues",
                       zmin=0, zmax=float(np.asarray(P).max()), showscale=False,
                       hovertemplate="%{y}%{x}: P = %{z:.4f}<extra></extra>"))
    fig["layout"].update(yaxis=dict(autorange="reversed"), xaxis=dict(side="top"))
    return fig


# -----------------------------------------------------------------------------
# lecture 5: a gradient as a picture, and two runs' loss gap


def as_matrix(t):
    """A tensor as the 2-D picture the lecture would imshow: a vector is one row, (B, T, C) is (B, T*C)."""
    a = np.asarray(t, dtype=np.float64)
    if a.ndim == 0:
        return a.reshape(1, 1)
    if a.ndim == 1:
        return a.reshape(1, -1)
    return a.reshape(a.shape[0], -1)


def grad_figure(name, manual, diff, title=None):
    """
    Two heatmaps side by side: the manual gradient d<name> (blue-white-red, symmetric around 0)
    and manual minus autograd (its own scale, so float rounding shows up as speckle, and an
    exact match as a flat field).
    """
    m, d = as_matrix(manual), as_matrix(diff)
    rows, cols = m.shape
    vmax = float(np.abs(m).max()) or 1.0
    dmax = float(np.abs(d).max())
    fig = _fig(title or f"d{name}: the manual gradient, and manual − autograd",
               height=int(max(200, min(520, 120 + rows * 9))), showlegend=False)
    fig["layout"].update(
        xaxis=dict(domain=[0, 0.43], title="column"), yaxis=dict(autorange="reversed", title="row"),
        xaxis2=dict(domain=[0.55, 0.98], title="column"), yaxis2=dict(autorange="reversed", anchor="x2"),
        annotations=[dict(text=f"d{name} (max |·| {vmax:.2e})", x=0.215, y=1.0, xref="paper", yref="paper",
                          showarrow=False, yanchor="bottom", font=dict(size=12)),
                     dict(text="manual − autograd: " + (f"max |·| {dmax:.1e}" if dmax else "all zero, bit-exact"),
                          x=0.765, y=1.0, xref="paper", yref="paper", showarrow=False, yanchor="bottom",
                          font=dict(size=12))])
    fig["layout"]["margin"] = dict(l=10, r=10, t=56, b=10)
    fig.add_trace(dict(type="heatmap", z=m.tolist(), zmin=-vmax, zmax=vmax, colorscale="RdBu", reversescale=True,
                       colorbar=dict(x=0.44, len=0.9, thickness=10),
                       hovertemplate=f"d{name}[%{{y}}, %{{x}}] = %{{z:.3e}}<extra></extra>"))
    fig.add_trace(dict(type="heatmap", z=d.tolist(), zmin=-(dmax or 1.0), zmax=dmax or 1.0, colorscale="PuOr",
                       xaxis="x2", yaxis="y2", colorbar=dict(x=0.99, len=0.9, thickness=10, tickformat=".0e"),
                       hovertemplate="difference [%{y}, %{x}] = %{z:.2e}<extra></extra>"))
    return fig


def loss_gap_figure(steps, gap, points=400):
    """
    |loss(manual) − loss(autograd)| per step, log10, as the largest gap in each window of steps
    (a 200k-step run stays ~400 points and no spike is thinned away). Identical steps sit at −9.
    """
    steps, gap = np.asarray(steps), np.asarray(gap, dtype=np.float64)
    w = max(1, math.ceil(len(gap) / points))
    title = "|loss with manual gradients − loss with autograd|" + (f" (max per {w:,} steps)" if w > 1 else "")
    fig = _fig(title, xaxis=dict(title="step"), yaxis=dict(title="log10 |difference|", range=[-9.5, 0]),
               showlegend=False)
    x = y = np.zeros(0)
    if len(gap):
        m = (len(gap) + w - 1) // w * w
        g = np.pad(gap, (0, m - len(gap)), constant_values=0.0).reshape(-1, w).max(1)
        x = steps[np.minimum(np.arange(0, m, w), len(steps) - 1)]
        y = np.log10(np.where(g > 0, g, 1e-9))  # identical losses are drawn on the -9 line
    fig.add_trace(Scatter(x=_arr(x), y=_arr(y), mode="markers", name="gap", marker=dict(size=4, color=color(1)),
                          hovertemplate="step %{x}: log10 gap %{y:.2f}<extra></extra>"))
    fig.add_hline(y=-9, line=dict(color="#2e933c", dash="dot"), annotation_text="−9: identical losses",
                  annotation_position="top right")
    return fig


# -----------------------------------------------------------------------------
# lecture 6: the loss averaged over windows of 1,000 steps; lecture 7: train/val estimates, attention


def window_loss_figure(curves, window=1000, markers=None):
    """curves: [(label, steps, loss, evals)]; the windowed mean of log10 loss, val estimates as diamonds.
    markers: the run's interventions [(step, label)]."""
    fig = _fig(f"log10 loss, mean of every {window:,} steps (the lecture's lossi.view(-1, {window}).mean(1))",
               xaxis=dict(title="step"), yaxis=dict(title="log10 loss"))
    for k, (label, steps, loss, evals) in enumerate(curves):
        with np.errstate(divide="ignore", invalid="ignore"):
            xs, ys = block_mean(steps, np.log10(np.asarray(loss, dtype=np.float64)), window)
        fig.add_trace(Scatter(x=_arr(xs), y=_arr(ys), mode="lines", name=f"{label} (train, mean of {window:,})",
                              line=dict(color=color(k), width=2)))
        _add_val(fig, label, k, evals, math.log10)
    return add_markers(fig, markers)


def eval_figure(evals, expected_val=None, label="run", markers=None):
    """GPT's estimate_loss over the run: train and val at every eval step; the lecture's val as a line."""
    fig = _fig("estimated loss (mean of eval_iters batches)", xaxis=dict(title="step"), yaxis=dict(title="loss"))
    rows = [e for e in evals if e[1] is not None and e[2] is not None]
    for j, name in ((1, "train"), (2, "val")):
        fig.add_trace(Scatter(x=[e[0] for e in rows], y=[e[j] for e in rows], mode="markers+lines",
                              name=f"{label} {name}", marker=dict(size=8), line=dict(color=color(j - 1), width=2)))
    if expected_val:
        fig.add_hline(y=expected_val, line=dict(color="#d1495b", dash="dash"),
                      annotation_text=f"the lecture's val ≈ {expected_val:g}", annotation_position="top right")
    return add_markers(fig, markers)


def _char_label(c):
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(c, c)


def attention_figure(att, chars, title):
    """
    att: (n_head, T, T) attention weights of one layer; chars: the prompt's T characters.
    One heatmap per head, side by side: row t = what position t reads from. The causal
    mask's cells (the future) are drawn grey on their own layer: the grey triangle is the mask.
    """
    n_head, T, _ = att.shape
    labels = [f"{i}:{_char_label(c)}" for i, c in enumerate(chars)]  # positions keep repeated characters apart
    gap = 0.02 if n_head > 1 else 0.0
    w = (1 - gap * (n_head - 1)) / n_head
    masked = np.triu(np.ones((T, T), dtype=bool), k=1)
    size = min(520, max(260, 1300 // max(n_head, 1)))
    fig = Fig(data=[], layout=dict(title=dict(text=title, font=dict(size=14)), template="plotly_white",
                                   height=size + 90, margin=dict(l=10, r=10, t=60, b=10),
                                   plot_bgcolor="#ffffff", annotations=[]))
    for h in range(n_head):
        z = np.where(masked, np.nan, np.asarray(att[h], dtype=np.float64))
        n = "" if h == 0 else str(h + 1)
        x0 = h * (w + gap)
        fig.add_trace(dict(type="heatmap", z=[[None if v != v else round(float(v), 4) for v in row] for row in z],
                           x=labels, y=labels, xaxis=f"x{n}", yaxis=f"y{n}", zmin=0, zmax=1,
                           colorscale="Viridis", showscale=h == n_head - 1, xgap=1, ygap=1,
                           colorbar=dict(title="weight", thickness=12),
                           hovertemplate="%{y} reads %{x}: %{z:.3f}<extra>head " + str(h) + "</extra>"))
        fig.add_trace(dict(type="heatmap", z=[[1 if m else None for m in row] for row in masked], x=labels,
                           y=labels, xaxis=f"x{n}", yaxis=f"y{n}", zmin=0, zmax=1, showscale=False,
                           colorscale=[[0, "#c8c8c8"], [1, "#c8c8c8"]], xgap=1, ygap=1,
                           hovertemplate="%{y} cannot read %{x}: the future is masked<extra></extra>"))
        tick = dict(tickfont=dict(size=10 if T <= 24 else 8), showgrid=False)
        fig["layout"][f"xaxis{n}"] = dict(domain=[x0, x0 + w], anchor=f"y{n}", tickangle=0 if T <= 16 else -90,
                                          title=dict(text="reads from (key)", font=dict(size=11)), **tick)
        fig["layout"][f"yaxis{n}"] = dict(anchor=f"x{n}", autorange="reversed", scaleanchor=f"x{n}",
                                          showticklabels=h == 0, **tick,
                                          **({"title": dict(text="position (query)", font=dict(size=11))}
                                             if h == 0 else {}))
        fig["layout"]["annotations"].append(dict(text=f"head {h}", x=x0 + w / 2, y=1.0, xref="paper", yref="paper",
                                                 showarrow=False, yanchor="bottom", font=dict(size=12)))
    return fig


# -----------------------------------------------------------------------------
# lecture 3: the learning-rate finder and the 2-D embedding


def lr_finder_figure(lri, lossi, smoothed=None, suggestion=None):
    """The lecture's plt.plot(lri, lossi): loss against the exponent of the rate it was trained at;
    a smoothed line, the bottom of the valley and the suggested exponent as vertical lines."""
    fig = _fig("learning-rate sweep: loss vs lre (lr = 10**lre)", xaxis=dict(title="lre (log10 of the learning rate)"),
               yaxis=dict(title="loss"))
    fig.add_trace(Scatter(x=_arr(lri), y=_arr(lossi), mode="lines", name="loss (one minibatch)",
                          line=dict(color=color(0), width=1), opacity=0.45))
    if smoothed is not None:
        fig.add_trace(Scatter(x=_arr(lri), y=[None if v != v else v for v in _arr(smoothed)], mode="lines",
                              name=f"smoothed ({WINDOW} steps)", line=dict(color=color(0), width=2.5)))
    if suggestion is not None:
        exponent, lr, bottom = suggestion
        for x, text, c, dash in ((bottom, f"lowest: {bottom:.2f}", "#888", "dot"),
                                 (exponent, f"suggested: {exponent:.1f} (lr {lr:.2g})", color(1), "dash")):
            fig["layout"].setdefault("shapes", []).append(dict(type="line", xref="x", yref="y domain", x0=x, x1=x,
                                                               y0=0, y1=1, line=dict(color=c, dash=dash, width=2)))
            fig["layout"].setdefault("annotations", []).append(
                dict(text=text, xref="x", yref="y domain", x=x, y=1, showarrow=False, xanchor="right",
                     yanchor="top", textangle=-90, font=dict(size=11, color=c)))
    fig["layout"].update(height=340, legend=dict(orientation="h", y=-0.25))
    return fig


VOWELS = set("aeiou")


def embedding_figure(C, chars, step=None):
    """The lecture's scatter of C[:, 0] vs C[:, 1], each point labelled with its character;
    vowels, the '.' token and consonants in their own colours (the lecture's vowels cluster)."""
    C = np.asarray(C, dtype=float)
    title = "the embedding C: each character a point in 2-D" + (f" at step {step:,}" if step is not None else "")
    fig = _fig(title, xaxis=dict(title="C[:, 0]", zeroline=False),
               yaxis=dict(title="C[:, 1]", zeroline=False, scaleanchor="x", scaleratio=1))
    groups = (("vowels", lambda ch: ch in VOWELS, color(1)), (". (start / end)", lambda ch: ch == ".", "#444"),
              ("consonants", lambda ch: ch not in VOWELS and ch != ".", color(0)))
    for name, keep, c in groups:
        ix = [i for i, ch in enumerate(chars) if keep(ch)]
        if not ix:
            continue
        fig.add_trace(Scatter(x=C[ix, 0].tolist(), y=C[ix, 1].tolist(), mode="markers+text", name=name,
                              text=[chars[i] for i in ix], textposition="middle center",
                              textfont=dict(color="white", size=12), marker=dict(size=20, color=c),
                              hovertemplate="%{text}: (%{x:.2f}, %{y:.2f})<extra></extra>"))
    fig["layout"].update(height=480, legend=dict(orientation="h", y=-0.15))
    return fig
