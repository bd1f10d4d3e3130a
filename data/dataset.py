"""
The lectures' datasets: a character vocabulary, makemore's (context -> next
character) examples with its 80/10/10 split, and the GPT lecture's running text
with get_batch.
"""

import random

import torch

from .loading import DataError, plural

# -----------------------------------------------------------------------------
# vocabulary


class Vocab:
    """
    Characters <-> integers. For words (makemore) '.' = 0 marks start and end and
    the sorted characters follow from 1; for running text (GPT) the sorted
    characters start at 0, as in the lectures.
    """

    def __init__(self, chars, special="."):
        chars = sorted(set(chars))
        self.special = special
        if special is not None:
            chars = [c for c in chars if c != special]
            self.stoi = {s: i + 1 for i, s in enumerate(chars)}
            self.stoi[special] = 0
        else:
            self.stoi = {s: i for i, s in enumerate(chars)}
        self.itos = {i: s for s, i in self.stoi.items()}
        self.vocab_size = len(self.stoi)

    def encode(self, s):
        """str -> list of ints; an unknown character raises DataError naming it."""
        try:
            return [self.stoi[c] for c in s]
        except KeyError as e:
            raise DataError(f"The character {e.args[0]!r} is not in this dataset's vocabulary.") from None

    def decode(self, ix):
        return "".join(self.itos[int(i)] for i in ix)

    def __repr__(self):
        return f"Vocab({self.vocab_size}: {''.join(self.itos[i] for i in range(self.vocab_size))!r})"


# -----------------------------------------------------------------------------
# makemore: words -> (context, target) examples


def build_dataset(words, block_size, stoi):
    """The lectures' build_dataset: every word padded with '.', a sliding context of block_size."""
    if not isinstance(block_size, int) or block_size < 1:
        raise DataError(f"block_size must be a whole number >= 1 (got {block_size!r}).")
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]  # crop and append
    X = torch.tensor(X, dtype=torch.long).view(-1, block_size)
    Y = torch.tensor(Y, dtype=torch.long)
    return X, Y


def word_examples(word, block_size, vocab):
    """
    One word through build_dataset, as the lecture prints it (`... ---> e`): returns (X, Y)
    for that word alone. DataError for an empty word, a '.' inside it (the start/end token)
    or a character outside the vocabulary.
    """
    if not word:
        raise DataError("Type a word, e.g. emma.")
    if vocab.special and vocab.special in word:
        raise DataError(f"'{vocab.special}' marks the start and end of every word; type the word without it.")
    vocab.encode(word)  # names the first unknown character
    return build_dataset([word], block_size, vocab.stoi)


def _split_points(n):
    return int(0.8 * n), int(0.9 * n)


def split_words(words, seed=42):
    """random.seed(42); random.shuffle(words); 80/10/10 -- without touching the global random."""
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = _split_points(len(words))
    return words[:n1], words[n1:n2], words[n2:]


def _words_needed():
    # every split needs a word (build_dataset pads each word, so a word always gives examples, whatever
    # block_size); from this count on, every larger one splits too (each part grows with n)
    n = 1
    while not 0 < _split_points(n)[0] < _split_points(n)[1] < n:
        n += 1
    return n


MIN_SPLIT_WORDS = _words_needed()  # 6: 4 / 1 / 1


def check_word_count(n, name="the dataset"):
    """DataError unless n words split 80/10/10 with a word in each part (what Xtr, Xdev and Xte need)."""
    if n < MIN_SPLIT_WORDS:
        raise DataError(f"{name} has {plural(n, 'word')}: too few words for an 80/10/10 split "
                        f"(need {MIN_SPLIT_WORDS}), so that train, dev and test each get one.")


