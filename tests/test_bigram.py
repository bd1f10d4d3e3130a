"""Lecture 2's count model made inspectable, checked against plain counting of names.txt."""

import math
from collections import Counter

import pytest
import torch

from core.models.bigram import count_model, nll_by_smoothing, softmax_rows, word_bigrams
from data import WordsDataset, bigrams, load_words


@pytest.fixture(scope="module")
def names(names_path):
    words = load_words(names_path)
    ds = WordsDataset(words, 1)
    xs, ys = bigrams(words, ds.stoi)
    counts = Counter()
    for w in words:  # the oracle: count the strings themselves
        chs = "." + w + "."
        counts.update(a + b for a, b in zip(chs, chs[1:]))
    return ds, xs, ys, counts


def test_the_count_matrix_is_every_bigram_of_the_words(names):
    ds, xs, ys, counts = names
    N = count_model(xs, ys, 27).N
    for i in range(27):
        for j in range(27):
            assert N[i, j] == counts[ds.itos[i] + ds.itos[j]]
    assert N.sum() == 228_146 and N[ds.stoi["."], ds.stoi["a"]] == 4410   # the lecture's '.a' cell


def test_nll_by_smoothing_gives_the_lectures_digits(names):
    _, xs, ys, _ = names
    nll = nll_by_smoothing(xs, ys, 27, [0, 1, 1000])
    assert nll[0] == 2.454094171524048 and nll[1] == 2.4543561935424805
    assert nll[2] > nll[1] + 0.3   # heavy smoothing pulls the model toward uniform (3.2958)


def test_smoothed_shares_the_counts(names):
    _, xs, ys, _ = names
    m = count_model(xs, ys, 27, 0)
    assert torch.equal(m.smoothed(5).P, count_model(xs, ys, 27, 5).P)


def test_a_words_bigrams_against_the_counts(names):
    ds, xs, ys, counts = names
    P = count_model(xs, ys, 27, 1).P
    rows, total = word_bigrams(P, "andrejq", ds.stoi)
    assert [r["bigram"] for r in rows] == [".a", "an", "nd", "dr", "re", "ej", "jq", "q."]
    for r in rows:
        a, b = r["bigram"]
        row_total = sum(counts[a + c] for c in ds.stoi)
        assert r["prob"] == pytest.approx((counts[a + b] + 1) / (row_total + 27), rel=1e-6)
        assert r["logprob"] == pytest.approx(math.log(r["prob"]), rel=1e-6)
    assert total["n"] == 8
    assert total["nll"] == pytest.approx(-sum(r["logprob"] for r in rows), rel=1e-6)
    assert round(total["avg_nll"], 4) == 3.4834   # the lecture's printed nll/n for andrejq


def test_an_unseen_bigram_without_smoothing_is_infinitely_unlikely(names):
    ds, xs, ys, _ = names
    rows, total = word_bigrams(count_model(xs, ys, 27, 0).P, "andrejq", ds.stoi)
    jq = next(r for r in rows if r["bigram"] == "jq")
    assert jq["prob"] == 0 and jq["logprob"] == -math.inf
    assert total["nll"] == math.inf and total["avg_nll"] == math.inf


@pytest.mark.parametrize("word, needle", [("", "Type a word"), ("andrej!", "'!' is not"), ("a.b", "'.' is not"),
                                          ("ÿz", "'ÿ' is not")])
def test_a_bad_word_is_named(names, word, needle):
    ds, xs, ys, _ = names
    with pytest.raises(ValueError, match=needle):
        word_bigrams(count_model(xs, ys, 27).P, word, ds.stoi)


def test_softmax_rows_are_torch_softmax():
    W = torch.randn((27, 27), generator=torch.Generator().manual_seed(2147483647))
    Q = softmax_rows(W)
    assert torch.allclose(Q, torch.softmax(W, dim=1), atol=1e-6)
    assert torch.allclose(Q.sum(1), torch.ones(27))
