"""
Lecture 5, "Becoming a Backprop Ninja": the lecture's network (n_embd 10, n_hidden 64,
BatchNorm) with its backward pass written out by hand, and autograd as the oracle.

    g = torch.Generator().manual_seed(2147483647)
    net = Ninja(vocab_size, generator=g)             # C, W1, b1, W2, b2, bngain, bnbias from g
    Xb, Yb = lecture_batch(Xtr, Ytr, g)              # the lecture's first minibatch, from g too
    t = chunked_forward(net, Xb, Yb)                 # exercise 1: every intermediate, by name
    t["loss"].backward()                             # autograd fills t[name].grad
    d = manual_backward(net, Xb, Yb, t)              # ... and we do it by hand: d["logprobs"], ...
    table = [cmp(name, d[name], grad_of(net, t, name)) for name in CMP_ORDER]
    # or all of the above in one call: run_exercises(Xtr, Ytr, vocab_size)

Exercise 2 is cross_entropy_backward, exercise 3 batchnorm_backward; exercise 4 is
Ninja.manual_backward, which the training loop calls instead of loss.backward()
when a run's TrainConfig says backward="manual" (the "ninja/manual" preset).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.models.layers import BatchNorm1d
from core.models.mlp import MLP

BN_EPS = 1e-5  # the lecture's (bnvar + 1e-5)**-0.5

# -----------------------------------------------------------------------------
# the network, exercise 4's forward, and its backward by hand


class NinjaBatchNorm(BatchNorm1d):
    """
    The lecture-5 BatchNorm: batch mean, Bessel-corrected variance, (bnvar + 1e-5)**-0.5.
    Its backward (exercise 3) sits right under its forward, as micrograd's ops do.
    Running statistics (momentum 0.001, lecture 4's) make eval mode work at any step; at
    the end of training Ninja.calibrate replaces them as the lecture does.
    """

    params = ("bngain", "bnbias")

    def __init__(self, bngain, bnbias, momentum=0.001):
        self.momentum = momentum
        self.training = True
        self.bngain, self.bnbias = bngain, bnbias
        self.running_mean, self.running_var = torch.zeros_like(bngain), torch.ones_like(bngain)

    def batch_stats(self, hprebn):
        return hprebn.mean(0, keepdim=True), hprebn.var(0, keepdim=True, unbiased=True)  # bnmean, bnvar

    def normalize(self, hprebn, bnmean, bnvar):
        # bnvar_inv and bnraw are what the closed-form backward reads
        self.bnvar_inv = (bnvar + BN_EPS)**-0.5
        self.bnraw = (hprebn - bnmean) * self.bnvar_inv
        return self.bngain * self.bnraw + self.bnbias  # hpreact

    def backward(self, dhpreact):
        """Exercise 3: (dhprebn, dbngain, dbnbias) from dhpreact, in closed form."""
        return batchnorm_backward(dhpreact, self.bngain, self.bnvar_inv, self.bnraw)


class Ninja(MLP):
    """
    The lecture's network, lecture 4's MLP with BatchNorm: 4,137 parameters with vocab 27.
    Drawn from the generator in the lecture's order C, W1, b1, W2, b2, bngain, bnbias (the
    lecture drew the last two from the global RNG; here they come from g too, so a seed
    reproduces everything). b1 is useless because of BatchNorm, kept "just for fun".
    """

    def __init__(self, vocab_size, block_size=3, n_embd=10, n_hidden=64, generator=None):
        super().__init__(vocab_size, block_size, n_embd, n_hidden, generator, w1_scale=5 / 3, w1_kaiming=True,
                         b1_scale=0.1, w2_scale=0.1, b2_scale=0.1)
        g = generator
        # BatchNorm parameters: not ones/zeros, so a wrong gradient cannot hide behind them
        bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
        bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
        self.bn = NinjaBatchNorm(bngain, bnbias)
        self._relink()
        self._require_grad()
        self._batch = None

    @property
    def bngain(self):
        return self.bn.bngain

    @property
    def bnbias(self):
        return self.bn.bnbias

    def forward(self, idx, targets=None):
        """Exercise 4's forward: the chunks of exercise 1 put back together (MLP's layers)."""
        self._batch = (idx, targets)  # what the manual backward needs besides the layers' .out
        return super().forward(idx, targets)

    @torch.no_grad()
    def calibrate(self, Xtr):
        """The lecture's "calibrate the batch norm at the end of training": mean and variance over all of Xtr."""
        emb = self.C[Xtr]
        embcat = emb.view(emb.shape[0], -1)
        hprebn = embcat @ self.W1 + self.b1
        self.bn.running_mean, self.bn.running_var = self.bn.batch_stats(hprebn)

    @torch.no_grad()
    def manual_backward(self):
        """
        Exercise 4: every parameter's .grad from the last forward, by hand, no autograd.
        The two closed forms (cross-entropy, BatchNorm) do the heavy lifting.
        """
        idx, Yb = self._batch
        if Yb is None:
            raise RuntimeError("manual_backward needs a forward pass with targets")
        emb, embcat, hprebn, hpreact, h, logits = [layer.out for _, layer in self.layers]
        dlogits = cross_entropy_backward(logits, Yb)
        dh = dlogits @ self.W2.T
        dW2 = h.T @ dlogits
        db2 = dlogits.sum(0)
        dhpreact = (1.0 - h**2) * dh
        dhprebn, dbngain, dbnbias = self.bn.backward(dhpreact)
        dembcat = dhprebn @ self.W1.T
        dW1 = embcat.T @ dhprebn
        db1 = dhprebn.sum(0)
        demb = dembcat.view(emb.shape)
        dC = embedding_backward(idx, demb, self.C)
        for p, grad in zip(self.parameters(), [dC, dW1, db1, dW2, db2, dbngain, dbnbias]):
            p.grad = grad