class WordsDataset:
    """A word list made into the lectures' Xtr/Ytr, Xdev/Ydev, Xte/Yte."""

    def __init__(self, words, block_size=3, seed=42, name="words"):
        words = list(words)
        if not words:
            raise DataError(f"{name} has no words.")
        self.name = name
        self.words = words
        self.block_size = block_size
        self.vocab = Vocab("".join(words) + ".")
        self.stoi, self.itos = self.vocab.stoi, self.vocab.itos
        self.vocab_size = self.vocab.vocab_size
        tr, dev, te = split_words(words, seed)
        self.Xtr, self.Ytr = build_dataset(tr, block_size, self.stoi)
        self.Xdev, self.Ydev = build_dataset(dev, block_size, self.stoi)
        self.Xte, self.Yte = build_dataset(te, block_size, self.stoi)

    def check_split(self):
        """DataError unless train, dev and test each get a word: the models that train on Xtr and
        report dev and test losses need all three (the bigrams use every word and do not split)."""
        check_word_count(len(self.words), self.name)
        return self

    @property
    def max_word_length(self):
        return max(len(w) for w in self.words)

    def split(self, split):
        return {"train": (self.Xtr, self.Ytr), "val": (self.Xdev, self.Ydev),
                "test": (self.Xte, self.Yte)}[split]

    def describe(self):
        """What was found, as makemore prints it."""
        return (f"{self.name}: {plural(len(self.words), 'word')}, max length {self.max_word_length}, "
                f"vocabulary {self.vocab_size}; block_size {self.block_size}: "
                f"{len(self.Ytr):,} / {len(self.Ydev):,} / {len(self.Yte):,} examples")


def bigrams(words, stoi):
    """All (ix1, ix2) bigrams of words padded with '.' at both ends, in lecture order."""
    xs, ys = [], []
    for w in words:
        chs = ["."] + list(w) + ["."]
        for ch1, ch2 in zip(chs, chs[1:]):
            xs.append(stoi[ch1])
            ys.append(stoi[ch2])
    return torch.tensor(xs, dtype=torch.long), torch.tensor(ys, dtype=torch.long)


# -----------------------------------------------------------------------------
# GPT: running text


def chars_needed(block_size):
    """The shortest text whose 10% validation part holds more than block_size characters (the train
    part, nine times longer, then does too): get_batch draws a start in [0, len - block_size)."""
    n = max(1, 10 * block_size - 10)
    while n - int(0.9 * n) <= block_size:
        n += 1
    return n


def check_char_count(n, block_size, name="the text"):
    """DataError unless n characters split 90/10 with more than one block in the validation part."""
    if n < chars_needed(block_size):
        raise DataError(f"{name} has {plural(n, 'character')}: too few for a 90/10 split with block_size "
                        f"{block_size} (need {chars_needed(block_size):,}: the 10% validation part must hold "
                        f"more than one block).")


class TextDataset:
    """The GPT lecture's data: encode the whole text, first 90% train, rest val."""

    def __init__(self, text, block_size=8, name="text"):
        if not isinstance(block_size, int) or block_size < 1:
            raise DataError(f"block_size must be a whole number >= 1 (got {block_size!r}).")
        self.name = name
        self.block_size = block_size
        self.vocab = Vocab(text, special=None)
        self.stoi, self.itos = self.vocab.stoi, self.vocab.itos
        self.vocab_size = self.vocab.vocab_size
        data = torch.tensor(self.vocab.encode(text), dtype=torch.long)
        n = int(0.9 * len(data))
        self.train_data, self.val_data = data[:n], data[n:]
        check_char_count(len(data), block_size, name)

    def get_batch(self, split, batch_size, generator=None):
        """Random chunks of block_size characters and the same chunks shifted by one."""
        data = self.train_data if split == "train" else self.val_data
        ix = torch.randint(len(data) - self.block_size, (batch_size,), generator=generator)
        x = torch.stack([data[i:i + self.block_size] for i in ix])
        y = torch.stack([data[i + 1:i + self.block_size + 1] for i in ix])
        return x, y

    def describe(self):
        return (f"{self.name}: {len(self.train_data) + len(self.val_data):,} characters, "
                f"vocabulary {self.vocab_size}; {len(self.train_data):,} train / "
                f"{len(self.val_data):,} val")
