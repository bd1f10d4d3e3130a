"""
Drawing for the live view: a panel from dashboard.plot.charts (the same plain-dict figure the still
view hands to Plotly) written out by the server as a small SVG string. While a run trains the
page redraws every second; a browser shows a few SVGs in milliseconds, where a Plotly figure cost
it most of a core (bench/bench_live.py). No zoom, no hover -- that is what the still view is for.

It draws only what charts.py builds: line and marker scatter traces (dash, opacity), a 0/1
heatmap (the saturation raster), horizontal reference lines with their label, vertical markers
(interventions) with theirs, a title and a compact legend.
"""

import base64
import io
import math
from html import escape

import numpy as np
from PIL import Image

W = 520            # a panel's viewBox width: about its width in px in a page's left column at 1280-1400 px
FONT_SIZE = 13     # tick and axis labels in viewBox units, so ~13 px on screen when the panel is ~W px wide
HEIGHT = 1 / 1.08  # a panel's height per unit of its figure's Plotly height, at width W (320 -> ~300)
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


def _font(f):
    return f"font-family='sans-serif' font-size='{f:g}' fill='#444'"


def _legend_rows(entries, width, f=FONT_SIZE):
    """Legend entries (text, color, dash) wrapped into rows that fit `width` (f: the font size)."""
    rows, row, used = [], [], 0
    for e in entries:
        w = 1.9 * f + 0.56 * f * len(e[0]) + f
        if row and used + w > width:
            rows.append(row)
            row, used = [], 0
        row.append((used, e))
        used += w
    if row:
        rows.append(row)
    return rows


def figure_svg(fig, height=None, legend=True, panel=None, width=W, font=FONT_SIZE):
    """
    One charts.py figure ({"data": [...], "layout": {...}}) as an SVG string. `panel` names it
    (data-panel="...") so a page or a test can find it; the histogram lines keep their values
    in the path, so a change in the numbers is a change in the SVG.
    """
    h, body = _draw(fig, height, legend, width, font)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {h:.0f}' "
            f"style='width:100%;height:auto;display:block' data-panel='{panel or ''}'>{body}</svg>")


def grid_svg(panels, cols=2, gap=12, width=W, font=FONT_SIZE, tall=HEIGHT):
    """
    Several figures as ONE SVG, `cols` a row, in reading order: panels = [(name, figure or None)].
    One picture is one element for Streamlit to send and one image for the browser to decode.
    width, font: each panel's viewBox width and label size; tall: its height per unit of Plotly height.
    """
    drawn = [(name, _draw(fig, None, True, width, font, tall)) for name, fig in panels if fig is not None]
    out, y = [], 0.0
    for r in range(0, len(drawn), cols):
        row = drawn[r:r + cols]
        for c, (name, (h, body)) in enumerate(row):
            out.append(f"<svg x='{c * (width + gap)}' y='{y:.0f}' width='{width}' height='{h:.0f}' "
                       f"viewBox='0 0 {width} {h:.0f}' data-panel='{name}'>{body}</svg>")
        y += max(h for _, (h, _) in row) + gap
    total = cols * width + (cols - 1) * gap
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {total} {max(y - gap, 1):.0f}' "
            f"style='width:100%;height:auto;display:block' class='zth-live'>{''.join(out)}</svg>")