def lecture_batch(Xtr, Ytr, generator, batch_size=32):
    """The lecture's minibatch: ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)."""
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=generator)
    return Xtr[ix], Ytr[ix]


# -----------------------------------------------------------------------------
# exercises 2 and 3: the closed forms


def cross_entropy_backward(logits, Yb):
    """Exercise 2: dloss/dlogits of F.cross_entropy(logits, Yb) = (softmax - one_hot(Yb)) / n."""
    n = logits.shape[0]
    dlogits = F.softmax(logits, 1)
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    return dlogits


def batchnorm_backward(dhpreact, bngain, bnvar_inv, bnraw):
    """Exercise 3: (dhprebn, dbngain, dbnbias) for hpreact = bngain * bnraw + bnbias, in closed form."""
    n = dhpreact.shape[0]
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                        - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    return dhprebn, dbngain, dbnbias


def embedding_backward(Xb, demb, C):
    """
    dC: every row of demb added into the row of C it was read from. The lecture writes
    the loop (for k, for j: dC[Xb[k, j]] += demb[k, j]); index_add_ is that loop in one call.
    """
    dC = torch.zeros_like(C)
    dC.index_add_(0, Xb.reshape(-1), demb.reshape(-1, C.shape[1]))
    return dC


# -----------------------------------------------------------------------------
# exercise 1: the forward pass chunked into steps small enough to backprop one at a time

# the tensors the lecture calls retain_grad() on, in its order
INTERMEDIATES = ["logprobs", "probs", "counts", "counts_sum", "counts_sum_inv", "norm_logits", "logit_maxes",
                 "logits", "h", "hpreact", "bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff", "hprebn", "bnmeani",
                 "embcat", "emb"]
PARAMS = ["C", "W1", "b1", "W2", "b2", "bngain", "bnbias"]
# the order of the lecture's cmp(...) lines: backwards through the network
CMP_ORDER = ["logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits", "logit_maxes",
             "logits", "h", "W2", "b2", "hpreact", "bngain", "bnbias", "bnraw", "bnvar_inv", "bnvar", "bndiff2",
             "bndiff", "bnmeani", "hprebn", "embcat", "W1", "b1", "emb", "C"]


