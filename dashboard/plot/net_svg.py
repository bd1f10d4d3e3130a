"""
Drawing for the live micrograd MLP: a frame (core.micrograd.live.frame) as SVG strings the server
writes and the page shows inline, several times a second. Only draws: positions come from
core.micrograd.live.net_layout (one per model shape, so nothing moves between frames), numbers
from the frame. Labels are SVG <text>, so a reader (or a test) reads them off the page.

- datapoint_svg: one datapoint through the net: a box per neuron with w·x + b, its ReLU and
  d score / d output; an edge per weight, blue for +, red for -, as wide as |w|; the weights that
  moved most in the last step underlined in orange; a weight picked for Step drawn black with its update.
- layer_svg: the whole net smaller: every weight an edge, each neuron's circle as full as the share of
  the 100 datapoints it is active for (an empty circle is a dead ReLU).
- boundary_svg: the decision boundary and the 100 datapoints, each a click target (data-pick).
"""

import base64
import functools
import io
from html import escape

import numpy as np
from PIL import Image

from core.micrograd.live import net_layout, neuron_names, param_names

POS, NEG = "#3b6ea5", "#d1495b"   # weight > 0, weight < 0 (the boundary's two classes' colours)
CHANGE = "#f4a259"                # the weights that moved most this step
FONT = "font-family='sans-serif'"
MOVED_SHARE = 0.25                # underline the weights whose |change| is at least this share of the largest

# the datapoint graph: a 1000-unit-wide picture, ~940 px wide on the page at 1400 px, ~870 at 1280
DP_W, DP_ROW, DP_TOP = 1000, 34, 34
DP_COLS = {0: (45, 90), 1: (295, 226), 2: (650, 226), 3: (900, 200)}  # column: (centre x, box width)
BOX_H = 31
DP_FONT = 12.5  # ~12 px at 1400 px wide, ~11 px at 1280


@functools.cache
def param_index(sizes):
    """ (for each layer: W indices (nout, nin), b indices (nout,)) into the frame's 337-long arrays """
    names = {n: i for i, n in enumerate(param_names(sizes))}
    out = []
    for li, (nin, nout) in enumerate(zip(sizes, sizes[1:]), 1):
        W = np.array([[names[f"L{li}.N{j}.w{k}"] for k in range(1, nin + 1)] for j in range(1, nout + 1)])
        b = np.array([names[f"L{li}.N{j}.b"] for j in range(1, nout + 1)])
        out.append((W, b))
    return out


def fmt(v):
    return f"{v:.4f}"


def _edges(f, pos, x_out, x_in, width_max, weight=None):
    """ one path per weight (sizes[l] x sizes[l+1] of them per layer), the moved ones underlined first """
    sizes = tuple(int(s) for s in f["sizes"])
    data, delta = f["data"], f["delta"]
    names = param_names(sizes)
    big = np.abs(data).max() or 1.0
    moved = np.abs(delta)
    moved_cut = MOVED_SHARE * moved.max() if moved.max() > 0 else np.inf
    under, over, chosen = [], [], ""
    for li, (W, _) in enumerate(param_index(sizes), 1):
        src = [f"x{k}" for k in range(1, sizes[0] + 1)] if li == 1 else [f"L{li - 1}.N{k}"
                                                                           for k in range(1, sizes[li - 1] + 1)]
        for j in range(W.shape[0]):
            dst = f"L{li}.N{j + 1}"
            yb = pos[dst][1]
            for k in range(W.shape[1]):
                i = W[j, k]
                ya = pos[src[k]][1]
                d = f"M{x_out(li - 1):.1f} {ya:.1f}L{x_in(li):.1f} {yb:.1f}"
                w = data[i]
                if moved[i] >= moved_cut:
                    under.append(f"<path d='{d}' stroke='{CHANGE}' stroke-width='{width_max + 3:.1f}' "
                                 f"stroke-opacity='{0.35 + 0.65 * moved[i] / moved.max():.2f}'/>")
                over.append(f"<path class='w' data-w='{names[i]}' d='{d}' stroke='{POS if w >= 0 else NEG}' "
                            f"stroke-width='{0.3 + width_max * abs(w) / big:.2f}'/>")
                if names[i] == weight:
                    chosen = (f"<path class='chosen' d='{d}' stroke='#111' stroke-width='2.5' "
                              "stroke-dasharray='6 3'/>")
    return (f"<g fill='none' stroke-linecap='round'>{''.join(under)}</g>"
            f"<g fill='none' stroke-opacity='0.75'>{''.join(over)}</g>{chosen}")


@functools.cache
def _dp_layout(sizes):
    height = DP_ROW * max(sizes)
    pos = net_layout(sizes, tuple(DP_COLS[c][0] for c in range(len(sizes))), height)
    return {n: (x, y + DP_TOP) for n, (x, y) in pos.items()}, height + DP_TOP + 8


