"""
The one home of the server-wide stateful things: the run manager (worker
processes and the runs file) and the cached datasets. Pages ask here.

Settings, from the environment: ZTH_DATA_DIR (where runs.sqlite and uploaded files
live, default ~/.local/share/zero-to-hero-lab) and those of core.runs.settings
(the cap on runs, the orphan timeout, retention, teacher mode).
"""

import atexit
import hashlib
import os
import re

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

import data
from core.runs import settings
from core.runs.db import default_data_dir
from core.runs.manager import CHECK_SECONDS, RunManager
from core.runs.manager import may_control as _may_control
from dashboard import state

NOT_YOURS = ("This run belongs to another browser session: you can open, compare and export it, but only the "
             "browser that started it can pause, stop or delete it (on this server in teacher mode, "
             "ZTH_TEACHER=1, anyone can).")


def manager():
    """The server's RunManager, acting for this browser session when a page calls: it then refuses to
    pause, stop or delete another session's run (RunManager.acting)."""
    m = _manager()
    in_page = get_script_run_ctx(suppress_warning=True) is not None
    m.acting(state.session_id() if in_page else None, settings.teacher_mode())
    return m


@st.cache_resource(on_release=RunManager.close)
def _manager():
    m = RunManager(default_data_dir() / "runs.sqlite", check_every=CHECK_SECONDS)
    atexit.register(m.close)  # a clean shutdown folds the runs file's write-ahead log back into it
    return m


manager.clear = _manager.clear  # a fresh manager (tests give each module its own runs file)


def may_control(run):
    """Whether this browser session may pause, stop or delete `run` (a row or an id): see
    core.runs.manager.may_control. A run that no longer exists: no."""
    row = manager().db.get_run(run) if isinstance(run, str) else run
    return row is not None and _may_control(row, state.session_id(), settings.teacher_mode())


def refusal(run_id):
    """Why a command to the run did not go: it is another session's, or the runs file was busy."""
    if not may_control(run_id):
        return NOT_YOURS
    return "The runs file is busy (another program holds its lock): press again in a moment."


@st.cache_data(show_spinner="Loading the SSA names...")
def ssa_words():
    return data.default_words()


@st.cache_data(show_spinner=False, max_entries=8)
def read_path(path, mtime):
    """A text file's content, cached until it changes (DataError as the data layer words it)."""
    return data.read_text(path)


def save_upload(raw, name):
    """Keep an uploaded file under the data directory (runs refer to it by path); returns the path."""
    folder = default_data_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-60:] or "upload.txt"
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:16]}-{safe}"
    if not path.exists():
        path.write_bytes(raw)
    return str(path)


def dataset_key(source):
    """What identifies a dataset's content: (kind, path, mtime)."""
    path = source.get("path") if source.get("kind") == "file" else None
    return source.get("kind", "ssa"), path, os.path.getmtime(path) if path and os.path.exists(path) else 0


def words_dataset(source, block_size=3):
    """The sidebar's dataset as the lectures' WordsDataset (DataError with the data layer's message)."""
    return _words_dataset(*dataset_key(source), block_size, source.get("name"))


def words_bigrams(source):
    """(xs, ys): every bigram of the dataset's words, in the lecture's order."""
    return _words_bigrams(*dataset_key(source), source.get("name"))


@st.cache_resource(show_spinner=False, max_entries=4)
def _words_bigrams(kind, path, mtime, name):
    ds = _words_dataset(kind, path, mtime, 1, name)
    return data.bigrams(ds.words, ds.stoi)


@st.cache_resource(show_spinner="Building the dataset...", max_entries=6)
def _words_dataset(kind, path, mtime, block_size, name):
    if kind == "file":
        return data.WordsDataset(data.load_words(path), block_size, name=name or path)
    return data.WordsDataset(ssa_words(), block_size, name="SSA names")


