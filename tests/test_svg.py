"""
The live view's server-drawn SVG panels (dashboard/plot/svg.py), from the same figure dicts the
still view hands to Plotly. The oracle for "it draws": the SVG parses as XML, and the numbers
it was given come back out of its paths.
"""

import base64
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from core.capture.record import Capture
from dashboard.plot import charts, svg

NS = "{http://www.w3.org/2000/svg}"


def parse(s):
    return ET.fromstring(s)  # raises on anything a browser's SVG parser would refuse


def line_paths(root):
    return [p.get("d") for p in root.iter(f"{NS}path") if p.get("fill") == "none" and p.get("stroke-width") == "2"]


def coords(d):
    return [tuple(map(float, m)) for m in re.findall(r"[ML]([-\d.]+) ([-\d.]+)", d)]


def test_nice_ticks_are_round_numbers_inside_the_range():
    ticks, step = svg.nice_ticks(0.13, 0.91, 4)
    assert step == 0.2 and ticks == pytest.approx([0.2, 0.4, 0.6, 0.8])
    ticks, step = svg.nice_ticks(0, 200_000, 5)
    assert step == 50_000 and ticks[0] == 0 and ticks[-1] == 200_000


def test_nice_ticks_of_an_empty_or_broken_range_give_one_tick():
    assert svg.nice_ticks(1.0, 1.0)[0] == [1.0]
    assert len(svg.nice_ticks(float("nan"), 1.0)[0]) == 1
    assert len(svg.nice_ticks(float("-inf"), 1.0)[0]) == 1


def test_tick_labels_for_thousands_decimals_tiny_steps_and_negatives():
    assert svg.tick_label(20_000, 10_000) == "20k"
    assert svg.tick_label(0.5, 0.5) == "0.5"
    assert svg.tick_label(-2.5, 0.5) == "−2.5"
    assert svg.tick_label(2e-4, 1e-4) == "2e-04"
    assert svg.tick_label(1e-12, 0.5) == "0"


def test_a_histogram_keeps_one_point_per_bin_in_order():
    bins = 8
    counts = np.zeros((1, bins + 2), np.int32)
    counts[0, 1:-1] = [0, 1, 2, 8, 8, 2, 1, 0]
    cap = Capture(step=7, loss=1.0, keys=(("act", "h"),), kinds=("tanh",), counts=counts,
                  edges=np.array([[-1, 1]], np.float32), stats=np.array([[0, 0.5, 0.1, 0, 0, 0]], np.float32),
                  weights=(), wratio=np.zeros((0, 3), np.float32))
    fig = charts.histogram_figure([("A", cap)], "act", "activations at step 7")
    root = parse(svg.figure_svg(fig, panel="act"))
    assert root.get("data-panel") == "act"
    (d,) = line_paths(root)
    pts = coords(d)
    assert len(pts) == bins
    xs, ys = zip(*pts)
    assert list(xs) == sorted(xs)                       # left to right
    assert ys[3] == ys[4] == min(ys)                    # the tallest bins are highest on screen
    assert ys[0] == ys[-1] == max(ys)
    assert "activations at step 7" in "".join(root.itertext())
    assert "h (tanh)" in "".join(root.itertext())       # the legend names the layer


def test_missing_values_break_the_line_instead_of_dropping_the_panel():
    steps = np.arange(6)
    loss = np.array([3.0, 2.0, 0.0, np.nan, 1.5, 1.2])   # log10(0) = -inf, then a NaN
    with np.errstate(divide="ignore"):
        fig = charts.loss_figure([("run", steps, loss, [])])
    root = parse(svg.figure_svg(fig, panel="loss"))
    d = [p.get("d") for p in root.iter(f"{NS}path") if p.get("opacity") == "0.3"][0]
    assert d.count("M") == 2 and len(coords(d)) == 4


def test_input_with_all_same_values_still_has_a_range():
    fig = charts.update_ratio_figure((np.array([0, 100, 200]), ["W1"], np.full((3, 1), -3.0)))
    root = parse(svg.figure_svg(fig))
    (d,) = [p.get("d") for p in root.iter(f"{NS}path") if p.get("stroke-width") == "1.8"]
    ys = {y for _, y in coords(d)}
    ref = [p.get("d") for p in root.iter(f"{NS}path") if p.get("stroke-dasharray") == "6 4"][0]
    assert len(ys) == 1 and ys == {float(ref.split()[1].split("H")[0])}   # flat, on the -3 line


def test_empty_figure_draws_its_frame_and_title():
    root = parse(svg.figure_svg(charts.loss_figure([]), panel="loss"))
    assert "loss (log10)" in "".join(root.itertext())


def test_raster_is_one_pixel_image_with_dead_units_marked_on_top():
    m = np.zeros((4, 6), bool)
    m[:, 2] = True          # a dead column
    m[1, 4] = True
    fig = charts.raster_figure(m, [2], "h", "tanh")
    root = parse(svg.figure_svg(fig, panel="raster"))
    (img,) = root.iter(f"{NS}image")
    png = Image.open(io.BytesIO(base64.b64decode(img.get("href").split(",", 1)[1])))
    px = np.asarray(png) > 128
    assert px.shape == (4, 6) and (px == m).all()          # row 0 of the raster is row 0 of the picture
    markers = [p for p in root.iter(f"{NS}path") if p.get("fill") == "#d1495b"]
    top = float(re.match(r"M[-\d.]+ ([-\d.]+)", markers[0].get("d")).group(1))
    assert len(markers) == 2 and top < float(img.get("y"))   # above the first example's row (and in the legend)


