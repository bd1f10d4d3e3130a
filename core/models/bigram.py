"""
Lecture 2, made inspectable: the count matrix N, what smoothing does to the
average negative log likelihood, and one word's bigrams with their
probabilities -- the numbers the lecture prints cell by cell.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from core.models.layers import LectureModel

# -----------------------------------------------------------------------------
# lecture 2: bigrams


class Bigram(LectureModel):
    """The count model: N[ix1, ix2] counts, P = (N + smoothing) normalized per row. Nothing to train."""

    block_size = 1

    def __init__(self, vocab_size, smoothing=1.0):
        if not (isinstance(smoothing, (int, float)) and math.isfinite(smoothing) and smoothing >= 0):
            raise ValueError(f"smoothing must be a number >= 0 (got {smoothing!r}).")
        self.vocab_size = vocab_size
        self.smoothing = smoothing
        self.N = torch.zeros((vocab_size, vocab_size), dtype=torch.int32)
        self.P = None

    def fit(self, xs, ys):
        self.N.index_put_((xs, ys), torch.ones_like(xs, dtype=torch.int32), accumulate=True)
        return self._normalize()

    def _normalize(self):
        s = self.smoothing
        P = (self.N + (int(s) if float(s).is_integer() else s)).float()
        self.P = P / P.sum(1, keepdims=True)
        return self

    def smoothed(self, smoothing):
        """The same counts with another smoothing (no recount)."""
        m = Bigram(self.vocab_size, smoothing)
        m.N = self.N
        return m._normalize()

    def forward(self, idx, targets=None):
        logits = self.P[idx].log()  # log-counts up to a constant: softmax(logits) == P[idx]
        loss = None
        if targets is not None:
            loss = self.nll(idx, targets)
        return logits, loss

    def log_likelihood(self, xs, ys):
        """
        The lecture's log likelihood. It sums log P one bigram at a time in float32
        (log_likelihood += logprob); np.cumsum in float32 is that same sequential
        sum, which a vectorized .sum() is not. Returns a float32 tensor.
        """
        logprob = self.P[xs, ys].log().numpy()
        return torch.tensor(np.cumsum(logprob, dtype=np.float32)[-1])

    def nll(self, xs, ys):
        """The lecture's average negative log likelihood, nll / n (-inf log P gives inf)."""
        return -self.log_likelihood(xs, ys) / len(xs)


class BigramNN(LectureModel):
    """Lecture 2's neural bigram: one-hot @ W, softmax written out, 0.01 * mean(W**2)."""

    block_size = 1

    def __init__(self, vocab_size, generator=None, reg=0.01):
        self.vocab_size = vocab_size
        self.reg = reg
        self.W = torch.randn((vocab_size, vocab_size), generator=generator, requires_grad=True)

    def named_parameters(self):
        return [("W", self.W)]

    def forward(self, idx, targets=None):
        xenc = F.one_hot(idx, num_classes=self.vocab_size).float()  # input to the network: one-hot encoding
        logits = xenc @ self.W  # predict log-counts
        counts = logits.exp()  # counts, equivalent to N
        probs = counts / counts.sum(1, keepdims=True)  # probabilities for next character
        loss = None
        if targets is not None:
            loss = -probs[torch.arange(idx.shape[0]), targets].log().mean() + self.reg * (self.W**2).mean()
        return logits, loss


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
