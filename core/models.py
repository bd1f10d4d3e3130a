"""
The lectures' models. Every neural model speaks makemore's contract:

    logits, loss = model(idx, targets=None)     # loss is None without targets
    model.get_block_size(); model.parameters(); model.named_parameters()
    model.train(); model.eval()

so training, evaluation and sampling never branch on the model type. Random
parameters are drawn from an explicit torch.Generator in the order the lecture
creates them, so a seed reproduces the lecture's numbers to the last digit.
The float operations are also the lecture's own (x @ W + b, not F.linear;
randn * (5/3) / fan_in**0.5 in that order): that is what makes them exact.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import (BatchNorm1d, BatchNormStd, Embedding, Flatten, FlattenConsecutive, Linear,
                     Sequential, Tanh)

# -----------------------------------------------------------------------------
# shared plumbing for the lecture-style (non nn.Module) models


class LectureModel:
    """Base of the from-scratch models: a list of layers with .out, parameters with names."""

    layers = ()  # (name, layer) pairs in forward order; the recorder reads their .out

    def __call__(self, idx, targets=None):
        return self.forward(idx, targets)

    def named_parameters(self):
        raise NotImplementedError

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_layers(self):
        return list(self.layers)

    def train(self, mode=True):
        for _, layer in self.named_layers():
            if hasattr(layer, "training"):
                layer.training = mode
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        # the lecture-style models are small and CPU-first; moving one means moving every tensor it holds
        for obj in [self] + [layer for _, layer in self.named_layers()]:
            for k, v in list(vars(obj).items()):
                if isinstance(v, torch.Tensor) and v.device != torch.device(device):
                    setattr(obj, k, v.detach().to(device).requires_grad_(v.requires_grad))
        self._relink()
        return self

    def _relink(self):
        pass

    def num_params(self):
        return sum(p.nelement() for p in self.parameters())

    def _require_grad(self):
        for p in self.parameters():
            p.requires_grad = True


def _wrap_linear(weight, bias):
    """A lecture Linear around tensors drawn elsewhere (the MLP draws them itself, in lecture order)."""
    layer = Linear.__new__(Linear)
    layer.weight, layer.bias = weight, bias
    return layer


def _wrap_embedding(weight):
    layer = Embedding.__new__(Embedding)
    layer.weight = weight
    return layer


# -----------------------------------------------------------------------------
# lecture 2: bigrams


class Bigram:
    """The count model: N[ix1, ix2] counts, P = (N + smoothing) normalized per row."""

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

    def __call__(self, idx, targets=None):
        return self.forward(idx, targets)

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
        import numpy as np
        logprob = self.P[xs, ys].log().numpy()
        return torch.tensor(np.cumsum(logprob, dtype=np.float32)[-1])

    def nll(self, xs, ys):
        """The lecture's average negative log likelihood, nll / n (-inf log P gives inf)."""
        return -self.log_likelihood(xs, ys) / len(xs)

    def get_block_size(self):
        return 1

    def parameters(self):
        return []

    def named_parameters(self):
        return []

    def num_params(self):
        return 0

    def train(self, mode=True):
        return self

    def eval(self):
        return self


class BigramNN(LectureModel):
    """Lecture 2's neural bigram: one-hot @ W, softmax written out, 0.01 * mean(W**2)."""

    def __init__(self, vocab_size, generator=None, reg=0.01):
        self.vocab_size = vocab_size
        self.reg = reg
        self.W = torch.randn((vocab_size, vocab_size), generator=generator, requires_grad=True)
        self.layers = []

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

    def get_block_size(self):
        return 1


# -----------------------------------------------------------------------------
# lectures 3-4: the Bengio MLP with its lecture-4 initialization fixes