def test_names_with_markup_are_escaped():
    fig = charts.loss_figure([("<b>&run", np.arange(3), np.ones(3), [])])
    root = parse(svg.figure_svg(fig))
    assert "<b>&run (step)" in "".join(root.itertext())


def test_a_legend_of_63_weights_names_a_few_and_counts_the_rest():
    steps = np.arange(10)
    names = [f"blocks.{i // 16}.sa.heads.{i % 4}.query.weight" for i in range(63)]
    fig = charts.update_ratio_figure((steps, names, np.full((10, 63), -2.0)))
    root = parse(svg.figure_svg(fig))
    text = list(root.itertext())
    more = [t for t in text if t.startswith("+") and t.endswith(" more")]
    shown = [t for t in text if t in names]
    assert len(more) == 1 and int(more[0][1:-5]) == 63 - len(shown) and 0 < len(shown) < 16
    h = float(root.get("viewBox").split()[3])
    assert h < svg.W  # the 63-name legend made the panel ~1,000 units tall


# --- recorded steps as recorded ---------------------------------------------------------------------

def test_gap_breaks_where_the_store_thinned_old_captures():
    # a capture every step; the store kept every other old one (0, 2, 4, 6), then every step (7..12)
    steps = np.array([0, 2, 4, 6, 7, 8, 9, 10, 11, 12])
    values = np.arange(len(steps), dtype=float)[:, None]
    s, _, v = charts.gap_breaks(steps, ["W1"], values)
    assert np.isnan(s).sum() == 3 and np.isnan(v[:, 0]).sum() == 3   # before 2, 4 and 6; 6-7 is the cadence
    xs = s[np.isfinite(s)]
    assert xs.tolist() == steps.tolist()                               # every recorded step is still there


def test_gap_breaks_of_a_regular_cadence_add_nothing():
    steps = np.arange(0, 1000, 100)
    s, _, v = charts.gap_breaks(steps, ["W1"], np.ones((10, 1)))
    assert not np.isnan(s).any() and len(v) == 10


def test_update_ratio_draws_no_line_across_thinned_captures_and_dots_the_lone_points():
    steps = np.array([0, 4, 8, 12, 13, 14, 15, 16])
    fig = charts.update_ratio_figure((steps, ["W1"], np.full((8, 1), -3.0)))
    root = parse(svg.figure_svg(fig))
    (d,) = [p.get("d") for p in root.iter(f"{NS}path") if p.get("stroke-width") == "1.8"]
    runs = [coords("M" + r) for r in d.split("M")[1:]]
    assert [len(r) for r in runs] == [1, 1, 1, 5]       # 0 | 4 | 8 | 12-13-14-15-16: no line over 0..12
    trace = fig["data"][0]
    assert trace["marker"]["size"] == [6, 0, 6, 0, 6, 0, 0, 0, 0, 0, 0]   # the lone points get a dot
    dots = [p.get("d") for p in root.iter(f"{NS}path") if p.get("fill") == charts.color(0)]
    assert dots and dots[0].count("M") == 3


def test_lone_points_of_an_empty_series():
    assert charts._lone_points(np.zeros(0), 6) == []


def test_a_first_loss_point_gets_a_step_axis_not_minus_half_to_half():
    fig = charts.loss_figure([("run", np.array([0]), np.array([3.3]), [])])
    assert fig["layout"]["xaxis"]["range"] == [0, 10]
    root = parse(svg.figure_svg(fig))
    labels = [t.text for t in root.iter(f"{NS}text")]
    assert "0" in labels and "10" in labels and not any(t and t.startswith("−0.") for t in labels)


def test_a_histogram_of_a_kind_the_model_lacks_is_no_panel():
    cap = Capture(step=0, loss=1.0, keys=(("wgrad", "W"),), kinds=("linear",),
                  counts=np.zeros((1, 10), np.int32), edges=np.array([[-1, 1]], np.float32),
                  stats=np.zeros((1, 6), np.float32), weights=(("W", (4, 4)),), wratio=np.zeros((1, 3), np.float32))
    assert charts.histogram_figure([("A", cap)], "act", "activations") is None


@pytest.mark.parametrize("font", [13, 16])
def test_every_label_is_drawn_as_text_at_the_font_size_asked(font):
    fig = charts.loss_figure([("run", np.arange(50), np.linspace(3, 2, 50), [])], init_expected=3.3)
    root = parse(svg.grid_svg([("loss", fig)], cols=1, width=700, font=font))
    sizes = [float(t.get("font-size")) for t in root.iter(f"{NS}text")]
    assert len(sizes) > 8 and min(sizes) == font    # ticks, axis titles, legend: none smaller
