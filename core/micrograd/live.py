"""
The moons MLP trained live (lecture 1, the demo notebook's loop), for a worker process and a page
that watches it. Roles as the house style asks:
- training: MoonsTrainer splits one step of the demo's loop into its two halves, backward() then
  apply(), so a page can stop between them and show `p.data -= lr * p.grad` with the numbers;
  the optimizer is micrograd's SGD or AdamW, written as torch.optim.AdamW computes it;
- capture: frame() turns the trainer's state into a few small numpy arrays (every parameter's
  data, grad, change and moments; every neuron's pre-activation, output and d score / d output
  for all 100 datapoints; the decision boundary grid), never the 66k-node graph;
- processing: neuron_values (the net in numpy, forward and backward for every datapoint),
  net_layout (where each neuron and input sits: computed once per model shape).
Drawing lives in dashboard/plot/net_svg.py.
"""

import functools
import math
from dataclasses import dataclass

import numpy as np

from core.micrograd.moons import ALPHA, decision_grid, demo_model, make_moons, moons_loss

OPTIMIZERS = ("sgd", "adamw")

# -----------------------------------------------------------------------------
# config


@dataclass
class MoonsConfig:
    optimizer: str = "sgd"     # "sgd": micrograd's demo; "adamw": torch.optim.AdamW's update on the same grads
    steps: int = 100           # the demo's loop is 100 steps; the SGD schedule decays over `steps`
    lr: float | None = None    # None: 1.0 for SGD (then 1.0 - 0.9*k/steps, the demo's); 0.03 for AdamW (100% by step 53)
    seed: int = 1337           # random.seed(1337) before MLP(2, [16, 16, 1]), as the demo does
    beta1: float = 0.9         # AdamW's defaults, as torch.optim.AdamW has them
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-4  # AdamW only: its decoupled decay stands in for the demo's 1e-4 * L2 in the loss

    @property
    def alpha(self):
        """ the L2 term inside the loss: the demo's for SGD; none for AdamW, whose weight decay does that job """
        return ALPHA if self.optimizer == "sgd" else 0.0


def moons_config(**train):
    """ a MoonsConfig from a run spec's "train" dict (keys: optimizer, steps, lr, seed); ValueError with a
    message a page can show """
    unknown = set(train) - {"optimizer", "steps", "lr", "seed"}
    if unknown:
        raise ValueError(f"unknown training setting {sorted(unknown)[0]!r} for the micrograd MLP "
                         "(it takes optimizer, steps, lr, seed)")
    if train.get("optimizer", "sgd") not in OPTIMIZERS:
        raise ValueError(f"optimizer must be sgd or adamw (got {train['optimizer']!r}).")
    return MoonsConfig(**train)

# -----------------------------------------------------------------------------
# training: the demo's loop, in two halves


