"""
The model doctor's verdict on a page. The doctor trains a copy and a short run of its own (about half a
minute), so it never runs inside the web server: `python -m core doctor --json` runs in its own process,
writes its report into the data directory, and the page polls for the file from a fragment. A report
already there (same model, preset, bug, data and seed) is shown at once.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

from core.runs.db import default_data_dir
from dashboard.ui.registry import manager

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `python -m core` runs from here
VERDICTS = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "skip": "skip"}  # words: no emoji font is needed


def _args(model, preset, bug, source, seed):
    args = ["--model", model, "--preset", preset]
    if bug:
        args += ["--bug", bug]
    if source.get("kind") == "file" and source.get("path"):
        args += ["--data", source["path"]]
    if seed is not None:
        args += ["--seed", str(int(seed))]
    return args


def report_path(model, preset, bug=None, source=None, seed=None):
    """Where the doctor's report for these settings lives (a hash of its command line and the data's mtime)."""
    source = source or {"kind": "ssa"}
    args = _args(model, preset, bug, source, seed)
    path = source.get("path")
    key = json.dumps([args, os.path.getmtime(path) if path and os.path.exists(path) else 0])
    name = f"{model}-{bug or 'healthy'}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    return default_data_dir() / "doctor" / name


@st.cache_resource
def _asked():
    """path -> the doctor's process, server-wide: two sessions asking the same question share one answer."""
    return {}


def ask(model, preset, bug=None, source=None, seed=None):
    """Start the doctor for these settings unless its report exists or it already runs. Returns the path."""
    source = source or {"kind": "ssa"}
    path = report_path(model, preset, bug, source, seed)
    running = _asked().get(str(path))
    if path.exists() or (running is not None and running.poll() is None):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "core", "doctor", *_args(model, preset, bug, source, seed), "--json"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(path.with_suffix(".out"), "wb") as out, open(path.with_suffix(".err"), "wb") as err:
        _asked()[str(path)] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err,
                                               start_new_session=True)
    return path


def status(path):
    """("done", checks) | ("running", None) | ("failed", message) | ("none", None): not asked on this server."""
    path = Path(path)
    checks = _checks(path)
    if checks is not None:
        return "done", checks
    proc = _asked().get(str(path))
    if proc is None:
        return "none", None
    if proc.poll() is None:
        return "running", None
    lines = path.with_suffix(".out").read_text().strip().splitlines()
    if lines and _checks_of(lines[-1]) is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(lines[-1])
        os.replace(tmp, path)  # the report appears whole: later readers take it from the file
        return "done", _checks_of(lines[-1])
    err = path.with_suffix(".err").read_text().strip().splitlines()
    return "failed", err[-1] if err else f"the doctor ended with exit code {proc.returncode}"


def _checks(path):
    try:
        return _checks_of(path.read_text())
    except FileNotFoundError:
        return None


def _checks_of(text):
    try:
        return json.loads(text)["checks"]
    except (ValueError, KeyError, TypeError):
        return None


def table(checks):
    """The checks as a table: verdict, check, what was found and the fix."""
    return pd.DataFrame([{"verdict": VERDICTS[c["verdict"]], "check": c["id"], "finding": c["title"],
                          "evidence": c["evidence"], "fix": c["fix"]} for c in checks])


def show(checks, key):
    st.dataframe(table(checks), hide_index=True, width="stretch", key=key,
                 column_config={"evidence": st.column_config.TextColumn(width="large"),
                                "fix": st.column_config.TextColumn(width="medium")})
    for c in checks:
        if c["verdict"] == "fail":
            st.error(f"**{c['title']}** (`{c['id']}`) -- {c['evidence']}\n\n*Fix:* {c['fix']}")


def panel(path, key, waiting="The model doctor is examining the model (about half a minute)…"):
    """The report at `path` once it is there; until then a note, re-read every 2 s from a fragment (one full
    rerun when it arrives stops the timer)."""
    ticking = status(path)[0] == "running"

    @st.fragment(run_every=2.0 if ticking else None)
    def box():
        what, found = status(path)
        if ticking and what != "running":
            st.rerun()
        if what == "done":
            show(found, key)
        elif what == "failed":
            st.error(f"The model doctor failed: {found}", icon=":material/error:")
        elif what == "running":
            st.caption(waiting)
    box()


def section(spec, run_id=None):
    """The doctor on a live page's scenario (the preset's model as the lecture builds it), below its diagnosis;
    for a learner's watched run, the report its lab.doctor(X, Y) left in the run."""
    kept = ((manager().db.get_run(run_id) or {}).get("meta") or {}).get("doctor") if run_id else None
    if kept:
        with st.expander(f"Model doctor: lab.doctor(X, Y) at step {kept['step']:,} of your loop", expanded=True,
                         icon=":material/stethoscope:"):
            show(kept["checks"], key="doctor_kept")
        return
    if spec.get("model") not in ("mlp", "deep", "wavenet", "gpt"):
        return
    model, preset, source = spec["model"], spec["preset"], spec.get("data") or {"kind": "ssa"}
    seed = (spec.get("train") or {}).get("seed")
    with st.expander(f"Model doctor: Karpathy's six common mistakes on {model}/{preset}",
                     icon=":material/stethoscope:"):
        st.caption(f"`python -m core doctor --model {model} --preset {preset}` in a process of its own: a short run "
                   "of the preset's model (its default sizes) watched, and the checks on a batch. The Mistakes page "
                   "plants each mistake in a lecture model.")
        path = report_path(model, preset, None, source, seed)
        if status(path)[0] == "none":
            st.button("Ask the model doctor", key="doctor_ask", icon=":material/stethoscope:", on_click=ask,
                      args=(model, preset, None, source, seed))
        panel(path, key="doctor_report")