def chunked_forward(net, Xb, Yb):
    """
    The lecture's forward, one small operation per line, every intermediate kept (with
    retain_grad, so autograd's answer can be read after loss.backward()). Returns
    {name: tensor} including "loss".
    """
    n = Xb.shape[0]
    C, W1, b1, W2, b2, bngain, bnbias = net.parameters()
    emb = C[Xb]  # embed the characters into vectors
    embcat = emb.view(emb.shape[0], -1)  # concatenate the vectors
    # Linear layer 1
    hprebn = embcat @ W1 + b1  # hidden layer pre-activation
    # BatchNorm layer
    bnmeani = 1 / n * hprebn.sum(0, keepdim=True)
    bndiff = hprebn - bnmeani
    bndiff2 = bndiff**2
    bnvar = 1 / (n - 1) * (bndiff2).sum(0, keepdim=True)  # note: Bessel's correction (dividing by n-1, not n)
    bnvar_inv = (bnvar + BN_EPS)**-0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    # Non-linearity
    h = torch.tanh(hpreact)  # hidden layer
    # Linear layer 2
    logits = h @ W2 + b2  # output layer
    # cross entropy loss (same as F.cross_entropy(logits, Yb))
    logit_maxes = logits.max(1, keepdim=True).values
    norm_logits = logits - logit_maxes  # subtract max for numerical stability
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdims=True)
    counts_sum_inv = counts_sum**-1  # the lecture: with 1.0 / counts_sum backprop is not bit exact
    probs = counts * counts_sum_inv
    logprobs = probs.log()
    loss = -logprobs[range(n), Yb].mean()
    t = dict(emb=emb, embcat=embcat, hprebn=hprebn, bnmeani=bnmeani, bndiff=bndiff, bndiff2=bndiff2,
             bnvar=bnvar, bnvar_inv=bnvar_inv, bnraw=bnraw, hpreact=hpreact, h=h, logits=logits,
             logit_maxes=logit_maxes, norm_logits=norm_logits, counts=counts, counts_sum=counts_sum,
             counts_sum_inv=counts_sum_inv, probs=probs, logprobs=logprobs)
    if torch.is_grad_enabled():
        for name in INTERMEDIATES:
            t[name].retain_grad()
    t["loss"] = loss
    return t


@torch.no_grad()
def manual_backward(net, Xb, Yb, t):
    """
    Exercise 1: the gradient of the loss for every tensor of chunked_forward, by hand,
    one line per chain-rule step as in the lecture. Returns {name: d<name>}.
    """
    n = Xb.shape[0]
    C, W1, b1, W2, b2, bngain, bnbias = net.parameters()
    logprobs, probs, counts, counts_sum = t["logprobs"], t["probs"], t["counts"], t["counts_sum"]
    counts_sum_inv, logits, h, bnraw = t["counts_sum_inv"], t["logits"], t["h"], t["bnraw"]
    bndiff, bnvar, bnvar_inv, bndiff2 = t["bndiff"], t["bnvar"], t["bnvar_inv"], t["bndiff2"]
    hprebn, embcat, emb = t["hprebn"], t["embcat"], t["emb"]

    dlogprobs = torch.zeros_like(logprobs)
    dlogprobs[range(n), Yb] = -1.0 / n
    dprobs = (1.0 / probs) * dlogprobs
    dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
    dcounts = counts_sum_inv * dprobs
    dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv
    dcounts += torch.ones_like(counts) * dcounts_sum
    dnorm_logits = counts * dcounts
    dlogits = dnorm_logits.clone()
    dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
    dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    dhpreact = (1.0 - h**2) * dh
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnraw = bngain * dhpreact
    dbnbias = dhpreact.sum(0, keepdim=True)
    dbndiff = bnvar_inv * dbnraw
    dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
    dbnvar = (-0.5 * (bnvar + BN_EPS)**-1.5) * dbnvar_inv
    dbndiff2 = (1.0 / (n - 1)) * torch.ones_like(bndiff2) * dbnvar
    dbndiff += (2 * bndiff) * dbndiff2
    dhprebn = dbndiff.clone()
    dbnmeani = (-dbndiff).sum(0, keepdim=True)
    dhprebn += 1.0 / n * (torch.ones_like(hprebn) * dbnmeani)
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    demb = dembcat.view(emb.shape)
    dC = embedding_backward(Xb, demb, C)
    return dict(logprobs=dlogprobs, probs=dprobs, counts_sum_inv=dcounts_sum_inv, counts_sum=dcounts_sum,
                counts=dcounts, norm_logits=dnorm_logits, logit_maxes=dlogit_maxes, logits=dlogits, h=dh,
                W2=dW2, b2=db2, hpreact=dhpreact, bngain=dbngain, bnbias=dbnbias, bnraw=dbnraw,
                bnvar_inv=dbnvar_inv, bnvar=dbnvar, bndiff2=dbndiff2, bndiff=dbndiff, bnmeani=dbnmeani,
                hprebn=dhprebn, embcat=dembcat, W1=dW1, b1=db1, emb=demb, C=dC)