def datapoint_svg(f, point, opened=None, weight=None):
    """ the graph of datapoint `point` (a row of f["X"]) through the net, as one <svg>. opened: a neuron
    name drawn with a heavy outline (the page details it below); weight: a parameter name drawn black,
    with its pending update written beside it when the frame holds one. """
    sizes = tuple(int(s) for s in f["sizes"])
    pos, height = _dp_layout(sizes)
    names = neuron_names(sizes)
    act, out, dout = f["act"][point], f["out"][point], f["dout"][point]
    x, y = f["X"][point], int(f["y"][point])

    def x_out(c):
        return DP_COLS[c][0] + DP_COLS[c][1] / 2

    def x_in(c):
        return DP_COLS[c][0] - DP_COLS[c][1] / 2

    parts = [_edges(f, pos, x_out, x_in, 3.5, weight)]
    titles = ["inputs", f"layer 1: {sizes[1]} ReLU", f"layer 2: {sizes[2]} ReLU", "layer 3: the score"]
    for c, t in enumerate(titles[:len(sizes)]):
        parts.append(f"<text x='{DP_COLS[c][0]}' y='16' text-anchor='middle' {FONT} font-size='{DP_FONT + 0.5}' "
                     f"font-weight='bold' fill='#333'>{t}</text>")
    for k in range(sizes[0]):
        parts.append(_box(f"x{k + 1}", pos[f"x{k + 1}"], DP_COLS[0][1], f"x{k + 1}", fmt(x[k]), "", False, False))
    for c, name in enumerate(names):
        layer = int(name[1:name.index(".")])
        last = layer == len(sizes) - 1
        line1 = f"{name}  w·x+b = {fmt(act[c])}" if not last else f"{name}  score = {fmt(act[c])}"
        line2 = (f"relu {fmt(out[c])} · grad {fmt(dout[c])}" if not last
                 else f"y = {y:+d} · grad {fmt(dout[c])}")
        parts.append(_box(name, pos[name], DP_COLS[layer][1], line1, line2, "", not last and out[c] <= 0,
                          name == opened))
    if weight is not None and f["phase"] == "backward" and weight in param_names(sizes):
        parts.append(_update_label(f, weight, height + 14))
    height += 22  # the update's line: always there, so the picture keeps its size between frames
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {DP_W} {height}' class='zth-live mg-graph' "
            f"data-step='{int(f['k'])}' data-phase='{f['phase']}' data-point='{point}' "
            f"style='width:100%;height:auto;display:block'>{''.join(parts)}</svg>")


def _box(name, xy, width, line1, line2, line3, dead, opened):
    """ a neuron (or input) box: its name and numbers as text; grey when its ReLU is off for this datapoint """
    x, y = xy
    fill = "#ececec" if dead else "#fff"
    stroke = "stroke='#111' stroke-width='2.5'" if opened else "stroke='#888' stroke-width='1'"
    two = bool(line2)
    return (f"<g class='node' data-node='{name}' transform='translate({x:.1f} {y:.1f})'>"
            f"<rect x='{-width / 2:.1f}' y='{-BOX_H / 2}' width='{width}' height='{BOX_H}' rx='4' fill='{fill}' "
            f"{stroke}/>"
            f"<text x='{-width / 2 + 6:.1f}' y='{-2.5 if two else 4}' {FONT} font-size='{DP_FONT}' fill='#222'>"
            f"{escape(line1)}</text>"
            + (f"<text x='{-width / 2 + 6:.1f}' y='11.5' {FONT} font-size='{DP_FONT}' fill='#444'>{escape(line2)}</text>"
               if two else "") + "</g>")


def _update_label(f, weight, y):
    """ the picked weight's pending update, on a line under the graph (its edge is the black dashed one) """
    i = param_names(tuple(int(s) for s in f["sizes"])).index(weight)
    text = (f"Step {int(f['k'])}, pending: {weight} (the black dashed edge) {f['data'][i]:.6f} → {f['new'][i]:.6f}, "
            f"change {f['new'][i] - f['data'][i]:+.6f}")
    return (f"<text class='update' x='{DP_W / 2}' y='{y}' text-anchor='middle' {FONT} font-size='{DP_FONT + 1}' "
            f"font-weight='bold' fill='#111'>{escape(text)}</text>")


# the layer view: a 520-unit-wide picture for a half-width column (~500 px at 1400 px, ~450 at 1280)
LV_W, LV_TOP, LV_ROW = 520, 30, 24
LV_COLS = (50, 200, 350, 480)
LV_FONT = 13
R = 7