def _draw(fig, height=None, legend=True, width=W, f=FONT_SIZE, tall=HEIGHT):
    """(height, the SVG markup inside the <svg> tag) of one figure, `width` wide, labels `f` high.
    Every distance on the page is a multiple of f, so a bigger font keeps the same proportions."""
    layout, traces = fig["layout"], [t for t in fig["data"] if t.get("visible", True) is True]
    h = height or layout.get("height", 320) * tall * width / W
    font = _font(f)
    pad = dict(l=4.6 * f, r=0.9 * f, t=2.1 * f, b=3.1 * f)  # the title, tick labels and axis titles
    legend_entries = []
    if legend and layout.get("showlegend", True):
        for k, t in enumerate(traces):
            name = t.get("name")
            if name and t.get("type", "scatter") == "scatter" and t.get("showlegend", True):
                line = t.get("line", {})
                color = line.get("color") or t.get("marker", {}).get("color", "#444")
                dash = line.get("dash", "solid") if "lines" in t.get("mode", "lines") else "marker"
                legend_entries.append((name.split(":")[0], color, dash))
    inner = width - pad["l"] - pad["r"]
    legend_rows = _legend_rows(legend_entries, inner, f)
    if len(legend_rows) > MAX_LEGEND_ROWS:  # a GPT has 63 weights: name the first few, count the rest
        shown = sum(len(r) for r in legend_rows[:MAX_LEGEND_ROWS])
        while True:
            shown -= 1
            more = legend_entries[:shown] + [(f"+{len(legend_entries) - shown} more", None, "none")]
            legend_rows = _legend_rows(more, inner, f)
            if len(legend_rows) <= MAX_LEGEND_ROWS or shown == 0:
                break
    row_h = 1.4 * f
    total_h = h + (row_h * len(legend_rows) + 0.5 * f if legend_rows else 0)
    x0, x1, y_top, y_bot = pad["l"], width - pad["r"], pad["t"], h - pad["b"]

    # ranges: a layout's own range wins; a reversed axis puts its smallest value on top
    heat = next((t for t in traces if t.get("type") == "heatmap"), None)
    xs = [np.asarray(t["x"], float) for t in traces if t.get("type", "scatter") == "scatter"]
    ys = [np.asarray(t["y"], float) for t in traces if t.get("type", "scatter") == "scatter"]
    if heat is not None:
        rows, cols = np.shape(heat["z"])
        xs.append(np.array([-0.5, cols - 0.5]))
        ys.append(np.array([-0.5, rows - 0.5]))
    xa, ya = layout.get("xaxis", {}), layout.get("yaxis", {})
    vlines = [s for s in layout.get("shapes", []) if s.get("type") == "line" and s.get("xref") == "x"]
    xs.append(np.asarray([s["x0"] for s in vlines], float))  # an intervention just applied is in view
    xlo, xhi = xa["range"] if xa.get("range") else _finite_range(xs)
    shapes_y = [s["y0"] for s in layout.get("shapes", []) if s.get("type") == "line" and s.get("yref") == "y"]
    if ya.get("range"):
        ybot_v, ytop_v = ya["range"]
    else:
        ylo, yhi = _finite_range(ys + [np.asarray(shapes_y, float)])
        pad_v = (yhi - ylo) * 0.04
        ylo, yhi = ylo - pad_v, yhi + pad_v
        ybot_v, ytop_v = (yhi, ylo) if ya.get("autorange") == "reversed" else (ylo, yhi)

    def sx(v):
        return x0 + (np.asarray(v, float) - xlo) / ((xhi - xlo) or 1) * (x1 - x0)

    def sy(v):
        return y_bot - (np.asarray(v, float) - ybot_v) / ((ytop_v - ybot_v) or 1) * (y_bot - y_top)

    out = [f"<rect width='{width}' height='{total_h:.0f}' fill='#fff'/>",
           f"<text x='{width / 2:g}' y='{1.3 * f:.1f}' text-anchor='middle' font-family='sans-serif' "
           f"font-size='{1.1 * f:.1f}' fill='#222'>{escape(layout.get('title', {}).get('text', ''))}</text>"]
    # grid and tick labels: about one x tick per 9 labels' width, one y tick per 4.5 labels' height
    xt, xstep = nice_ticks(min(xlo, xhi), max(xlo, xhi), max(3, round((x1 - x0) / (9 * f))))
    yt, ystep = nice_ticks(min(ybot_v, ytop_v), max(ybot_v, ytop_v), max(2, round((y_bot - y_top) / (4.5 * f))))
    grid = []
    for v in xt:
        p = float(sx(v))
        grid.append(f"M{p:.1f} {y_top:.1f}V{y_bot:.1f}")
        out.append(f"<text x='{p:.1f}' y='{y_bot + 1.2 * f:.1f}' text-anchor='middle' {font}>"
                   f"{tick_label(v, xstep)}</text>")
    for v in yt:
        p = float(sy(v))
        grid.append(f"M{x0:.1f} {p:.1f}H{x1:.1f}")
        out.append(f"<text x='{x0 - 0.35 * f:.1f}' y='{p + 0.35 * f:.1f}' text-anchor='end' {font}>"
                   f"{tick_label(v, ystep)}</text>")
    if heat is None:
        out.append(f"<path d='{''.join(grid)}' stroke='#e6e6e6' stroke-width='1' fill='none'/>")
    if xa.get("title"):
        out.append(f"<text x='{(x0 + x1) / 2:.1f}' y='{y_bot + 2.6 * f:.1f}' text-anchor='middle' {font}>"
                   f"{escape(xa['title'])}</text>")
    if ya.get("title"):
        out.append(f"<text transform='translate({f:.1f} {(y_top + y_bot) / 2:.1f}) rotate(-90)' "
                   f"text-anchor='middle' {font}>{escape(ya['title'])}</text>")
    out.append(f"<svg x='{x0:.1f}' y='{y_top:.1f}' width='{x1 - x0:.1f}' height='{y_bot - y_top:.1f}' "
               f"viewBox='{x0:.1f} {y_top:.1f} {x1 - x0:.1f} {y_bot - y_top:.1f}' overflow='hidden'>")  # clip
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
            out.append(_markers(px, py, t.get("marker", {}), f / FONT_SIZE))
    for s in layout.get("shapes", []):
        if s.get("type") == "line" and s.get("yref") == "y":
            p = float(sy(s["y0"]))
            line = s.get("line", {})
            dash = DASH.get(line.get("dash", "solid"))
            out.append(f"<path d='M{x0:.1f} {p:.1f}H{x1:.1f}' stroke='{line.get('color', '#444')}' "
                       "stroke-width='1.2'" + (f" stroke-dasharray='{dash}'" if dash else "") + "/>")
    for s in vlines:  # an intervention's marker (charts.add_markers): a vertical line at its step
        p, line = float(sx(s["x0"])), s.get("line", {})
        dash = DASH.get(line.get("dash", "solid"))
        out.append(f"<path d='M{p:.1f} {y_top:.1f}V{y_bot:.1f}' stroke='{line.get('color', '#444')}' "
                   "stroke-width='1.5' class='marker'" + (f" stroke-dasharray='{dash}'" if dash else "") + "/>")
    out.append("</svg>")
    out.append(f"<rect x='{x0:.1f}' y='{y_top:.1f}' width='{x1 - x0:.1f}' height='{y_bot - y_top:.1f}' "
               "fill='none' stroke='#bbb'/>")
    for a in layout.get("annotations", []):  # a reference line's label, on the side with room for it
        if a.get("xref") == "x" and a.get("yref") == "y domain":  # a marker's label, reading up along it
            p = float(sx(a["x"]))
            if x0 <= p <= x1:
                out.append(f"<text transform='translate({p - 0.3 * f:.1f} {y_top + 0.3 * f:.1f}) rotate(-90)' "
                           f"text-anchor='end' font-family='sans-serif' font-size='{0.85 * f:.1f}' "
                           f"fill='{a.get('font', {}).get('color', '#444')}' stroke='#fff' stroke-width='3' "
                           f"paint-order='stroke'>{escape(a['text'])}</text>")
            continue
        if a.get("yref") != "y":
            continue
        p = float(sy(a["y"]))
        below = a.get("yanchor") == "top"
        if below and p + 1.2 * f > y_bot or not below and p - 1.2 * f < y_top:
            below = not below
        out.append(f"<text x='{x1 - 0.3 * f:.1f}' y='{p + (1.05 * f if below else -0.35 * f):.1f}' "
                   f"text-anchor='end' {font} stroke='#fff' stroke-width='3' paint-order='stroke'>"
                   f"{escape(a['text'])}</text>")
    for i, row in enumerate(legend_rows):
        y = h + row_h * i + 0.8 * f
        for dx, (text, color, dash) in row:
            d = DASH.get(dash)
            x = x0 + dx
            if dash == "none":  # "+N more": text only
                out.append(f"<text x='{x:.0f}' y='{y:.1f}' {font} font-style='italic'>{escape(text)}</text>")
                continue
            if dash == "marker":  # a marker-only trace (dead units): its triangle, not a line
                out.append(f"<path d='M{x + 0.4 * f:.1f} {y - 0.75 * f:.1f}h{0.7 * f:.1f}l{-0.35 * f:.1f} "
                           f"{0.7 * f:.1f}z' fill='{color}'/>")
            else:
                out.append(f"<path d='M{x:.0f} {y - 0.35 * f:.1f}h{1.5 * f:.1f}' stroke='{color}' "
                           "stroke-width='2.5'" + (f" stroke-dasharray='{d}'" if d else "") + "/>")
            out.append(f"<text x='{x + 1.9 * f:.0f}' y='{y:.1f}' {font}>{escape(text)}</text>")
    return total_h, "".join(out)


def _markers(px, py, m, scale=1.0):
    """A trace's markers as one path: diamonds, or the raster's downward triangles. A size may be one
    number or one per point (0: no marker there, e.g. a recorded point that has a line through it)."""
    size = m.get("size", 6)
    sizes = np.broadcast_to(np.asarray(size, float), np.shape(px)) * scale / 2
    tri = m.get("symbol") == "triangle-down"
    d = "".join((f"M{x - r:.1f} {y - r:.1f}h{2 * r:.1f}l{-r:.1f} {2 * r:.1f}z" if tri else
                 f"M{x - r:.1f} {y:.1f}l{r:.1f} {-r:.1f}l{r:.1f} {r:.1f}l{-r:.1f} {r:.1f}z")
                for x, y, r in zip(px.tolist(), py.tolist(), sizes.tolist())
                if r > 0 and math.isfinite(x) and math.isfinite(y))
    return f"<path d='{d}' fill='{m.get('color', '#444')}'/>"