def grad_of(net, t, name):
    """Autograd's gradient for a name: an intermediate's retained .grad or a parameter's .grad."""
    if name in PARAMS:
        return dict(net.named_parameters())[name].grad
    return t[name].grad


# -----------------------------------------------------------------------------
# checking against autograd


@dataclass
class Check:
    name: str
    shape: tuple
    exact: bool     # torch.all(dt == t.grad): every bit the same
    approx: bool    # torch.allclose(dt, t.grad): equal up to float rounding
    maxdiff: float  # (dt - t.grad).abs().max()


def cmp(s, dt, tgrad):
    """The lecture's cmp(s, dt, t), with t.grad passed in: exact, approximate and the max difference."""
    if tgrad is None:
        raise ValueError(f"{s}: autograd has no gradient to compare with (was loss.backward() called?)")
    ex = torch.all(dt == tgrad).item()
    app = torch.allclose(dt, tgrad)
    maxdiff = (dt - tgrad).abs().max().item()
    return Check(s, tuple(tgrad.shape), bool(ex), bool(app), maxdiff)


@dataclass
class Exercises:
    """Everything the lecture computes on its first minibatch, ready to show."""
    net: Ninja
    Xb: torch.Tensor
    Yb: torch.Tensor
    t: dict           # name -> tensor of the chunked forward (with autograd's .grad)
    d: dict           # name -> the manual gradient (exercise 1)
    checks: list      # [Check] in CMP_ORDER
    loss_fast: float  # F.cross_entropy(logits, Yb), exercise 2's forward
    dlogits: torch.Tensor  # exercise 2's closed form
    ce_check: Check
    hpreact_fast_diff: float  # exercise 3's one-line BatchNorm forward vs the chunked one
    dhprebn: torch.Tensor  # exercise 3's closed form
    bn_check: Check

    @property
    def loss(self):
        return self.t["loss"].item()


def run_exercises(Xtr, Ytr, vocab_size, seed=2147483647, batch_size=32, **net_kw):
    """
    The lecture's notebook up to exercise 3 on one minibatch: the network from g, the
    batch from g, the chunked forward, autograd's backward, and the three manual ones.
    """
    g = torch.Generator().manual_seed(seed)
    net = Ninja(vocab_size, generator=g, **net_kw)
    Xb, Yb = lecture_batch(Xtr, Ytr, g, batch_size)
    t = chunked_forward(net, Xb, Yb)
    for p in net.parameters():
        p.grad = None
    t["loss"].backward()
    d = manual_backward(net, Xb, Yb, t)
    checks = [cmp(name, d[name], grad_of(net, t, name)) for name in CMP_ORDER]
    # exercise 2: the loss in one call, its gradient in three lines
    with torch.no_grad():
        logits = t["logits"].detach()
        loss_fast = F.cross_entropy(logits, Yb).item()
        dlogits = cross_entropy_backward(logits, Yb)
        # exercise 3: BatchNorm forward in one line, backward in one line
        hprebn = t["hprebn"].detach()
        hpreact_fast = net.bngain * (hprebn - hprebn.mean(0, keepdim=True)) / torch.sqrt(
            hprebn.var(0, keepdim=True, unbiased=True) + BN_EPS) + net.bnbias
        dhprebn, _, _ = batchnorm_backward(t["hpreact"].grad, net.bngain, t["bnvar_inv"].detach(),
                                           t["bnraw"].detach())
    return Exercises(net, Xb, Yb, t, d, checks, loss_fast, dlogits, cmp("logits", dlogits, t["logits"].grad),
                     (hpreact_fast - t["hpreact"]).abs().max().item(), dhprebn,
                     cmp("hprebn", dhprebn, t["hprebn"].grad))