class MLP(LectureModel):
    """
    C, W1, b1, W2, b2 drawn from the generator in that order, scaled as the preset
    says; with batchnorm=True b1 is not drawn at all (BatchNorm's own bias makes it
    redundant -- the lecture's final code comments it out, which changes the stream).
    """

    def __init__(self, vocab_size, block_size=3, n_embd=10, n_hidden=200, generator=None,
                 w1_scale=1.0, w1_kaiming=False, b1_scale=1.0, w2_scale=1.0, b2_scale=1.0,
                 batchnorm=False):
        g = generator
        self.block_size = block_size
        fan_in = n_embd * block_size
        self.C = torch.randn((vocab_size, n_embd), generator=g)
        W1 = torch.randn((fan_in, n_hidden), generator=g)
        if w1_kaiming:
            W1 = W1 * w1_scale / fan_in**0.5  # (5/3)/((n_embd * block_size)**0.5), in the lecture's order
        elif w1_scale != 1.0:
            W1 = W1 * w1_scale
        self.W1 = W1
        self.b1 = None
        if not batchnorm:
            b1 = torch.randn(n_hidden, generator=g)
            self.b1 = b1 * b1_scale if b1_scale != 1.0 else b1
        W2 = torch.randn((n_hidden, vocab_size), generator=g)
        self.W2 = W2 * w2_scale if w2_scale != 1.0 else W2
        b2 = torch.randn(vocab_size, generator=g)
        self.b2 = b2 * b2_scale if b2_scale != 1.0 else b2
        self.bn = BatchNormStd(n_hidden) if batchnorm else None
        self._relink()
        self._require_grad()

    def _relink(self):
        # the layers wrap C, W1, b1, W2, b2 (rebuilt after .to() moved them)
        layers = [("emb", _wrap_embedding(self.C)), ("embcat", Flatten()),
                  ("hpreact", _wrap_linear(self.W1, self.b1))]
        if self.bn is not None:
            layers.append(("batchnorm", self.bn))
        layers += [("h", Tanh()), ("logits", _wrap_linear(self.W2, self.b2))]
        self.layers = layers

    def named_parameters(self):
        named = [("C", self.C), ("W1", self.W1)]
        if self.b1 is not None:
            named.append(("b1", self.b1))
        named += [("W2", self.W2), ("b2", self.b2)]
        if self.bn is not None:
            named += self.bn.named_parameters()
        return named

    def forward(self, idx, targets=None):
        x = idx
        for _, layer in self.layers:
            x = layer(x)
        logits = x
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def get_block_size(self):
        return self.block_size


# -----------------------------------------------------------------------------
# lecture 4, second half: the deep stack of Linear / BatchNorm1d / Tanh


class Deep(LectureModel):
    """
    C, then Linear(30, 100) and four Linear(100, 100), each optionally followed by
    BatchNorm1d and Tanh, then Linear(100, vocab) (+ BatchNorm1d). With BatchNorm the
    last BatchNorm's gamma is scaled by 0.1, else the last Linear's weight; every
    other Linear weight is multiplied by the gain -- including, with BatchNorm, the
    last Linear, because the lecture loops over layers[:-1].
    """

    def __init__(self, vocab_size, block_size=3, n_embd=10, n_hidden=100, n_layer=5,
                 gain=5 / 3, batchnorm=True, tanh=True, generator=None):
        g = generator
        self.block_size = block_size
        self.C = torch.randn((vocab_size, n_embd), generator=g)
        layers = []
        dims = [n_embd * block_size] + [n_hidden] * n_layer
        for fan_in, fan_out in zip(dims, dims[1:]):
            layers.append(Linear(fan_in, fan_out, bias=not batchnorm, generator=g))
            if batchnorm:
                layers.append(BatchNorm1d(fan_out))
            if tanh:
                layers.append(Tanh())
        layers.append(Linear(n_hidden, vocab_size, bias=not batchnorm, generator=g))
        if batchnorm:
            layers.append(BatchNorm1d(vocab_size))
        with torch.no_grad():
            if batchnorm:
                layers[-1].gamma *= 0.1  # last layer: make less confident
            else:
                layers[-1].weight *= 0.1
            for layer in layers[:-1]:  # all other layers: apply gain
                if isinstance(layer, Linear):
                    layer.weight *= gain
        self.layers = [(f"{i} {type(layer).__name__}", layer) for i, layer in enumerate(layers)]
        self._require_grad()

    def named_parameters(self):
        named = [("C", self.C)]
        for name, layer in self.layers:
            for pname, p in getattr(layer, "named_parameters", lambda: [])():
                named.append((f"{name}.{pname}", p))
        return named

    def forward(self, idx, targets=None):
        emb = self.C[idx]  # (B, block_size, n_embd)
        x = emb.view(emb.shape[0], -1)  # concatenate the vectors
        for _, layer in self.layers:
            x = layer(x)
        loss = None if targets is None else F.cross_entropy(x, targets)
        return x, loss

    def get_block_size(self):
        return self.block_size


