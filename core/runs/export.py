"""
A saved run as TensorBoard event files, so `tensorboard --logdir DIR` shows it beside runs from
anywhere else. Written with the tensorboard package's own event writer, from what the runs file
keeps (core.runs.db):

    loss/train                 the training loss at every step (the lectures' lossi)
    lr                         the learning rate at every step (an lr intervention shows here)
    loss/val, loss/train_eval  split_loss / estimate_loss at every evaluation (the whole split, eval mode)
    update:data/NAME           log10 std(update) / std(data) per parameter at every capture (the lecture's ud)
    activations/LAYER          histograms at every capture, from the recorded bucket counts and edges
    activation_grads/LAYER
    weight_grads/NAME
    interventions              a text entry at the step of each intervention (core.training.interventions)

Histograms go in TensorBoard's legacy HistogramProto, whose bucket i spans bucket_limit[i-1] ..
bucket_limit[i]: our under-range count, the recorded bins, the over-range count (core.capture.histogram).
"""

import io
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from core.capture.record import COL, UD
from core.training.interventions import from_list

GROUPS = {"act": "activations", "agrad": "activation_grads", "wgrad": "weight_grads"}
DBL_MAX = sys.float_info.max  # the legacy format's open-ended last bucket


def find_run(db, run):
    """The run row for an id, or for the unique run whose id starts with `run`; ValueError otherwise."""
    row = db.get_run(run)
    if row is not None:
        return row
    hits = [r for r in db.list_runs() if r["id"].startswith(run)] if run else []
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ValueError(f"{len(hits)} runs start with {run!r}; give more of the id")
    raise ValueError(f"no run {run!r} in {db.path}")


def run_folder(row):
    """The run's folder under a log directory: TensorBoard names the run after it (mlp-kaiming-3f2a...)."""
    return re.sub(r"[^\w.-]+", "-", row["name"]).strip("-") + "-" + row["id"]


def tensorboard(db, run, logdir):
    """
    Write run `run` (an id or its unique start) from the runs file `db` (a RunDB) as event files in
    logdir/<run_folder>, replacing an earlier export of it there. Returns (folder, counts) with counts
    {"scalars": n, "histograms": n, "interventions": n}.
    """
    row = find_run(db, run)
    run_id = row["id"]
    folder = Path(logdir) / run_folder(row)
    if folder.exists():  # a re-export replaces the old files: two would show every point twice
        for old in folder.glob("events.out.tfevents.*"):
            old.unlink()
    t = row["created"]  # the step axis is what the lectures read; every event carries the run's start time
    counts = dict(scalars=0, histograms=0, interventions=0)
    writer = EventFileWriter(str(folder), max_queue_size=1024)
    try:
        steps, loss, lr = db.steps_since(run_id)
        for s, l, r in zip(steps.tolist(), loss.tolist(), lr.tolist()):
            values = [Summary.Value(tag="loss/train", simple_value=l)]
            if r == r:
                values.append(Summary.Value(tag="lr", simple_value=r))
            writer.add_event(Event(step=s, wall_time=t, summary=Summary(value=values)))
            counts["scalars"] += len(values)
        for s, train, val in db.evals(run_id):
            values = [Summary.Value(tag=tag, simple_value=v) for tag, v in (("loss/train_eval", train),
                                                                            ("loss/val", val)) if v is not None]
            if values:
                writer.add_event(Event(step=s, wall_time=t, summary=Summary(value=values)))
                counts["scalars"] += len(values)
        for cap in db.captures_after(run_id, -1):
            values = [Summary.Value(tag=f"update:data/{name}", simple_value=float(cap.wratio[w, UD]))
                      for w, (name, _) in enumerate(cap.weights) if np.isfinite(cap.wratio[w, UD])]
            counts["scalars"] += len(values)
            for i, (group, name) in enumerate(cap.keys):
                h = histogram(cap, i)
                if h is not None:
                    values.append(Summary.Value(tag=f"{GROUPS[group]}/{name}", histo=h))
                    counts["histograms"] += 1
            if values:
                writer.add_event(Event(step=cap.step, wall_time=t, summary=Summary(value=values)))
        for iv in from_list(row["meta"].get("interventions")):
            writer.add_event(Event(step=iv.step, wall_time=t,
                                   summary=text_pb("interventions", f"step {iv.step}: {iv.command()}")))
            counts["interventions"] += 1
    finally:
        writer.close()
    return folder, counts


def histogram(cap, i):
    """Row i of a Capture as a HistogramProto: buckets = [under, bins..., over] on the recorded edges.
    min and max are the outer edges of the outermost non-empty buckets (an under- or over-range bucket
    gets one bin width), which is how TensorBoard draws the first and last bucket. None when empty."""
    c = cap.counts[i].astype(np.float64)
    lo, hi = float(cap.edges[i, 0]), float(cap.edges[i, 1])
    num = float(c.sum())
    if num == 0 or not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return None
    bins = len(c) - 2
    width = (hi - lo) / bins
    inner = lo + width * np.arange(1, bins + 1)  # each bin's right edge
    inner[-1] = hi
    limits = np.r_[lo, inner, DBL_MAX]
    lefts = np.r_[lo - width, lo, inner[:-1]]   # each bucket's left edge (the under-range one: a bin width below)
    rights = np.r_[lo, inner, hi + width]
    nz = np.flatnonzero(c)
    mean, std = float(cap.stats[i, COL["mean"]]), float(cap.stats[i, COL["std"]])
    return HistogramProto(min=float(lefts[nz[0]]), max=float(rights[nz[-1]]), num=num, sum=mean * num,
                          sum_squares=num * (std * std + mean * mean), bucket_limit=limits.tolist(),
                          bucket=c.tolist())


def zipped(folder):
    """An export folder as zip bytes (a page's download), the run's folder at the top of the archive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(Path(folder).iterdir()):
            z.write(f, f"{Path(folder).name}/{f.name}")
    return buf.getvalue()