def layer_svg(f):
    """ the whole net: circles for inputs and neurons, every weight an edge """
    sizes = tuple(int(s) for s in f["sizes"])
    height = LV_ROW * max(sizes)
    pos = {n: (x, y + LV_TOP) for n, (x, y) in net_layout(sizes, LV_COLS[:len(sizes)], height).items()}
    active = (f["out"] > 0).mean(axis=0)  # (33,): the share of datapoints each neuron passes on
    parts = [_edges(f, pos, lambda c: LV_COLS[c] + R, lambda c: LV_COLS[c] - R, 3.0)]
    titles = ["x", f"L1 ({sizes[1]})", f"L2 ({sizes[2]})", "L3 (score)"]
    for c, t in enumerate(titles[:len(sizes)]):
        parts.append(f"<text x='{LV_COLS[c]}' y='15' text-anchor='middle' {FONT} font-size='{LV_FONT}' "
                     f"fill='#333'>{t}</text>")
    for name, (x, y) in pos.items():
        if name.startswith("x"):
            fill, label = "#cfe0ef", name
        else:
            c = neuron_names(sizes).index(name)
            last = name.startswith(f"L{len(sizes) - 1}.")
            share = 1.0 if last else active[c]
            fill = "#fff" if share == 0 else f"rgba(42,157,143,{0.15 + 0.85 * share:.2f})"
            label = name.split(".")[1]
        parts.append(f"<g class='neuron' data-node='{name}'><circle cx='{x}' cy='{y}' r='{R}' fill='{fill}' "
                     f"stroke='#555'/><text x='{x - R - 3}' y='{y + 4.5}' text-anchor='end' {FONT} font-size='{LV_FONT}' "
                     f"fill='#444'>{label}</text></g>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {LV_W} {height + LV_TOP + 6}' "
            f"class='zth-live mg-layers' data-step='{int(f['k'])}' "
            f"style='width:100%;height:auto;display:block'>{''.join(parts)}</svg>")


# the decision boundary: a 480-unit-wide picture for a half-width column, every datapoint clickable
BD_W, BD_H, BD_PAD = 480, 380, (34, 8, 30, 28)  # left, right, top, bottom
IN, OUT = (201, 220, 236), (248, 211, 197)     # score > 0 (blue), score < 0 (pink): the demo's two colours


def _png(rgb):
    img = Image.fromarray(rgb, mode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def boundary_svg(f, point):
    """ the demo's last plot: the sign of the score on the frame's grid, the 100 points (each one a data-pick
    target: a click picks the graph's datapoint), the picked one ringed """
    xs, ys, Z, X, y = f["xs"], f["ys"], f["Z"], f["X"], f["y"]
    l, r, t, b = BD_PAD
    x0, x1, y0, y1 = float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])
    scale = min((BD_W - l - r) / (x1 - x0), (BD_H - t - b) / (y1 - y0))  # equal aspect, as the demo's plot
    w, h = (x1 - x0) * scale, (y1 - y0) * scale

    def px(v):
        return l + (v - x0) * scale

    def py(v):
        return t + h - (v - y0) * scale

    rgb = np.where((Z > 0)[::-1, :, None], np.array(IN, np.uint8), np.array(OUT, np.uint8))  # (ny,nx,3), top row first
    parts = [f"<text x='{l}' y='18' {FONT} font-size='14' font-weight='bold' fill='#333'>decision boundary "
             "(score &gt; 0 is blue) · click a point</text>",
             f"<image href='{_png(rgb)}' x='{l}' y='{t}' width='{w:.1f}' height='{h:.1f}' preserveAspectRatio='none'/>",
             f"<rect x='{l}' y='{t}' width='{w:.1f}' height='{h:.1f}' fill='none' stroke='#bbb'/>"]
    for v in range(int(np.ceil(x0)), int(np.floor(x1)) + 1):
        parts.append(f"<text x='{px(v):.1f}' y='{t + h + 16:.1f}' text-anchor='middle' {FONT} font-size='13' "
                     f"fill='#444'>{v}</text>")
    for v in range(int(np.ceil(y0)), int(np.floor(y1)) + 1):
        parts.append(f"<text x='{l - 6}' y='{py(v) + 4:.1f}' text-anchor='end' {FONT} font-size='13' "
                     f"fill='#444'>{v}</text>")
    for i, ((a, c), yi) in enumerate(zip(X.tolist(), y.tolist())):
        parts.append(f"<circle data-pick='{i}' cx='{px(a):.1f}' cy='{py(c):.1f}' r='5.5' "
                     f"fill='{POS if yi > 0 else NEG}' stroke='#fff' stroke-width='1' style='cursor:pointer'>"
                     f"<title>datapoint {i}</title></circle>")
    a, c = X[point]
    parts.append(f"<circle class='picked' cx='{px(a):.1f}' cy='{py(c):.1f}' r='10' fill='none' stroke='#111' "
                 "stroke-width='2.5' pointer-events='none'/>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {BD_W} {BD_H}' class='mg-boundary' "
            f"data-point='{point}' style='width:100%;height:auto;display:block'>{''.join(parts)}</svg>")