# -----------------------------------------------------------------------------
# lecture 6: WaveNet-style hierarchy


class WaveNet(LectureModel):
    """
    Embedding, then groups of FlattenConsecutive(n) -> Linear -> BatchNorm1d -> Tanh,
    then Linear to the vocabulary with its weight scaled by 0.1. flatten=(8,) is the
    lecture's flat context-8 MLP; (2, 2, 2) the hierarchy. bn_dims3d=0 reproduces the
    lecture's first hierarchical run, whose BatchNorm averaged over dim 0 only (the bug).
    """

    def __init__(self, vocab_size, block_size=8, n_embd=24, n_hidden=128, flatten=(2, 2, 2),
                 generator=None, bn_fixed=True):
        if math.prod(flatten) != block_size:
            raise ValueError(f"the flatten factors {flatten} must multiply to block_size {block_size}")
        g = generator
        self.block_size = block_size
        layers = [Embedding(vocab_size, n_embd, generator=g)]
        width = n_embd
        for n in flatten:
            bn = BatchNorm1d(n_hidden)
            if not bn_fixed:
                bn = _Dim0BatchNorm1d(n_hidden)
            layers += [FlattenConsecutive(n), Linear(width * n, n_hidden, bias=False, generator=g), bn, Tanh()]
            width = n_hidden
        layers.append(Linear(n_hidden, vocab_size, generator=g))
        with torch.no_grad():
            layers[-1].weight *= 0.1  # last layer make less confident
        self.model = Sequential(layers)
        self.layers = [(f"{i} {type(layer).__name__.lstrip('_').replace('Dim0', '')}", layer)
                       for i, layer in enumerate(layers)]
        self._require_grad()

    def named_parameters(self):
        named = []
        for name, layer in self.layers:
            for pname, p in getattr(layer, "named_parameters", lambda: [])():
                named.append((f"{name}.{pname}", p))
        return named

    def forward(self, idx, targets=None):
        logits = self.model(idx)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def get_block_size(self):
        return self.block_size


class _Dim0BatchNorm1d(BatchNorm1d):
    """The lecture's hierarchical run before the fix: 3-D input averaged over dim 0 only."""

    def __call__(self, x):
        if self.training:
            xmean = x.mean(0, keepdim=True)
            xvar = x.var(0, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)
        self.out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out


# -----------------------------------------------------------------------------
# lecture 7: GPT, as in ng-video-lecture's gpt.py (torch.nn modules)


class Head(nn.Module):
    """ one head of self-attention """

    def __init__(self, n_embd, head_size, block_size, dropout):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)
        self.att = None  # the last attention matrix, kept only when asked for (attention maps)
        self.keep_att = False

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)    # (B,T,hs)
        q = self.query(x)  # (B,T,hs)
        # compute attention scores ("affinities")
        wei = q @ k.transpose(-2, -1) * k.shape[-1]**-0.5  # (B, T, hs) @ (B, hs, T) -> (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))  # (B, T, T)
        wei = F.softmax(wei, dim=-1)  # (B, T, T)
        if self.keep_att:
            self.att = wei.detach()
        wei = self.dropout(wei)
        # perform the weighted aggregation of the values
        v = self.value(x)  # (B,T,hs)
        out = wei @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)
        return out


class MultiHeadAttention(nn.Module):
    """ multiple heads of self-attention in parallel """

    def __init__(self, n_embd, num_heads, head_size, block_size, dropout, proj=True):
        super().__init__()
        self.heads = nn.ModuleList([Head(n_embd, head_size, block_size, dropout) for _ in range(num_heads)])
        # the projection back into the residual pathway arrives with the residual connections
        self.proj = nn.Linear(head_size * num_heads, n_embd) if proj else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        if self.proj is not None:
            out = self.dropout(self.proj(out))
        return out


