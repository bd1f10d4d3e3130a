"""
Lecture 2, made inspectable: the count matrix N, what smoothing does to the
average negative log likelihood, and one word's bigrams with their
probabilities -- the numbers the lecture prints cell by cell.
"""

import math

import torch

from .models import Bigram


def count_model(xs, ys, vocab_size, smoothing=1.0):
    """The fitted count model (N, and P = (N + smoothing) row-normalized)."""
    return Bigram(vocab_size, smoothing).fit(xs, ys)


def nll_by_smoothing(xs, ys, vocab_size, smoothings):
    """
    The average NLL over the bigrams (xs, ys) for each smoothing, computed the lecture's way
    (Bigram.nll: a float32 running sum), so the value at smoothing 1 is the printed 2.4544.
    """
    counted = count_model(xs, ys, vocab_size, 0)
    return [float(counted.smoothed(s).nll(xs, ys)) for s in smoothings]


def word_bigrams(P, word, stoi):
    """
    The lecture's loop over one word: each bigram of '.word.' with its probability and
    log-probability, then log_likelihood, nll and nll / n. An unseen bigram under a
    model without smoothing has probability 0 and gives an infinite nll ("andrejq").
    ValueError names what is wrong with the word.
    """
    word = word.strip()
    if not word:
        raise ValueError("Type a word (letters only, such as andrej).")
    unknown = sorted({c for c in word if c not in stoi or c == "."})
    if unknown:
        shown = ", ".join(repr(c) for c in unknown)
        raise ValueError(f"{shown} {'is' if len(unknown) == 1 else 'are'} not in this dataset's vocabulary "
                         f"({''.join(sorted(c for c in stoi if c != '.'))}).")
    chs = ["."] + list(word) + ["."]
    rows = []
    log_likelihood = torch.tensor(0.0)
    for ch1, ch2 in zip(chs, chs[1:]):
        prob = P[stoi[ch1], stoi[ch2]]
        logprob = torch.log(prob)
        log_likelihood += logprob  # float32, one bigram at a time, as in the lecture
        rows.append(dict(bigram=f"{ch1}{ch2}", prob=float(prob), logprob=float(logprob)))
    nll = -float(log_likelihood)
    return rows, dict(log_likelihood=float(log_likelihood), nll=nll, n=len(rows),
                      avg_nll=nll / len(rows) if math.isfinite(nll) else math.inf)


def softmax_rows(W):
    """The neural bigram's probabilities: softmax of each row of W (counts = W.exp(), normalized)."""
    with torch.no_grad():
        counts = W.detach().float().exp()
        return counts / counts.sum(1, keepdim=True)
