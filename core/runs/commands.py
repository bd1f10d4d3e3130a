"""
`python -m core runs ...`: the runs file from a shell, for scripts and tests.

    python -m core runs start SPEC.json [--paused] [--json]   a worker, started exactly as a page starts one
    python -m core runs list [--json]                         every run, newest first
    python -m core runs show ID [--step N] [--json]           one run: state, step, pid, message, losses, and
                                                              the statistics of its capture at step N (latest)
    python -m core runs stop ID                               ask its worker to stop (and wait for it)

The runs file is the server's ($ZTH_DATA_DIR). Reading it ends the runs whose worker is gone
(core.runs.liveness), so `runs list` never shows a dead worker as running. A run started here is
no page's: no heartbeat stops it, any page may stop it. A run of `python -m core train` (or a
notebook) reads no commands: `runs stop` says so and leaves it to its own process.
"""

import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from core.runs import strict_json


def add_parser(sub):
    """The `runs` command and its own subcommands, on core.cli's parser."""
    r = sub.add_parser("runs", help="start, list, show or stop runs in the runs file")
    rs = r.add_subparsers(dest="runs_cmd", required=True, parser_class=type(r))
    s = rs.add_parser("start", help="start a run in a worker process, as a page does")
    s.add_argument("spec", help="a JSON job spec (see core/runs/spec.py), e.g. "
                                '{"model": "mlp", "preset": "kaiming", "train": {"steps": 1000}}')
    s.add_argument("--paused", action="store_true", help="start paused")
    s.add_argument("--json", action="store_true", help="print {id, pid, name, state} as JSON")
    ls = rs.add_parser("list", help="every run, newest first")
    ls.add_argument("--json", action="store_true")
    sh = rs.add_parser("show", help="one run")
    sh.add_argument("id")
    sh.add_argument("--step", type=int, default=None,
                    help="the capture at this step (or the nearest one before it); default: the latest")
    sh.add_argument("--json", action="store_true", help="with the statistics as `train --json` prints them")
    st = rs.add_parser("stop", help="stop a run's worker")
    st.add_argument("id")


def main(args, out=print):
    """Run one `runs` subcommand; returns the exit code (2 with one line on stderr for bad input)."""
    # core.runs.db loads torch (~2 s): here, not at the top, so a mistyped command is answered at once
    from core.runs.manager import CapacityError
    try:
        return {"start": start, "list": list_runs, "show": show, "stop": stop}[args.runs_cmd](args, out)
    except CapacityError as e:  # the server is full, the runs file busy or the disk full
        print(f"error: {e}", file=sys.stderr)
        return 2


# -----------------------------------------------------------------------------