# -----------------------------------------------------------------------------
# the lecture's lines, to show beside the numbers: forward, backward, and the math


@dataclass
class Step:
    forward: str   # the forward line that made the tensor (or, for a parameter, where it is used)
    backward: str  # the lecture's backward line(s) for it
    latex: str     # the same in math: L is the loss, i runs over the batch, j over a row
    why: str       # one sentence, in words


def _t(name):
    return r"\texttt{" + name.replace("_", r"\_") + "}"


def _d(name):
    return _t("d" + name)


def _linear_steps(out, x, W, b, why_x, why_W, why_b, b_latex_end=""):
    """The three Steps of out = x @ W + b: a matrix multiply's backward multiplies by the other factor,
    transposed; the bias, added to every row, sums over the batch."""
    forward = f"{out} = {x} @ {W} + {b}"
    return {
        x: Step(forward, f"d{x} = d{out} @ {W}.T", _d(x) + r" = " + _d(out) + rf"\; {W[0]}_{W[1:]}^{{\top}}", why_x),
        W: Step(forward, f"d{W} = {x}.T @ d{out}", _d(W) + r" = " + _t(x) + r"^{\top}\, " + _d(out), why_W),
        b: Step(f"{forward}   # {b} broadcast over the batch", f"d{b} = d{out}.sum(0)",
                _d(b) + r"_j = \sum_i " + _d(out) + r"_{ij}" + b_latex_end, why_b),
    }


def _elementwise(forward, name, out, local, local_latex, why):
    """The Step of an elementwise op: the chain rule, its local derivative times the gradient arriving."""
    return Step(forward, f"d{name} = {local} * d{out}", _d(name) + " = " + local_latex + r" \odot " + _d(out), why)


def _broadcast_factor(forward, name, other, out, dim, why):
    """The Step of a factor broadcast along dim in out = other * name: other * dout, summed along dim."""
    kept, summed = ("j", "i") if dim == 0 else ("i", "j")
    return Step(forward, f"d{name} = ({other} * d{out}).sum({dim}, keepdim=True)",
                _d(name) + rf"_{{{kept}}} = \sum_{summed} " + _t(other) + r"_{ij}\," + _d(out) + r"_{ij}", why)


