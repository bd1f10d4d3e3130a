"""
Drawing: figure builders that take recorded numbers (arrays, Capture records)
and return Plotly figures. No training, no hooks, no histogram math beyond
turning counts into a density -- that lives in core.histogram.
Histograms arrive as precomputed counts and are drawn as lines (the lecture's
overlaid per-layer plots): ~100 points a layer, cheap for the browser.
"""

import math

import numpy as np

from core.histogram import bin_centers, density

COLORS = ["#3b6ea5", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#2e933c", "#8d6a9f", "#c05746",
          "#5d576b", "#1b998b"]
LAYOUT = dict(margin=dict(l=10, r=10, t=36, b=10), height=320, template="plotly_white",
              legend=dict(font=dict(size=11)), uirevision="keep")


class Fig(dict):
    """A figure as plain data ({"data": [...], "layout": {...}}): cheap to build every second;
    st.plotly_chart takes it as is. add_trace / add_hline mirror plotly's names."""

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


def loss_figure(curves, init_expected=None):
    """
    curves: [(label, steps, loss, evals)] -- the run first, then a compared run.
    log10 loss, thin; a smoothed line over it; val loss as markers.
    """
    fig = _fig("loss (log10)", xaxis=dict(title="step"), yaxis=dict(title="log10 loss"))
    for k, (label, steps, loss, evals) in enumerate(curves):
        dash = "solid" if k == 0 else "dash"
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log10(loss)
        fig.add_trace(Scatter(x=steps, y=y, mode="lines", name=f"{label} (step)", opacity=0.3,
                                 line=dict(color=color(k), width=1, dash=dash)))
        if len(y) > 20:
            s_steps, s_y = smooth(steps, y)
            fig.add_trace(Scatter(x=s_steps, y=s_y, mode="lines", name=f"{label} (smoothed)",
                                     line=dict(color=color(k), width=2.5, dash=dash)))
        if evals:
            es = [e[0] for e in evals if e[2] is not None]
            ev = [math.log10(e[2]) for e in evals if e[2] is not None and e[2] > 0]
            if ev:
                fig.add_trace(Scatter(x=es[:len(ev)], y=ev, mode="markers+lines", name=f"{label} (val)",
                                         marker=dict(symbol="diamond", size=9, color=color(k + 3)),
                                         line=dict(width=1, dash="dot", color=color(k + 3))))
    if init_expected:
        fig.add_hline(y=math.log10(init_expected), line=dict(color="#888", dash="dot"),
                      annotation_text="−ln(1/V): a blank model's loss", annotation_position="top right")
    return fig