class MoonsTrainer:
    """ the demo's model, data and loop. One step k is backward() (loss at the current parameters,
    zero_grad, loss.backward()) then apply() (the optimizer's update); step() does both. Between the
    two the update is pending: preview() says what apply() will write. """

    def __init__(self, cfg=None):
        self.cfg = cfg or MoonsConfig()
        self.X, self.y = make_moons()  # (100,2), (100,) in {-1, +1}
        self.model = demo_model(self.cfg.seed)
        self.params = self.model.parameters()  # 337 Values, in the order Neuron.parameters() lists them
        n = len(self.params)
        self.k = 0                     # updates applied so far
        self.pending = None            # (loss, accuracy) of step k after backward(), until apply()
        self.last = None               # (loss, accuracy, lr) of the last applied step
        self.m, self.v = np.zeros(n), np.zeros(n)  # AdamW's first and second moments (zeros for SGD)
        self.delta = np.zeros(n)       # each parameter's change in the last update
        self.lossi, self.acci = [], []  # per applied step: loss and accuracy before its update, as the demo prints

    @property
    def done(self):
        return self.k >= self.cfg.steps

    def lr_at(self, k):
        if self.cfg.optimizer == "sgd":
            lr0 = 1.0 if self.cfg.lr is None else self.cfg.lr
            return lr0 * (1.0 - 0.9 * k / self.cfg.steps)  # the demo's schedule, scaled by lr0
        return 0.03 if self.cfg.lr is None else self.cfg.lr

    def backward(self):
        """ the first half of step k: the loss at the current parameters and every p.grad """
        if self.pending is None:
            total_loss, acc = moons_loss(self.model, self.X, self.y, alpha=self.cfg.alpha)
            self.model.zero_grad()
            total_loss.backward()
            self.pending = (total_loss.data, acc)
        return self.pending

    def preview(self):
        """ what apply() will write, per parameter: (data, m, v) arrays, computed as apply() computes them """
        data = [p.data for p in self.params]
        grad = [p.grad for p in self.params]
        lr = self.lr_at(self.k)
        if self.cfg.optimizer == "sgd":
            return np.array([d - lr * g for d, g in zip(data, grad)]), self.m.copy(), self.v.copy()
        return adamw_update(np.array(data, dtype=np.float64), np.array(grad, dtype=np.float64), self.m, self.v,
                            self.k + 1, lr, self.cfg)

    def apply(self):
        """ the second half of step k: the update, then k += 1 """
        loss, acc = self.backward()  # a no-op when backward() ran already
        lr = self.lr_at(self.k)
        before = np.array([p.data for p in self.params])
        if self.cfg.optimizer == "sgd":
            for p in self.params:
                p.data -= lr * p.grad  # the demo's line
        else:
            new, self.m, self.v = self.preview()
            for p, d in zip(self.params, new.tolist()):
                p.data = d
        self.delta = np.array([p.data for p in self.params]) - before
        self.last = (loss, acc, lr)
        self.lossi.append(loss)
        self.acci.append(acc)
        self.pending = None
        self.k += 1
        return loss, acc, lr

    def step(self):
        self.backward()
        return self.apply()


def adamw_update(data, grad, m, v, t, lr, cfg):
    """ one AdamW step on arrays, in the order torch.optim.AdamW (single-tensor, double) computes it, so the
    moments agree with torch's to the last bits or so: (new data, new m, new v). t counts from 1. """
    data = data * (1 - lr * cfg.weight_decay)            # decoupled weight decay, before the moments
    m = m + (1 - cfg.beta1) * (grad - m)                 # exp_avg.lerp_(grad, 1 - beta1)
    v = v * cfg.beta2 + (1 - cfg.beta2) * grad * grad    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
    step_size = lr / (1 - cfg.beta1 ** t)
    denom = np.sqrt(v) / math.sqrt(1 - cfg.beta2 ** t) + cfg.eps
    return data - step_size * m / denom, m, v

# -----------------------------------------------------------------------------
# processing: the net in numpy, and where its parts sit in a picture


def weights(model):
    """ [(W (nout,nin), b (nout,), nonlin)] per layer, copied out of the Values """
    return [(np.array([[w.data for w in n.w] for n in layer.neurons]), np.array([n.b.data for n in layer.neurons]),
             layer.neurons[0].nonlin) for layer in model.layers]


def neuron_values(layers, X):
    """ every neuron for every row of X (n,2), as datapoint_score's graph holds them: the pre-activation
    act = w·x + b, the output (ReLU of act, or act for the last, linear neuron) and d score / d output,
    each (n, neurons) with the neurons in layer order. The backward pass is the engine's rules in matrix
    form: relu passes grad where its output is > 0, a sum hands it to each w*x, w*x hands w*grad to x. """
    h, acts, outs = np.asarray(X, dtype=np.float64), [], []
    for W, b, nonlin in layers:
        act = h @ W.T + b  # (n,nout)
        h = np.maximum(act, 0) if nonlin else act
        acts.append(act)
        outs.append(h)
    grads = [None] * len(layers)
    g = np.ones_like(outs[-1])  # d score / d score
    for i in range(len(layers) - 1, -1, -1):
        grads[i] = g
        W, _, nonlin = layers[i]
        g_act = g * (outs[i] > 0) if nonlin else g
        g = g_act @ W  # (n,nin): d score / d the layer's inputs
    return np.hstack(acts), np.hstack(outs), np.hstack(grads)