class FeedForward(nn.Module):
    """ a simple linear layer followed by a non-linearity """

    def __init__(self, n_embd, dropout, proj=True):
        super().__init__()
        if proj:  # the Transformer's: 4x wider inside, projected back into the residual pathway
            self.net = nn.Sequential(
                nn.Linear(n_embd, 4 * n_embd),
                nn.ReLU(),
                nn.Linear(4 * n_embd, n_embd),
                nn.Dropout(dropout),
            )
        else:  # the lecture's first feed-forward, before residual connections (≈ 1:24 in the video)
            self.net = nn.Sequential(nn.Linear(n_embd, n_embd), nn.ReLU())

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    """
    Transformer block: communication followed by computation. residual=False is the
    lecture's model before the residual pathway: x = sa(x), then x = ffwd(x) (if any),
    with no projections and no LayerNorm.
    """

    residual = True  # (a class default, so models saved before the option existed still load)

    def __init__(self, n_embd, n_head, block_size, dropout, residual=True, ffwd=True):
        super().__init__()
        head_size = n_embd // n_head
        self.residual = residual
        self.sa = MultiHeadAttention(n_embd, n_head, head_size, block_size, dropout, proj=residual)
        self.ffwd = FeedForward(n_embd, dropout, proj=residual) if ffwd else None
        if residual:
            self.ln1 = nn.LayerNorm(n_embd)
            self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):
        if not self.residual:
            x = self.sa(x)  # apply one (or several) heads of self-attention. (B,T,C)
            return x if self.ffwd is None else self.ffwd(x)  # (B,T,C)
        x = x + self.sa(self.ln1(x))
        x = x + self.ffwd(self.ln2(x))
        return x


class GPT(nn.Module):
    """
    The lecture's GPTLanguageModel. Built from the global torch RNG, as the lecture
    does after torch.manual_seed(1337): build_model seeds it first.

    The lecture builds it in steps, and so can this class: n_layer=0 is the bigram
    model (embeddings straight into lm_head); residual=False with n_layer=1 the
    self-attention heads (ffwd=False), then + feed-forward; the defaults are the
    final Transformer of Blocks with residual connections and LayerNorm. The steps were
    trained with PyTorch's default initialization (torch_init=True); the normal(0, 0.02)
    init came with the final gpt.py.
    """

    def __init__(self, vocab_size, block_size=32, n_embd=64, n_head=4, n_layer=4, dropout=0.0,
                 residual=True, ffwd=True, torch_init=False):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by the number of heads ({n_head}).")
        self.block_size = block_size
        # each token directly reads off the logits for the next token from a lookup table
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size, dropout, residual, ffwd)
                                      for _ in range(n_layer)])
        # final layer norm (it came with the residual blocks)
        self.ln_f = nn.LayerNorm(n_embd) if residual and n_layer else nn.Identity()
        self.lm_head = nn.Linear(n_embd, vocab_size)
        if not torch_init:
            # better init, not covered in the original GPT video, but important (the lecture's gpt.py)
            self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        # idx and targets are both (B,T) tensor of integers
        tok_emb = self.token_embedding_table(idx)  # (B,T,C)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))  # (T,C)
        x = tok_emb + pos_emb  # (B,T,C)
        x = self.blocks(x)  # (B,T,C)
        x = self.ln_f(x)  # (B,T,C)
        logits = self.lm_head(x)  # (B,T,vocab_size)
        loss = None
        if targets is not None:
            B, T, C = logits.shape
            loss = F.cross_entropy(logits.view(B * T, C), targets.view(B * T))
        return logits, loss

    def get_block_size(self):
        return self.block_size

    def num_params(self):
        return sum(p.nelement() for p in self.parameters())

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, generator=None):
        # idx is (B, T) array of indices in the current context
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.block_size:]  # crop idx to the last block_size tokens
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :]  # becomes (B, C)
            probs = F.softmax(logits, dim=-1)  # (B, C)
            idx_next = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)  # (B, T+1)
        return idx