def smooth(steps, y, points=200):
    """Mean over equal windows of steps: about `points` points (the lecture's view(-1, 1000).mean(1))."""
    n = len(y)
    w = max(1, n // points)
    m = (n // w) * w
    if m == 0:
        return steps, y
    ys = np.nanmean(np.asarray(y[:m]).reshape(-1, w), axis=1)
    xs = np.asarray(steps[:m]).reshape(-1, w)[:, -1]
    return xs, ys


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
    fig["layout"].update(height=340, legend=dict(font=dict(size=10), orientation="v"))
    return fig


def update_ratio_figure(series, compare=None):
    """series: (steps, names, values (steps x names) of log10 update:data); the lecture's -3 line."""
    fig = _fig("update:data ratio, log10(std(Δθ)/std(θ))", xaxis=dict(title="step"), yaxis=dict(title="log10"))
    for k, ser in enumerate([series, compare]):
        if ser is None:
            continue
        steps, names, values = ser
        for j, name in enumerate(names):
            fig.add_trace(Scatter(x=steps, y=values[:, j], mode="lines", name=name if k == 0 else f"[B] {name}",
                                     legendgroup=name,
                                     line=dict(color=color(j), width=1.8, dash="solid" if k == 0 else "dash")))
    fig.add_hline(y=-3, line=dict(color="#222", dash="dash"), annotation_text="−3: the lecture's rule of thumb",
                  annotation_position="bottom right")
    return fig


def raster_figure(matrix, dead, name, kind="tanh"):
    """The lecture's plt.imshow(h.abs() > 0.99): white = saturated; dead columns marked red on top."""
    rows, cols = matrix.shape
    fig = _fig(f"{name}: {'|h| > 0.99' if kind == 'tanh' else 'h == 0'} (white), probe batch × units",
               height=max(180, min(420, 60 + rows * 6)))
    fig.add_trace(dict(type="heatmap", z=matrix.astype(np.uint8).tolist(),
                       colorscale=[[0, "#111111"], [1, "#ffffff"]], showscale=False, zmin=0, zmax=1,
                       hovertemplate="example %{y}, unit %{x}: %{z}<extra></extra>"))
    if len(dead):
        fig.add_trace(Scatter(x=list(dead), y=[-1.5] * len(dead), mode="markers", name="dead unit",
                                 marker=dict(symbol="triangle-down", color="#d1495b", size=8)))
    fig["layout"].update(yaxis=dict(autorange="reversed", title="example", range=[rows, -3]),
                         xaxis=dict(title="unit", range=[-0.5, cols - 0.5]), showlegend=bool(len(dead)))
    return fig


# -----------------------------------------------------------------------------
# the live view: every panel in ONE figure -- one Plotly render a refresh is what keeps a
# browser on the training machine from eating the trainer's CPU (bench/bench_live.py)


def live_figure(panels, expected_loss=None):
    """
    panels: figures from the builders above in reading order (loss, update ratio, activations,
    activation gradients, weight gradients, raster); None leaves a gap. Their traces go into a
    2-column grid laid out by hand (plain dicts: building it costs ~1/10 of make_subplots);
    legends give way to the stats table the page shows beside it.
    """
    rows = (len(panels) + 1) // 2
    gap_x, gap_y = 0.06, 0.06
    w = (1 - gap_x) / 2
    h = (1 - gap_y * (rows - 1)) / rows
    # no template: validating one costs the server more than the whole figure
    data, layout = [], dict(height=330 * rows, margin=dict(l=10, r=10, t=40, b=10),
                            showlegend=False, hovermode=False, annotations=[], shapes=[])
    for k, f in enumerate(panels):
        if f is None:
            continue
        r, c = k // 2, k % 2
        n = k + 1
        xa, ya = ("x", "y") if n == 1 else (f"x{n}", f"y{n}")
        x0 = c * (w + gap_x)
        y1 = 1 - r * (h + gap_y)
        layout[f"xaxis{'' if n == 1 else n}"] = dict(domain=[x0, x0 + w], anchor=ya)
        yax = dict(domain=[y1 - h, y1], anchor=xa)
        src = f["layout"].get("yaxis", {})
        if src.get("autorange") == "reversed":
            yax["autorange"] = "reversed"
        if src.get("range") is not None:
            yax["range"] = list(src["range"])
        layout[f"yaxis{'' if n == 1 else n}"] = yax
        layout["annotations"].append(dict(text=f.title, x=x0 + w / 2, y=y1 + 0.005, xref="paper",
                                          yref="paper", showarrow=False, xanchor="center", yanchor="bottom",
                                          font=dict(size=13)))
        for t in f["data"]:
            if t.get("visible") == "legendonly":
                continue
            d = {k: v for k, v in t.items() if k not in ("name", "legendgroup", "hovertemplate", "visible")}
            d.update(xaxis=xa, yaxis=ya)
            data.append(d)
        ref = dict(xref=f"{xa} domain", yref=ya, x0=0, x1=1, type="line")
        if k == 1:
            layout["shapes"].append(dict(ref, y0=-3, y1=-3, line=dict(color="#222", dash="dash")))
        if k == 0 and expected_loss:
            y = math.log10(expected_loss)
            layout["shapes"].append(dict(ref, y0=y, y1=y, line=dict(color="#888", dash="dot")))
    return dict(data=data, layout=layout)


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
                              name="smoothed (50 steps)", line=dict(color=color(0), width=2.5)))
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
