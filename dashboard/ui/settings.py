"""The sidebar every page shares: dataset, seed, device."""

import os
import re

import streamlit as st
import torch

import data
from dashboard import state
from dashboard.ui.registry import read_path, save_upload, ssa_words

SSA = "SSA names (offline default)"
UPLOAD = "Upload a text file"
PATH = "A file on this machine"


def shared_settings():
    with st.sidebar:
        st.subheader("Settings")
        url_data = state.url_get("data", "ssa")
        choices = [SSA, UPLOAD, PATH]
        default = 0 if url_data == "ssa" else 2
        how = st.radio("Dataset", choices, index=default, key="data_how",
                       help="One example per line (makemore's names.txt works as is); running text for GPT.")
        source, error = {"kind": "ssa", "name": "SSA names"}, None
        if how == UPLOAD:
            f = st.file_uploader("Text file", type=None, key="data_upload")
            if f is None:
                error = "Choose a file to upload (one word per line), or pick the SSA names."
            else:
                source, error = _check_file_bytes(f.getvalue(), f.name)
        elif how == PATH:
            path = st.text_input("Path", value="" if url_data == "ssa" else url_data, key="data_path",
                                 placeholder="/path/to/names.txt")
            if not path.strip():
                error = "Type the path of a text file, e.g. makemore's names.txt."
            else:
                source, error = _check_path(path.strip())
        if error:
            st.error(error, icon=":material/error:")
            source = {"kind": "ssa", "name": "SSA names"}  # nothing is half-loaded: keep the default
        else:
            st.caption(_describe(source))
        state.put(state.DATA_SOURCE, source)
        state.put(state.DATA_ERROR, error)
        state.url_set(data=None if source["kind"] == "ssa" else source["path"])

        seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1,
                               value=state.url_get("seed", 2147483647, int), key="seed_input",
                               help="torch.Generator().manual_seed(seed), as in the lectures: 2147483647")
        state.put(state.SEED, int(seed))
        devices = ["cpu"] + (["cuda"] if _cuda() else [])
        state.put(state.DEVICE, st.selectbox("Device", devices, key="device_input",
                                             help="CPU by default; CUDA when this machine has a GPU."))


def _check_file_bytes(raw, name):
    try:
        text = data.decode_bytes(raw, name)
    except data.DataError as e:
        return None, str(e)
    return _check_text(text, name, lambda: save_upload(raw, name))


def _check_path(path):
    try:
        data.check_file(path)  # a device, a FIFO or a folder: refused by its type, never opened
        text = read_path(path, os.path.getmtime(path))
    except data.DataError as e:
        return None, str(e)
    return _check_text(text, _user_name(path), lambda: path)


def _user_name(path):
    """The name a learner gave a file: an upload kept as uploads/<hash>-names.txt (a link to it reopens
    it by that path) is shown as names.txt."""
    name = os.path.basename(path)
    if os.path.basename(os.path.dirname(path)) == "uploads":
        name = re.sub(r"^[0-9a-f]{16}-", "", name)
    return name


def _check_text(text, name, keep):
    """A file is fine as words (one per line), or as running text only (GPT), or not at all."""
    source = {"kind": "file", "name": name, "chars": len(text)}  # the counts let a spec refuse a tiny file early
    try:
        source["n"] = len(data.words_from_text(text, name))
        source["words_error"] = None
    except data.DataError as e:
        try:
            data.text_from_text(text, name)
        except data.DataError as e2:
            return None, str(e2)
        source["n"] = len(text)
        source["words_error"] = f"{e} It can still train the GPT, as running text."
    source["path"] = keep()
    return source, None


def _describe(source):
    if source["kind"] == "ssa":
        return f"{len(ssa_words()):,} first names, most common first (US SSA, newest year)"
    if source.get("words_error"):
        return f"{source['name']}: {data.plural(source['n'], 'character')} of running text (GPT only)"
    text = f"{source['name']}: {data.plural(source['n'], 'line')}"
    if source["n"] < data.MIN_SPLIT_WORDS:
        text += (f". Too few words for an 80/10/10 split (need {data.MIN_SPLIT_WORDS}): enough for the bigrams, "
                 "not for the models that report a dev loss.")
    return text


@st.cache_resource
def _cuda():
    return torch.cuda.is_available()
