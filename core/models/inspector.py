"""
Looking inside a model, for the lecture pages: each layer's output shape and
parameter count on a batch (lecture 6's `Embedding : (32, 8, 10)` table), each
head's attention matrix for a prompt (lecture 7), generated text, and how long
1,000 training steps of a spec's model take on this machine.

Nothing here changes a model: every function puts it back in the mode it found
it in, and none draws from the global RNG.
"""

import time

import torch
import torch.nn as nn

# -----------------------------------------------------------------------------
# the layer inspector


@torch.no_grad()
def layer_shapes(model, idx):
    """
    [(layer name, output shape, parameter count)] for one forward pass of idx, in
    forward order. The lecture's layers keep their output in .out; for a torch.nn
    model (GPT) forward hooks on its top-level modules and on each Block read it.
    """
    was = getattr(model, "training", True)
    model.eval()  # BatchNorm's running statistics are not touched by a look
    try:
        if isinstance(model, nn.Module):
            return _module_shapes(model, idx)
        model(idx)
        rows = []
        for name, layer in model.named_layers():
            n = sum(p.nelement() for p in getattr(layer, "parameters", list)())
            rows.append((name.split(" ", 1)[-1], tuple(layer.out.shape), n))
        return rows
    finally:
        model.train(was)


def _module_shapes(model, idx):
    named = []
    for name, m in model.named_children():
        if isinstance(m, nn.Sequential) and len(m) and all(isinstance(c, nn.Module) for c in m):
            named += [(f"{name}.{i} {type(c).__name__}", c) for i, c in enumerate(m)]
        elif not isinstance(m, nn.Identity):
            named.append((f"{name} {type(m).__name__}", m))
    out = {}
    handles = [m.register_forward_hook(lambda mod, args, y, name=name: out.__setitem__(name, tuple(y.shape)))
               for name, m in named]
    try:
        model(idx)
    finally:
        for h in handles:
            h.remove()
    return [(name, out[name], sum(p.nelement() for p in m.parameters())) for name, m in named if name in out]


# -----------------------------------------------------------------------------
# attention maps


@torch.no_grad()
def attention_maps(model, idx):
    """
    Every head's attention weights (after the causal mask and softmax) for one
    prompt idx of shape (1, T): a tensor (n_layer, n_head, T, T) whose row t says
    how much position t reads from each position <= t. None for a model without
    attention (the bigram step). T is cropped to the model's block_size.
    """
    blocks = list(getattr(model, "blocks", []))
    if not blocks:
        return None
    idx = idx[:, -model.get_block_size():]
    was = model.training
    heads = [h for b in blocks for h in b.sa.heads]
    model.eval()  # no dropout on the weights we look at
    for h in heads:
        h.keep_att = True
    try:
        model(idx)
        return torch.stack([torch.stack([h.att[0] for h in b.sa.heads]) for b in blocks])
    finally:
        for h in heads:
            h.keep_att, h.att = False, None
        model.train(was)


# -----------------------------------------------------------------------------
# generated text


@torch.no_grad()
def generate_text(model, max_new_tokens=300, seed=1337, context=None):
    """
    The lecture's model.generate from a context (default: one character 0, the
    lecture's torch.zeros((1, 1))) with its own generator, in eval mode: the
    training run's RNG stream is not touched. Returns the new indices as a list.
    """
    was = model.training
    model.eval()
    try:
        g = torch.Generator().manual_seed(seed)
        device = next(model.parameters()).device
        idx = context if context is not None else torch.zeros((1, 1), dtype=torch.long, device=device)
        out = model.generate(idx, max_new_tokens, generator=g)
        return out[0, idx.shape[1]:].tolist()
    finally:
        model.train(was)


# -----------------------------------------------------------------------------
# time per 1,000 steps


def time_per_1000_steps(model, batch_size, block_size, vocab_size, cfg, budget=1.5, threads=1):
    """
    Seconds for 1,000 training steps of `model` (forward, backward, update) at cfg's
    optimizer and batch size, plus its share of the periodic loss estimates, on
    random batches: measured for up to `budget` seconds on `threads` torch threads
    (a worker trains on one). The model is trained a few steps: pass a fresh one.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        gpt = isinstance(model, nn.Module)
        shape = (batch_size, block_size)

        def batch():
            X = torch.randint(0, vocab_size, shape, generator=g)
            Y = torch.randint(0, vocab_size, shape if gpt else (batch_size,), generator=g)
            return X, Y

        params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.lr) if cfg.optimizer == "adamw" else None
        model.train()

        def step():
            X, Y = batch()
            _, loss = model(X, Y)
            for p in params:
                p.grad = None
            loss.backward()
            if opt is not None:
                opt.step()
            else:
                with torch.no_grad():
                    for p in params:
                        p -= cfg.lr * p.grad

        step_s = _median_time(step, budget * 0.75)
        eval_s = 0.0
        if gpt and cfg.eval_every and cfg.eval_iters:  # estimate_loss: eval_iters batches x 2 splits
            model.eval()
            with torch.no_grad():
                fwd = _median_time(lambda: model(*batch()), budget * 0.25)
            model.train()
            eval_s = 2 * cfg.eval_iters * fwd * (1000 / cfg.eval_every)
        return 1000 * step_s + eval_s
    finally:
        torch.set_num_threads(old)


def _median_time(fn, budget):
    t0 = time.perf_counter()
    fn()  # warm-up (allocations, AdamW's state)
    first = time.perf_counter() - t0
    if first > budget / 2:  # a big model (the lecture's full GPT): one step is the measurement
        return first
    times, t_end = [], time.perf_counter() + budget
    while len(times) < 3 or (time.perf_counter() < t_end and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() > t_end:
            break
    times.sort()
    return times[len(times) // 2]
