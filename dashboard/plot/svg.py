"""
Drawing for the live view: a panel from dashboard.plot.charts (the same plain-dict figure the still
view hands to Plotly) written out by the server as a small SVG string. While a run trains the
page redraws every second; a browser shows a few SVGs in milliseconds, where a Plotly figure cost
it most of a core (bench/bench_live.py). No zoom, no hover -- that is what the still view is for.

It draws only what charts.py builds: line and marker scatter traces (dash, opacity), a 0/1
heatmap (the saturation raster), horizontal reference lines with their label, a title and a
compact legend.
"""

import base64
import io
import math
from html import escape

import numpy as np
from PIL import Image

W = 320                              # the viewBox width; the browser scales the SVG to its column
PAD = dict(l=44, r=10, t=26, b=38)   # room for the title, tick labels and axis titles
FONT = "font-family='sans-serif' font-size='11' fill='#444'"
DASH = {"solid": None, "dash": "6 4", "dot": "2 3"}
MAX_LEGEND_ROWS = 4                  # more entries than fit become "+N more"


def nice_ticks(lo, hi, n=5):
    """About n round numbers (1, 2, 5 times a power of ten) between lo and hi, and their spacing."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo], 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]
    return ticks, step


def tick_label(v, step):
    """A tick's text: as many decimals as its spacing needs; 10k for big steps, 1e-3 for tiny ones."""
    if abs(v) < step * 1e-6:
        return "0"
    if step >= 1000 and abs(v) >= 1000:
        return f"{v / 1000:g}k"
    if step < 1e-3:
        return f"{v:.0e}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{v:.{decimals}f}".replace("-", "−")


def _finite_range(arrays):
    lo, hi = math.inf, -math.inf
    for a in arrays:
        a = a[np.isfinite(a)]
        if len(a):
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    if lo > hi:
        return 0.0, 1.0
    if lo == hi:
        return lo - 0.5, hi + 0.5
    return lo, hi


def _points(px, py):
    """SVG path data for a line, broken where a value is missing (NaN, -inf of log10 0)."""
    ok = np.isfinite(px) & np.isfinite(py)
    xy = np.column_stack([px, py])
    # runs of good points: each becomes "M x y L x y L ..." (formatted in one % per run)
    edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
    parts = []
    for a, b in zip(edges[::2], edges[1::2]):
        run = xy[a:b].ravel().tolist()
        parts.append("M%.1f %.1f" % tuple(run[:2]) + ("L%.1f %.1f" * (b - a - 1)) % tuple(run[2:]))
    return "".join(parts)


def _png_1bit(matrix):
    """A bool matrix as a tiny black-and-white PNG (data URI): white = True."""
    img = Image.fromarray(np.where(matrix, 255, 17).astype(np.uint8), mode="L")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _legend_rows(entries, width):
    """Legend entries (text, color, dash) wrapped into rows that fit `width`."""
    rows, row, used = [], [], 0
    for e in entries:
        w = 22 + 6.1 * len(e[0]) + 12
        if row and used + w > width:
            rows.append(row)
            row, used = [], 0
        row.append((used, e))
        used += w
    if row:
        rows.append(row)
    return rows


def figure_svg(fig, height=None, legend=True, panel=None):
    """
    One charts.py figure ({"data": [...], "layout": {...}}) as an SVG string. `panel` names it
    (data-panel="...") so a page or a test can find it; the histogram lines keep their values
    in the path, so a change in the numbers is a change in the SVG.
    """
    h, body = _draw(fig, height, legend)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {h:.0f}' "
            f"style='width:100%;height:auto;display:block' data-panel='{panel or ''}'>{body}</svg>")


def grid_svg(panels, cols=2, gap=10):
    """
    Several figures as ONE SVG, `cols` a row, in reading order: panels = [(name, figure or None)].
    One picture is one element for Streamlit to send and one image for the browser to decode.
    """
    drawn = [(name, _draw(fig)) for name, fig in panels if fig is not None]
    out, y = [], 0.0
    for r in range(0, len(drawn), cols):
        row = drawn[r:r + cols]
        for c, (name, (h, body)) in enumerate(row):
            out.append(f"<svg x='{c * (W + gap)}' y='{y:.0f}' width='{W}' height='{h:.0f}' "
                       f"viewBox='0 0 {W} {h:.0f}' data-panel='{name}'>{body}</svg>")
        y += max(h for _, (h, _) in row) + gap
    width = cols * W + (cols - 1) * gap
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {max(y - gap, 1):.0f}' "
            f"style='width:100%;height:auto;display:block' class='zth-live'>{''.join(out)}</svg>")


