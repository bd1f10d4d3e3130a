"""
Lecture 7's GPT: a character Transformer (Head, MultiHeadAttention, FeedForward, Block).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

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

    residual = True  # a class default too, so a Block pickled without the attribute still loads

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
