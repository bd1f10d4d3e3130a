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


@st.cache_resource(max_entries=4, show_spinner="Building the lecture's dataset...")
def words_dataset(kind, path=None, mtime=0.0, block_size=3):
    """makemore's Xtr/Ytr, Xdev/Ydev, Xte/Yte for a data source, built once per file version
    (DataError, worded for a learner, when the file is not one word per line)."""
    import data
    if kind == "file":
        return data.WordsDataset(data.load_words(path), block_size, name=os.path.basename(path))
    return data.WordsDataset(ssa_words(), block_size, name="SSA names")


def save_upload(raw, name):
    """Keep an uploaded file under the data directory (runs refer to it by path); returns the path."""
    folder = default_data_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-60:] or "upload.txt"
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:16]}-{safe}"
    if not path.exists():
        path.write_bytes(raw)
    return str(path)