def _draw(fig, height=None, legend=True):
    """(height, the SVG markup inside the <svg> tag) of one figure, {W} wide."""
    layout, traces = fig["layout"], [t for t in fig["data"] if t.get("visible", True) is True]
    h = height or layout.get("height", 300) * 0.72
    legend_entries = []
    if legend and layout.get("showlegend", True):
        for k, t in enumerate(traces):
            name = t.get("name")
            if name and t.get("type", "scatter") == "scatter":
                line = t.get("line", {})
                color = line.get("color") or t.get("marker", {}).get("color", "#444")
                dash = line.get("dash", "solid") if "lines" in t.get("mode", "lines") else "marker"
                legend_entries.append((name.split(":")[0], color, dash))
    width = W - PAD["l"] - PAD["r"]
    legend_rows = _legend_rows(legend_entries, width)
    if len(legend_rows) > MAX_LEGEND_ROWS:  # a GPT has 63 weights: name the first few, count the rest
        shown = sum(len(r) for r in legend_rows[:MAX_LEGEND_ROWS])
        while True:
            shown -= 1
            more = legend_entries[:shown] + [(f"+{len(legend_entries) - shown} more", None, "none")]
            legend_rows = _legend_rows(more, width)
            if len(legend_rows) <= MAX_LEGEND_ROWS or shown == 0:
                break
    total_h = h + (15 * len(legend_rows) + 6 if legend_rows else 0)
    x0, x1, y_top, y_bot = PAD["l"], W - PAD["r"], PAD["t"], h - PAD["b"]

    # ranges: a layout's own range wins; a reversed axis puts its smallest value on top
    heat = next((t for t in traces if t.get("type") == "heatmap"), None)
    xs = [np.asarray(t["x"], float) for t in traces if t.get("type", "scatter") == "scatter"]
    ys = [np.asarray(t["y"], float) for t in traces if t.get("type", "scatter") == "scatter"]
    if heat is not None:
        rows, cols = np.shape(heat["z"])
        xs.append(np.array([-0.5, cols - 0.5]))
        ys.append(np.array([-0.5, rows - 0.5]))
    xa, ya = layout.get("xaxis", {}), layout.get("yaxis", {})
    xlo, xhi = xa["range"] if xa.get("range") else _finite_range(xs)
    shapes_y = [s["y0"] for s in layout.get("shapes", []) if s.get("type") == "line"]
    if ya.get("range"):
        ybot_v, ytop_v = ya["range"]
    else:
        ylo, yhi = _finite_range(ys + [np.asarray(shapes_y, float)])
        pad = (yhi - ylo) * 0.04
        ylo, yhi = ylo - pad, yhi + pad
        ybot_v, ytop_v = (yhi, ylo) if ya.get("autorange") == "reversed" else (ylo, yhi)

    def sx(v):
        return x0 + (np.asarray(v, float) - xlo) / ((xhi - xlo) or 1) * (x1 - x0)

    def sy(v):
        return y_bot - (np.asarray(v, float) - ybot_v) / ((ytop_v - ybot_v) or 1) * (y_bot - y_top)

    out = [f"<rect width='{W}' height='{total_h:.0f}' fill='#fff'/>",
           f"<text x='{W / 2}' y='15' text-anchor='middle' font-family='sans-serif' font-size='12.5' "
           f"fill='#222'>{escape(layout.get('title', {}).get('text', ''))}</text>"]
    # grid and tick labels
    xt, xstep = nice_ticks(min(xlo, xhi), max(xlo, xhi), 5)
    yt, ystep = nice_ticks(min(ybot_v, ytop_v), max(ybot_v, ytop_v), 4)
    grid = []
    for v in xt:
        p = float(sx(v))
        grid.append(f"M{p:.1f} {y_top}V{y_bot}")
        out.append(f"<text x='{p:.1f}' y='{y_bot + 13}' text-anchor='middle' {FONT}>{tick_label(v, xstep)}</text>")
    for v in yt:
        p = float(sy(v))
        grid.append(f"M{x0} {p:.1f}H{x1}")
        out.append(f"<text x='{x0 - 4}' y='{p + 3.5:.1f}' text-anchor='end' {FONT}>{tick_label(v, ystep)}</text>")
    if heat is None:
        out.append(f"<path d='{''.join(grid)}' stroke='#e6e6e6' stroke-width='1' fill='none'/>")
    if xa.get("title"):
        out.append(f"<text x='{(x0 + x1) / 2}' y='{y_bot + 31}' text-anchor='middle' {FONT}>"
                   f"{escape(xa['title'])}</text>")
    if ya.get("title"):
        out.append(f"<text transform='translate(11 {(y_top + y_bot) / 2}) rotate(-90)' text-anchor='middle' "
                   f"{FONT}>{escape(ya['title'])}</text>")
    out.append(f"<svg x='{x0}' y='{y_top}' width='{x1 - x0}' height='{y_bot - y_top}' "
               f"viewBox='{x0} {y_top} {x1 - x0} {y_bot - y_top}' overflow='hidden'>")  # clip to the plot
    if heat is not None:
        z = np.asarray(heat["z"]).astype(bool)
        left, right = float(sx(-0.5)), float(sx(z.shape[1] - 0.5))
        top, bot = sorted((float(sy(-0.5)), float(sy(z.shape[0] - 0.5))))
        out.append(f"<image href='{_png_1bit(z)}' x='{left:.1f}' y='{top:.1f}' width='{right - left:.1f}' "
                   f"height='{bot - top:.1f}' preserveAspectRatio='none' style='image-rendering:pixelated'/>")
    for t in traces:
        if t.get("type", "scatter") != "scatter":
            continue
        px, py = sx(t["x"]), sy(t["y"])
        mode = t.get("mode", "lines")
        opacity = t.get("opacity", 1)
        if "lines" in mode:
            line = t.get("line", {})
            dash = DASH.get(line.get("dash", "solid"))
            out.append(f"<path d='{_points(px, py)}' fill='none' stroke='{line.get('color', '#444')}' "
                       f"stroke-width='{line.get('width', 1.5)}' stroke-linejoin='round'"
                       + (f" stroke-dasharray='{dash}'" if dash else "")
                       + (f" opacity='{opacity}'" if opacity != 1 else "") + "/>")
        if "markers" in mode:
            m = t.get("marker", {})
            r = m.get("size", 6) / 2
            tri = m.get("symbol") == "triangle-down"
            d = "".join((f"M{x - r:.1f} {y - r:.1f}h{2 * r:.1f}l{-r:.1f} {2 * r:.1f}z" if tri else
                         f"M{x - r:.1f} {y:.1f}l{r:.1f} {-r:.1f}l{r:.1f} {r:.1f}l{-r:.1f} {r:.1f}z")
                        for x, y in zip(px.tolist(), py.tolist()) if math.isfinite(x) and math.isfinite(y))
            out.append(f"<path d='{d}' fill='{m.get('color', '#444')}'/>")
    for s in layout.get("shapes", []):
        if s.get("type") == "line":
            p = float(sy(s["y0"]))
            line = s.get("line", {})
            dash = DASH.get(line.get("dash", "solid"))
            out.append(f"<path d='M{x0} {p:.1f}H{x1}' stroke='{line.get('color', '#444')}' stroke-width='1.2'"
                       + (f" stroke-dasharray='{dash}'" if dash else "") + "/>")
    out.append("</svg>")
    out.append(f"<rect x='{x0}' y='{y_top}' width='{x1 - x0}' height='{y_bot - y_top}' fill='none' "
               "stroke='#bbb'/>")
    for a in layout.get("annotations", []):  # a reference line's label, on the side with room for it
        p = float(sy(a["y"]))
        below = a.get("yanchor") == "top"
        if below and p + 14 > y_bot or not below and p - 14 < y_top:
            below = not below
        out.append(f"<text x='{x1 - 4}' y='{p + (12 if below else -4):.1f}' text-anchor='end' {FONT} "
                   f"stroke='#fff' stroke-width='3' paint-order='stroke'>{escape(a['text'])}</text>")
    for i, row in enumerate(legend_rows):
        y = h + 15 * i + 9
        for dx, (text, color, dash) in row:
            d = DASH.get(dash)
            if dash == "none":  # "+N more": text only
                out.append(f"<text x='{x0 + dx:.0f}' y='{y}' {FONT} font-style='italic'>{escape(text)}</text>")
                continue
            if dash == "marker":  # a marker-only trace (dead units): its triangle, not a line
                out.append(f"<path d='M{x0 + dx + 5:.0f} {y - 8}h8l-4 8z' fill='{color}'/>")
            else:
                out.append(f"<path d='M{x0 + dx:.0f} {y - 4}h18' stroke='{color}' stroke-width='2.5'"
                           + (f" stroke-dasharray='{d}'" if d else "") + "/>")
            out.append(f"<text x='{x0 + dx + 22:.0f}' y='{y}' {FONT}>{escape(text)}</text>")
    return total_h, "".join(out)