def neuron_names(sizes):
    """ L1.N1 ... L1.N16, L2.N1 ..., L3.N1 for sizes (2, 16, 16, 1), as graph.mlp_names names them """
    return [f"L{i}.N{j}" for i, n in enumerate(sizes[1:], 1) for j in range(1, n + 1)]


def param_names(sizes):
    """ the name of each of model.parameters(), in its order: L1.N3.w1, L1.N3.w2, L1.N3.b, ... """
    return [f"L{i}.N{j}.{p}" for i, (nin, nout) in enumerate(zip(sizes, sizes[1:]), 1) for j in range(1, nout + 1)
            for p in [f"w{k}" for k in range(1, nin + 1)] + ["b"]]


@functools.cache
def net_layout(sizes, col_x, height):
    """ where each part of an MLP of `sizes` (e.g. (2, 16, 16, 1)) sits in a picture `height` high: layers as
    columns centred at col_x (the inputs first), each column's nodes spread evenly and centred. Computed
    once per shape and picture (cached), so a picture redrawn every frame never moves.
    Returns {"x1": (x, y), ..., "L1.N1": (x, y), ...}, in the natural order x1, x2, L1.N1 ... L1.N16, ... """
    pos = {}
    gap = height / max(sizes)
    for c, (n, x) in enumerate(zip(sizes, col_x)):
        top = (height - gap * n) / 2 + gap / 2
        names = [f"x{j}" for j in range(1, n + 1)] if c == 0 else [f"L{c}.N{j}" for j in range(1, n + 1)]
        for j, name in enumerate(names):
            pos[name] = (float(x), round(top + j * gap, 1))
    return pos


def sizes_of(model):
    return (len(model.layers[0].neurons[0].w),) + tuple(len(layer.neurons) for layer in model.layers)

# -----------------------------------------------------------------------------
# capture: one frame for the page


def frame(trainer, grid_h=0.05):
    """ what the page draws, as numpy arrays (np.savez-able; strings as 0-d str arrays): the step, phase
    ("applied" after an update, "backward" when an update is pending), loss/accuracy/lr, every
    parameter's data, grad, change, AdamW moments, the pending update's new values, every neuron's values
    for every datapoint, the boundary grid and the curves so far. """
    t = trainer
    sizes = sizes_of(t.model)
    act, out, dout = neuron_values(weights(t.model), t.X)
    xs, ys, Z = decision_grid(t.model, t.X, h=grid_h)
    pending = t.pending is not None
    loss, acc, lr = (*t.pending, t.lr_at(t.k)) if pending else (t.last or (math.nan, math.nan, t.lr_at(t.k)))
    nan = np.full(len(t.params), np.nan)
    new, new_m, new_v = t.preview() if pending else (nan, nan, nan)
    return dict(
        k=np.array(t.k), phase=np.array("backward" if pending else "applied"), optimizer=np.array(t.cfg.optimizer),
        steps=np.array(t.cfg.steps), loss=np.array(loss), acc=np.array(acc), lr=np.array(lr),
        sizes=np.array(sizes),
        data=np.array([p.data for p in t.params], dtype=np.float64),
        grad=np.array([p.grad for p in t.params], dtype=np.float64),
        delta=t.delta, m=t.m, v=t.v, weight_decay=np.array(t.cfg.weight_decay),
        new=new, new_m=new_m, new_v=new_v,  # what apply() will write, while an update is pending
        act=act, out=out, dout=dout,  # (100, 33) each
        xs=xs, ys=ys, Z=Z.astype(np.float32),  # the boundary needs only the sign and a contour
        lossi=np.array(t.lossi), acci=np.array(t.acci),
        X=t.X, y=t.y,
    )
