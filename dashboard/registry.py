"""
The one home of the server-wide stateful things: the run manager (worker
processes and the runs file) and the cached datasets. Pages ask here.

Settings, from the environment:
    ZTH_DATA_DIR        where runs.sqlite and uploaded files live (default ~/.local/share/zero-to-hero-lab)
    ZTH_MAX_RUNS        how many runs may train at once on this server (default 2: one per core)
    ZTH_ORPHAN_SECONDS  a run nobody watches stops after this long (default 30)
"""

import hashlib
import os
import re

import streamlit as st

from core.rundb import default_data_dir
from core.worker import RunManager


@st.cache_resource
def manager():
    return RunManager(default_data_dir() / "runs.sqlite",
                      max_live=int(os.environ.get("ZTH_MAX_RUNS", 2)),
                      orphan_timeout=float(os.environ.get("ZTH_ORPHAN_SECONDS", 30)))


@st.cache_data(show_spinner="Loading the SSA names...")
def ssa_words():
    import data
    return data.default_words()


@st.cache_data(show_spinner=False, max_entries=8)
def read_path(path, mtime):
    """A text file's content, cached until it changes (DataError as the data layer words it)."""
    import data
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


@st.cache_data(show_spinner=False, max_entries=4)
def _file_words(path, mtime):
    import data
    return data.words_from_text(read_path(path, mtime), os.path.basename(path))


def dataset_words(source):
    """The sidebar's dataset as a word list, cached (DataError when the file is not one word a line)."""
    if source.get("kind", "ssa") == "ssa":
        return ssa_words()
    path = source["path"]
    return _file_words(path, os.path.getmtime(path) if os.path.exists(path) else 0)