def read_spec(path):
    """A job spec from a JSON file; ValueError with one line for anything else."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the spec {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the spec {path} is not valid JSON ({e})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"the spec {path} must be a JSON object with model, preset, train, data")
    data = spec.get("data")
    if isinstance(data, dict) and data.get("kind") == "file" and isinstance(data.get("path"), str):
        # the worker runs in the checkout: a path relative to where the command ran is made whole here
        spec["data"] = {**data, "path": os.path.abspath(data["path"])}
    return spec


def start(args, out):
    from core.runs.manager import RunManager
    from core.runs.spec import check_spec, count_params
    spec = read_spec(args.spec)
    check_spec(spec)  # a bad number is answered here, as a page answers it before Start
    count_params(spec)
    name = spec.get("name") or f"{spec['model']}/{spec.get('preset') or 'default'}"
    m = RunManager()
    try:
        run_id = m.start(spec, name, paused=args.paused, orphan_timeout=math.inf)  # no page watches it
        row = m.db.get_run(run_id)
    finally:
        m.close()  # the worker goes on on its own
    res = dict(id=run_id, pid=row["pid"], name=name, state=row["state"])
    out(strict_json.dumps(res) if args.json else f"started run {run_id} ({name}), worker pid {row['pid']}")
    return 0


def _summary(r):
    from core.runs import liveness  # loaded with the runs file, not at the top: see main
    final = r["meta"].get("final") or {}
    return dict(id=r["id"], name=r["name"], source=liveness.source(r), state=r["state"], step=r["step"], pid=r["pid"],
                host=r["host"],
                created=r["created"], steps_per_s=r["steps_per_s"], init_loss=r["meta"].get("init_loss"),
                train=final.get("train"), val=final.get("val"), message=r["meta"].get("message"))


@contextmanager
def _db():
    """The runs file, closed however the command ends (its write-ahead log folds back)."""
    from core.runs import liveness
    from core.runs.db import RunDB
    db = RunDB()
    try:
        liveness.reap(db)  # a reader ends the runs whose worker is gone before it shows them
        yield db
    finally:
        db.close()


def list_runs(args, out):
    with _db() as db:
        runs = [_summary(r) for r in db.list_runs()]
    if args.json:
        out(strict_json.dumps(dict(runs=runs)))
        return 0
    if not runs:
        out(f"no runs in {db.path}")
    for r in runs:
        loss = f"val {r['val']:.4f}" if isinstance(r["val"], float) and math.isfinite(r["val"]) else ""
        out(f"{r['id']}  {r['state']:<9} step {r['step']:>9,}  pid {r['pid'] or '-':<8} {r['source']:<8} {r['name']}  "
            f"{loss}".rstrip())
    return 0


def show(args, out):
    with _db() as db:
        r = db.get_run(args.id)
        if r is None:
            raise ValueError(f"no run {args.id!r} in {db.path} (python -m core runs list shows their ids)")
        steps, loss, _ = db.steps_since(args.id)
        res = dict(_summary(r), spec=r["spec"], session=r["session"], updated=r["updated"],
                   steps_recorded=len(steps), last_loss=float(loss[-1]) if len(loss) else None,
                   evals=db.evals(args.id), log=str(db.log_path(args.id)) if db.log_path(args.id).exists() else None)
        res.update(_statistics(db, r, args.step))
    if args.json:
        out(strict_json.dumps(res))
        return 0
    for k, v in res.items():
        if k not in ("spec", "evals", "activations", "weights", "findings") and v is not None:
            out(f"{k:>15}: {v}")
    out(f"{'spec':>15}: {json.dumps(r['spec'])}")
    for a in res["activations"]:  # as lecture 4's cells print them
        sat = "" if a["saturated_pct"] is None else f", saturated: {a['saturated_pct']:.2f}%"
        grad = "" if a["grad_std"] is None else f", grad std {a['grad_std']:e}"
        out(f"layer {a['layer']:>16} ({a['kind']:>9}): mean {a['mean']:+.2f}, std {a['std']:.2f}{sat}{grad}")
    for w in res["weights"]:
        ud = "-" if w["update_data_log10"] is None else f"{w['update_data_log10']:+.2f}"
        out(f"weight {str(tuple(w['shape'])):>12} {w['name']:<24} grad:data ratio {w['grad_data_ratio']:e}  "
            f"log10 update:data {ud}")
    for f in res["findings"]:
        if f["severity"] != "ok":
            out(f"{f['severity']}: {f['text']}")
    return 0


class _Recorded:
    """A run's records, read-only, as core.runs.findings reads a RunStore (which would write on a read)."""

    def __init__(self, db, row):
        self.db, self.row = db, row
        self.meta, self.evals = row["meta"], db.evals(row["id"])

    @property
    def captures(self):
        return self.db.captures_after(self.row["id"], -1)

    def losses(self):
        return self.db.steps_since(self.row["id"])


def _statistics(db, r, step=None):
    """What `train --json` prints of a run's capture at `step` (None: the latest): activations in forward order,
    every weight, the loss there, steps done, and the findings the page shows."""
    from core.runs.findings import run_findings, statistics
    steps, loss, _ = db.steps_since(r["id"])
    cap = db.capture(r["id"], step)
    at = cap.step if cap is not None else (step if step is not None else (int(steps[-1]) if len(steps) else None))
    losses = dict(zip(steps.tolist(), loss.tolist()))
    res = dict(steps=r["step"], loss=losses.get(at), capture_step=None if cap is None else cap.step,
               **statistics(cap))
    res["findings"] = [f.to_dict() for f in run_findings(_Recorded(db, r), r["spec"], state=r["state"],
                                                         diverged_at=r["meta"].get("diverged_at"), step=step)]
    return res


def stop(args, out):
    from core.runs.db import LIVE_STATES
    from core.runs.manager import RunManager
    m = RunManager()
    try:
        r = m.db.get_run(args.id)
        if r is None:
            raise ValueError(f"no run {args.id!r} in {m.db.path} (python -m core runs list shows their ids)")
        if r["state"] in LIVE_STATES:
            m.stop(args.id)
            r = m.db.get_run(args.id)
    finally:
        m.close()
    out(f"run {args.id} is {r['state']}" + (f": {r['meta']['message']}" if r["meta"].get("message") else ""))
    return 0 if r["state"] not in LIVE_STATES else 1


