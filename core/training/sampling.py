"""
Sampling from trained models: makemore's sampler and lecture 2's bigram loop.
"""

import numpy as np
import torch

# -----------------------------------------------------------------------------
# sampling


@torch.no_grad()
def sample_words(model, n=20, generator=None, max_len=100, train_mode=False):
    """
    makemore's sampler: start from '.' context, draw until '.' (index 0). Returns lists of ints.
    In eval mode, as it should be; train_mode=True shows the lecture's bug (BatchNorm
    normalizing a batch of one by itself).
    """
    was_training = getattr(model, "training", True)
    model.train(train_mode)
    block_size = model.get_block_size()
    out = []
    for _ in range(n):
        context = [0] * block_size
        word = []
        while len(word) < max_len:
            logits, _ = model(torch.tensor([context]))
            if logits.ndim == 3:  # GPT: the last position's logits
                logits = logits[:, -1, :]
            probs = torch.softmax(logits, dim=1)
            ix = torch.multinomial(probs, num_samples=1, generator=generator).item()
            context = context[1:] + [ix]
            if ix == 0:
                break
            word.append(ix)
        out.append(word)
    model.train(was_training)
    return out


def lecture_multinomial(p, generator):
    """
    One draw from the row p as torch's CPU multinomial did in 2022, which is what
    the lecture's printed samples came from: the row's float32 cumulative sum,
    normalized, last bucket forced to 1, searched with one float64 uniform.
    """
    cdf = np.cumsum(p.detach().cpu().numpy().astype(np.float32), dtype=np.float32)
    total = cdf[-1]
    if total > 0:
        cdf = cdf / total
    cdf[-1] = 1.0
    u = torch.rand(1, generator=generator, dtype=torch.float64).item()
    return int(np.searchsorted(cdf.astype(np.float64), u, side="left"))


def sample_bigram(P, n=5, generator=None, sampler="torch"):
    """Lecture 2's loop: from '.', draw the next character from row P[ix] until '.'."""
    out = []
    for _ in range(n):
        ix, word = 0, []
        while True:
            p = P[ix]
            if sampler == "lecture":
                ix = lecture_multinomial(p, generator)
            else:
                ix = torch.multinomial(p, num_samples=1, replacement=True, generator=generator).item()
            if ix == 0:
                break
            word.append(ix)
        out.append(word)
    return out
