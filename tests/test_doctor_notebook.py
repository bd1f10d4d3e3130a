"""
The model doctor on a learner's own notebook: lecture 6's layers typed along (this file's classes, not
core.models.layers), a loop of the learner's, watched, and lab.doctor(X, Y) after it -- with each of the
mistakes made the way a learner makes it (in the loop or in a layer), and without. Run in a real Jupyter
kernel (nbclient), the verdicts must be the ones the same code gets in this process, each mistake failing
its own check and the healthy notebook failing none.

The sixth mistake, labels that do not belong to their inputs, is not here: in a notebook it lives in the
learner's data, and a batch handed to lab.doctor is fittable whatever the loop did with it (the planted
no-overfit model in test_doctor.py carries it inside the model instead).
"""

import inspect
import json

import torch
import torch.nn.functional as F
from conftest import ROOT
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from core.watch import watch

# -----------------------------------------------------------------------------
# the learner's own code (sent to the kernel as source)

g = None  # the learner's global generator


class Linear:

    def __init__(self, fan_in, fan_out, bias=True):
        self.weight = torch.randn((fan_in, fan_out), generator=g) / fan_in**0.5
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out

    def parameters(self):
        return [self.weight] + ([] if self.bias is None else [self.bias])


class BatchNorm1d:

    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

    def __call__(self, x):
        if self.training:
            dim = 0 if x.ndim == 2 else (0, 1)
            xmean, xvar = x.mean(dim, keepdim=True), x.var(dim, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)
        self.out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


class Tanh:

    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self):
        return []


class Embedding:

    def __init__(self, num_embeddings, embedding_dim):
        self.weight = torch.randn((num_embeddings, embedding_dim), generator=g)

    def __call__(self, IX):
        self.out = self.weight[IX]
        return self.out

    def parameters(self):
        return [self.weight]


class FlattenConsecutive:

    def __init__(self, n, swap_with_view=False):
        self.n, self.swap_with_view = n, swap_with_view

    def __call__(self, x):
        B, T, C = x.shape
        if self.swap_with_view:  # the mistake: "time first" with view, then back with permute
            x = x.view(T, B, C).permute(1, 0, 2)
        x = x.reshape(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        self.out = x
        return self.out

    def parameters(self):
        return []


class Sequential:

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return self.out

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


def learner(mistake=None, steps=60):
    """Lecture 6's hierarchical net on random 'names', trained by the learner's loop with one mistake (or
    none); returns lab.doctor's verdicts on a batch."""
    global g
    g = torch.Generator().manual_seed(42)
    model = Sequential([
        Embedding(27, 10), FlattenConsecutive(2, swap_with_view=mistake == "view-permute"),
        Linear(20, 64, bias=mistake == "bias-before-bn"), BatchNorm1d(64), Tanh(),
        FlattenConsecutive(2), Linear(128, 27),
    ])
    parameters = model.parameters()
    for p in parameters:
        p.requires_grad = True
    Xtr = torch.randint(0, 27, (1000, 4), generator=g)
    Ytr = (Xtr[:, 0] * 7 + Xtr[:, 3]) % 27  # a rule the net can learn
    lab = watch(model, every=10, name=f"notebook {mistake or 'healthy'}")
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
        logits = model(Xtr[ix])
        if mistake == "softmax-loss":
            loss = F.cross_entropy(F.softmax(logits, dim=1), Ytr[ix])
        else:
            loss = F.cross_entropy(logits, Ytr[ix])
        if mistake != "no-zero-grad":
            for p in parameters:
                p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -0.1 * p.grad
        lab.step(loss)
        if i % 20 == 19:  # sample one context, as the lecture samples names
            if mistake != "eval-mode":
                for layer in model.layers:
                    layer.training = False
            with torch.no_grad():
                model(Xtr[:1])
            for layer in model.layers:
                layer.training = True
    report = lab.doctor(Xtr[:32], Ytr[:32])
    lab.close()
    return report.verdicts


MISTAKES = {None: None, "no-zero-grad": "zero-grad", "eval-mode": "train-eval-mode",
            "softmax-loss": "softmax-into-loss", "bias-before-bn": "bias-before-batchnorm",
            "view-permute": "batch-independence"}


def every_verdict():
    return {str(m): learner(m) for m in MISTAKES}


# -----------------------------------------------------------------------------


def test_a_notebook_kernel_gets_the_same_verdicts(tmp_path, monkeypatch):
    source = "\n\n".join(inspect.getsource(x) for x in (Linear, BatchNorm1d, Tanh, Embedding, FlattenConsecutive,
                                                         Sequential, learner, every_verdict))
    nb = new_notebook(cells=[
        new_code_cell(f"import sys\nsys.path.insert(0, {str(ROOT)!r})  # the checkout's root: core is importable"),
        new_code_cell("import json, warnings\nimport torch\nimport torch.nn.functional as F\n"
                      "from core.watch import watch\nwarnings.simplefilter('ignore')\ng = None\n"
                      f"MISTAKES = {MISTAKES!r}\n\n" + source),
        new_code_cell("print(json.dumps(every_verdict()))"),
    ])
    monkeypatch.setenv("ZTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    in_kernel = json.loads(text)
    with monkeypatch.context() as m:
        m.setattr("warnings.warn", lambda *a, **k: None)  # var() of one sampled example: the eval-mode mistake
        here = every_verdict()
    assert in_kernel == here
    healthy = in_kernel["None"]
    assert "fail" not in healthy.values() and healthy["zero-grad"] == healthy["train-eval-mode"] == "pass", healthy
    for mistake, check in MISTAKES.items():
        if mistake is not None:
            assert in_kernel[mistake][check] == "fail", (mistake, in_kernel[mistake])
            assert healthy[check] == "pass", check