STEPS = {
    "logprobs": Step(
        "logprobs = probs.log()\nloss = -logprobs[range(n), Yb].mean()",
        "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0/n",
        _d("logprobs") + r"_{ij} = \begin{cases} -\tfrac{1}{n} & j = Y_i \\ 0 & \text{otherwise} \end{cases}",
        "The loss averages -logprobs at the n correct characters; every other entry does not touch it."),
    "probs": _elementwise("logprobs = probs.log()", "probs", "logprobs", "(1.0 / probs)",
                          r"\frac{1}{" + _t("probs") + "}",
                          "d log(x)/dx = 1/x: a correct character given a low probability gets its gradient "
                          "boosted."),
    "counts_sum_inv": _broadcast_factor("probs = counts * counts_sum_inv   # (32, 27) * (32, 1)",
                                        "counts_sum_inv", "counts", "probs", 1,
                                        "counts_sum_inv was broadcast across each row, so its gradient sums over "
                                        "the row."),
    "counts_sum": _elementwise("counts_sum_inv = counts_sum**-1", "counts_sum", "counts_sum_inv",
                               "(-counts_sum**-2)", "-" + _t("counts_sum") + "^{-2}", "d(x^-1)/dx = -x^-2."),
    "counts": Step(
        "counts_sum = counts.sum(1, keepdims=True)\nprobs = counts * counts_sum_inv",
        "dcounts = counts_sum_inv * dprobs\ndcounts += torch.ones_like(counts) * dcounts_sum",
        _d("counts") + r"_{ij} = " + _t("counts_sum_inv") + r"_i\," + _d("probs") + r"_{ij} + "
        + _d("counts_sum") + r"_i",
        "counts is used twice (in probs and in counts_sum): the two gradients add up."),
    "norm_logits": _elementwise("counts = norm_logits.exp()", "norm_logits", "counts", "counts", _t("counts"),
                                "d exp(x)/dx = exp(x), which the forward already computed: counts."),
    "logit_maxes": Step(
        "norm_logits = logits - logit_maxes   # (32, 27) - (32, 1)",
        "dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)",
        _d("logit_maxes") + r"_{i} = -\sum_j " + _d("norm_logits") + r"_{ij} \approx 0",
        "Subtracting the max only keeps exp() from overflowing; the loss does not depend on it, so this is ~0."),
    "logits": Step(
        "norm_logits = logits - logit_maxes\nlogit_maxes = logits.max(1, keepdim=True).values",
        "dlogits = dnorm_logits.clone()\n"
        "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
        _d("logits") + r"_{ij} = " + _d("norm_logits") + r"_{ij} + [\,j = \arg\max_k " + _t("logits")
        + r"_{ik}\,]\;" + _d("logit_maxes") + r"_i",
        "Two branches again; the max passes its gradient only to the entry that was the max."),
    **_linear_steps("logits", "h", "W2", "b2",
                    "A matrix multiply's backward is a matrix multiply with the other factor transposed; the shapes "
                    "decide.",
                    "(64, 32) @ (32, 27) gives W2's shape (64, 27): the only way the shapes work out.",
                    "b2 was added to every row, so its gradient sums over the batch."),
    "hpreact": _elementwise("h = torch.tanh(hpreact)", "hpreact", "h", "(1.0 - h**2)", "(1 - " + _t("h") + "^2)",
                            "tanh' = 1 - tanh^2, read off the output h (micrograd's tanh backward)."),
    "bngain": _broadcast_factor("hpreact = bngain * bnraw + bnbias   # bngain (1, 64) broadcast",
                                "bngain", "bnraw", "hpreact", 0,
                                "A multiply's local gradient is the other factor; broadcast over the batch, so sum "
                                "over it."),
    "bnbias": Step(
        "hpreact = bngain * bnraw + bnbias",
        "dbnbias = dhpreact.sum(0, keepdim=True)",
        _d("bnbias") + r"_{j} = \sum_i " + _d("hpreact") + r"_{ij}",
        "An add routes the gradient through; broadcast over the batch, so sum over it."),
    "bnraw": _elementwise("hpreact = bngain * bnraw + bnbias", "bnraw", "hpreact", "bngain", _t("bngain"),
                          "The other factor, broadcast back over the batch."),
    "bnvar_inv": _broadcast_factor("bnraw = bndiff * bnvar_inv   # (32, 64) * (1, 64)",
                                   "bnvar_inv", "bndiff", "bnraw", 0,
                                   "The other factor, summed over the batch it was broadcast across."),
    "bnvar": _elementwise("bnvar_inv = (bnvar + 1e-5)**-0.5", "bnvar", "bnvar_inv", "(-0.5*(bnvar + 1e-5)**-1.5)",
                          r"-\tfrac{1}{2}(" + _t("bnvar") + r" + 10^{-5})^{-3/2}", "The power rule."),
    "bndiff2": Step(
        "bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True)   # Bessel's correction",
        "dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar",
        _d("bndiff2") + r"_{ij} = \frac{1}{n-1}\," + _d("bnvar") + r"_j",
        "A sum in the forward is a broadcast in the backward (and the lecture's aside: train and test "
        "should both use the unbiased n-1)."),
    "bndiff": Step(
        "bndiff2 = bndiff**2\nbnraw = bndiff * bnvar_inv",
        "dbndiff = bnvar_inv * dbnraw\ndbndiff += (2*bndiff) * dbndiff2",
        _d("bndiff") + r" = " + _t("bnvar_inv") + r" \odot " + _d("bnraw") + r" + 2\," + _t("bndiff")
        + r" \odot " + _d("bndiff2"),
        "bndiff feeds two branches (bnraw and bndiff2): add both."),
    "bnmeani": Step(
        "bndiff = hprebn - bnmeani   # (32, 64) - (1, 64)",
        "dbnmeani = (-dbndiff).sum(0, keepdim=True)",
        _d("bnmeani") + r"_{j} = -\sum_i " + _d("bndiff") + r"_{ij}",
        "Broadcast in the forward, sum in the backward; the minus from the subtraction."),
    "hprebn": Step(
        "bnmeani = 1/n*hprebn.sum(0, keepdim=True)\nbndiff = hprebn - bnmeani",
        "dhprebn = dbndiff.clone()\ndhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)",
        _d("hprebn") + r"_{ij} = " + _d("bndiff") + r"_{ij} + \frac{1}{n}\," + _d("bnmeani") + r"_j",
        "Two branches: through bndiff directly and through the mean."),
    **_linear_steps("hprebn", "embcat", "W1", "b1",
                    "The same matrix multiply backward as for h.",
                    "(30, 32) @ (32, 64) gives W1's shape (30, 64).",
                    "Summed over the batch. BatchNorm subtracts the mean right after, so b1 cannot change the loss: "
                    "~0.", r" \approx 0"),
    "emb": Step(
        "embcat = emb.view(emb.shape[0], -1)",
        "demb = dembcat.view(emb.shape)",
        _d("emb") + r"_{k,c,:} = " + _d("embcat") + r"_{k,\;10c\,:\,10c+10}",
        "A view only re-reads the same numbers in another shape: undo it."),
    "C": Step(
        "emb = C[Xb]",
        "dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n    for j in range(Xb.shape[1]):\n"
        "        ix = Xb[k,j]\n        dC[ix] += demb[k,j]",
        _d("C") + r"_{r} = \sum_{(k,c)\,:\,X_{kc} = r} " + _d("emb") + r"_{k,c}",
        "Each row of C was read once per use; its gradient adds up every use (here the loop is one index_add_)."),
}

