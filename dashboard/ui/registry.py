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

import data
from core.runs.db import default_data_dir
from core.runs.manager import RunManager


@st.cache_resource
def manager():
    return RunManager(default_data_dir() / "runs.sqlite",
                      max_live=int(os.environ.get("ZTH_MAX_RUNS", 2)),
                      orphan_timeout=float(os.environ.get("ZTH_ORPHAN_SECONDS", 30)))


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