CE_STEP = Step(
    "loss_fast = F.cross_entropy(logits, Yb)",
    "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n",
    _d("logits") + r"_{ij} = \frac{1}{n}\left(\mathrm{softmax}(" + _t("logits") + r"_i)_j - [\,j = Y_i\,]\right)",
    "Each row pulls down every wrong character by its probability and pushes up the right one by "
    "1 - p: the forces in a row sum to zero.")

BN_STEP = Step(
    "hpreact_fast = (bngain * (hprebn - hprebn.mean(0, keepdim=True))\n"
    "                / torch.sqrt(hprebn.var(0, keepdim=True, unbiased=True) + 1e-5) + bnbias)",
    "dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))",
    _d("hprebn") + r"_{ij} = \frac{\gamma_j\,\hat\sigma_j^{-1}}{n}\left(n\," + _d("hpreact") + r"_{ij} - \sum_k "
    + _d("hpreact") + r"_{kj} - \frac{n}{n-1}\," + _t("bnraw") + r"_{ij} \sum_k " + _d("hpreact") + r"_{kj}\,"
    + _t("bnraw") + r"_{kj}\right)",
    "Every example's output depends on every other's through the batch mean and variance; summed up "
    "on paper, the whole BatchNorm backward is one line (gamma = bngain, sigma^-1 = bnvar_inv).")
