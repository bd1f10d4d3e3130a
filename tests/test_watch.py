"""
core.watch on the learner's own code: lecture 4's deep stack written here from scratch, as the video
writes it, and a torch.nn model with AdamW. What the runs file keeps must be what the lecture's own cells
print, and the learner's numbers must not move by one bit.
"""

import inspect
import json
import os
import subprocess
import sys
import threading
import time

import nbformat
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ROOT, wait_for
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_code_cell, new_notebook

from core.runs.db import RunDB
from core.watch import EVERY, Stopped, WatchError, watch

# -----------------------------------------------------------------------------
# lecture 4's layers, as typed along (not core.models.layers: the learner's own classes)

g = None  # the lecture's global generator, set by deep_stack()


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
        self.eps = eps
        self.momentum = momentum
        self.training = True
        self.gamma = torch.ones(dim)
        self.beta = torch.zeros(dim)
        self.running_mean = torch.zeros(dim)
        self.running_var = torch.ones(dim)

    def __call__(self, x):
        if self.training:
            xmean = x.mean(0, keepdim=True)
            xvar = x.var(0, keepdim=True)
        else:
            xmean = self.running_mean
            xvar = self.running_var
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


class NoOut:
    """A layer that forgets to keep its output."""

    def __call__(self, x):
        return torch.tanh(x)

    def parameters(self):
        return []


def names_data(words, block_size=3):
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            X.append(context)
            Y.append(stoi[ch])
            context = context[1:] + [stoi[ch]]
    return torch.tensor(X), torch.tensor(Y)


def deep_stack(n_embd=10, n_hidden=100, block_size=3, vocab_size=27):
    global g
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, n_embd), generator=g)
    layers = [Linear(n_embd * block_size, n_hidden, bias=False), BatchNorm1d(n_hidden), Tanh()]
    for _ in range(4):
        layers += [Linear(n_hidden, n_hidden, bias=False), BatchNorm1d(n_hidden), Tanh()]
    layers += [Linear(n_hidden, vocab_size, bias=False), BatchNorm1d(vocab_size)]
    with torch.no_grad():
        layers[-1].gamma *= 0.1
        for layer in layers[:-1]:
            if isinstance(layer, Linear):
                layer.weight *= 5 / 3
    parameters = [C] + [p for layer in layers for p in layer.parameters()]
    for p in parameters:
        p.requires_grad = True
    return C, layers, parameters


def train_deep(Xtr, Ytr, steps=200, lab_kw=None, every=50, data_dir=None):
    """The lecture's loop; with lab_kw, two lines of watch. Returns (losses, lecture stats per capture, lab)."""
    C, layers, parameters = deep_stack()
    lab = watch(layers, parameters=parameters, data_dir=data_dir, **lab_kw) if lab_kw is not None else None
    lossi, seen = [], {}
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
        Xb, Yb = Xtr[ix], Ytr[ix]
        emb = C[Xb]
        x = emb.view(emb.shape[0], -1)
        for layer in layers:
            x = layer(x)
        loss = F.cross_entropy(x, Yb)
        for layer in layers:
            layer.out.retain_grad()  # the lecture's own, to print gradient statistics
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = 0.1
        for p in parameters:
            p.data += -lr * p.grad
        lossi.append(loss.item())
        if i % every == 0:  # what the lecture's cells print, at the steps watch captures
            with torch.no_grad():
                seen[i] = dict(
                    acts=[(f"{j} {type(layer).__name__}", layer.out.mean().item(), layer.out.std().item(),
                           (layer.out.abs() > 0.97).float().mean().item() * 100, layer.out.grad.std().item())
                          for j, layer in enumerate(layers) if isinstance(layer, (Tanh, BatchNorm1d))],
                    grad_data=[(p.grad.std() / p.data.std()).item() for p in parameters],
                    ud=[((lr * p.grad).std() / p.data.std()).log10().item() for p in parameters])
        if lab is not None:
            lab.step(loss)
        assert type(layers[-1]).__name__ == "BatchNorm1d" and isinstance(layers[-1], BatchNorm1d)
        assert layers[-1].out is x  # .out is still the learner's own tensor
    if lab is not None:
        lab.close()
    return lossi, seen, lab


@pytest.fixture(scope="module")
def names_xy(names_words):
    return names_data(names_words[:2000])


# -----------------------------------------------------------------------------
# the lecture's deep stack


def test_watch_changes_no_number_and_stores_the_lectures_statistics(names_xy, tmp_path):
    Xtr, Ytr = names_xy
    plain, plain_seen, _ = train_deep(Xtr, Ytr)
    watched, seen, lab = train_deep(Xtr, Ytr, lab_kw=dict(every=50), data_dir=tmp_path)
    assert watched == plain  # bit for bit: same draws, same losses
    assert seen == plain_seen
    db = RunDB(path=tmp_path / "runs.sqlite")
    try:
        row = db.get_run(lab.run_id)
        assert row["state"] == "finished" and row["step"] == 200
        assert row["pid"] == os.getpid() and row["host"] and row["pid_start"]
        assert row["meta"]["source"] == "script"
        _, loss, _ = db.steps_since(lab.run_id)
        assert list(loss) == plain
        caps = db.captures_after(lab.run_id, -1)
        assert [c.step for c in caps] == [0, 50, 100, 150]
        for cap in caps:
            lecture = seen[cap.step]
            acts = cap.layer_stats()
            assert [a["layer"] for a in acts] == [name for name, *_ in lecture["acts"]]  # forward order
            for a, (name, mean, std, sat, gstd) in zip(acts, lecture["acts"]):
                assert a["mean"] == pytest.approx(mean, abs=1e-5)
                assert a["std"] == pytest.approx(std, rel=1e-4)
                assert a["grad_std"] == pytest.approx(gstd, rel=1e-4)
                if name.endswith("Tanh"):
                    assert a["saturated_pct"] == pytest.approx(sat, abs=1e-4)
            weights = cap.weight_stats()
            assert [w["name"] for w in weights][:3] == ["param0", "0 Linear.weight", "1 BatchNorm1d.gamma"]
            assert len(weights) == len(lecture["ud"])
            for w, gd, ud in zip(weights, lecture["grad_data"], lecture["ud"]):
                assert w["grad_data_ratio"] == pytest.approx(gd, rel=1e-5), w["name"]
                assert w["update_data_log10"] == pytest.approx(ud, abs=1e-4), w["name"]
    finally:
        db.close()


def test_the_learners_classes_are_put_back_on_close(tmp_path):
    own = BatchNorm1d.__dict__["__call__"]
    C, layers, parameters = deep_stack()
    lab = watch(layers, parameters=parameters, data_dir=tmp_path)
    assert BatchNorm1d.__dict__["__call__"] is not own  # the end of the forward is heard (core.watch's docstring)
    assert type(layers[-1]) is BatchNorm1d and BatchNorm1d.__call__.__name__ == "__call__"
    lab.close()
    assert BatchNorm1d.__dict__["__call__"] is own


class Sequential:
    """Lecture 6's container."""

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return self.out

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


def wavenet(Xtr, Ytr, steps=30, watched=None, data_dir=None):
    """Lecture 6's hierarchical model from core.models.layers in the lecture's Sequential, or the same layers
    as a {name: layer} dict."""
    from core.models import layers as L
    gen = torch.Generator().manual_seed(42)
    model = Sequential([
        L.Embedding(27, 10, generator=gen), L.FlattenConsecutive(2), L.Linear(20, 32, bias=False, generator=gen),
        L.BatchNorm1d(32), L.Tanh(), L.FlattenConsecutive(2), L.Linear(64, 27, generator=gen),
    ])
    parameters = model.parameters()
    for p in parameters:
        p.requires_grad = True
    target = model if watched == "sequential" else {f"{type(x).__name__.lower()}{i}": x
                                                    for i, x in enumerate(model.layers)}
    lab = watch(target, every=10, data_dir=data_dir) if watched else None
    lossi = []
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (32,), generator=gen)
        loss = F.cross_entropy(model(Xtr[ix, :4]), Ytr[ix])
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -0.1 * p.grad
        lossi.append(loss.item())
        if lab is not None:
            lab.step(loss)
    if lab is not None:
        lab.close()
    return lossi, lab


@pytest.mark.parametrize("how", ["sequential", "dict"])
def test_lecture_6_layers_in_a_sequential_or_a_dict(how, tmp_path):
    gen = torch.Generator().manual_seed(0)
    Xtr, Ytr = torch.randint(0, 27, (500, 4), generator=gen), torch.randint(0, 27, (500,), generator=gen)
    plain, _ = wavenet(Xtr, Ytr)
    watched, lab = wavenet(Xtr, Ytr, watched=how, data_dir=tmp_path)
    assert watched == plain
    db = RunDB(path=tmp_path / "runs.sqlite")
    try:
        caps = db.captures_after(lab.run_id, -1)
        assert [c.step for c in caps] == [0, 10, 20]
        acts = [a["layer"] for a in caps[-1].layer_stats()]
        assert acts == (["3 BatchNorm1d", "4 Tanh"] if how == "sequential" else ["batchnorm1d3", "tanh4"])
        assert all(a["grad_std"] > 0 for a in caps[-1].layer_stats())  # the hooks were on before the backward
        names = [w["name"] for w in caps[-1].weight_stats()]
        assert names[:2] == (["0 Embedding.weight", "2 Linear.weight"] if how == "sequential"
                             else ["embedding0.weight", "linear2.weight"])
        assert db.get_run(lab.run_id)["meta"]["vocab_size"] == 27
    finally:
        db.close()


# -----------------------------------------------------------------------------
# an nn.Module with AdamW


class MLP(nn.Module):

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(30, 64), nn.Tanh(), nn.Linear(64, 64), nn.LayerNorm(64), nn.Tanh(),
                                 nn.Linear(64, 27))

    def forward(self, x):
        return self.net(x)


def train_module(Xtr, Ytr, steps=60, watched=False, data_dir=None):
    torch.manual_seed(1337)
    model = MLP()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    C = torch.randn((27, 10))
    lab = watch(model, every=1, data_dir=data_dir) if watched else None
    lossi, seen = [], {}
    tanh = []
    model.net[1].register_forward_hook(lambda m, i, o: tanh.append(o))
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (32,))
        x = C[Xtr[ix]].view(32, -1)
        tanh.clear()
        logits = model(x)
        loss = F.cross_entropy(logits, Ytr[ix])
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lossi.append(loss.item())
        with torch.no_grad():
            seen[i] = dict(
                sat=(tanh[0].abs() > 0.97).float().mean().item() * 100,
                ud=[((p - b).std() / p.std()).log10().item() for p, b in zip(model.parameters(), before)],
                grad_data=[(p.grad.std() / p.std()).item() for p in model.parameters()])
        if lab is not None:
            lab.step(loss)
    return lossi, seen, lab, model


def test_an_nn_module_with_adamw(names_xy, tmp_path):
    Xtr, Ytr = names_xy
    plain, _, _, _ = train_module(Xtr, Ytr)
    watched, seen, lab, model = train_module(Xtr, Ytr, watched=True, data_dir=tmp_path)
    assert watched == plain
    assert lab.state == "running"
    lab.close()
    db = RunDB(path=tmp_path / "runs.sqlite")
    try:
        caps = db.captures_after(lab.run_id, -1)
        assert len(caps) == 60
        for cap in (caps[1], caps[30], caps[-1]):
            lecture = seen[cap.step]
            acts = {a["layer"]: a for a in cap.layer_stats()}
            assert list(acts) == ["net.1", "net.3", "net.4"]
            assert acts["net.1"]["saturated_pct"] == pytest.approx(lecture["sat"], abs=1e-4)
            weights = cap.weight_stats()
            assert [w["name"] for w in weights] == [n for n, _ in model.named_parameters()]
            for w, ud, gd in zip(weights, lecture["ud"], lecture["grad_data"]):
                # AdamW's real update: what changed between two step() calls, not lr * grad
                assert w["update_data_log10"] == pytest.approx(ud, abs=1e-4), w["name"]
                assert w["grad_data_ratio"] == pytest.approx(gd, rel=1e-5), w["name"]
    finally:
        db.close()


# -----------------------------------------------------------------------------
# pause, step and stop from a page (the run's command slot in the runs file)


def lecture_step(C, layers, parameters, Xtr, Ytr):
    """One step of lecture 4's loop (without its retain_grad and ud lines); returns the loss."""
    ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
    x = C[Xtr[ix]].view(32, -1)
    for layer in layers:
        x = layer(x)
    loss = F.cross_entropy(x, Ytr[ix])
    for p in parameters:
        p.grad = None
    loss.backward()
    for p in parameters:
        p.data += -0.1 * p.grad
    return loss


def train_until_stopped(lab, C, layers, parameters, Xtr, Ytr, done):
    """The learner's loop in its own thread (the page is the test's), until Stop raises Stopped: its message
    goes into done["stopped"]. Returns the started thread."""
    def loop():
        try:
            while True:
                lab.step(lecture_step(C, layers, parameters, Xtr, Ytr))
        except Stopped as e:
            done["stopped"] = str(e)

    t = threading.Thread(target=loop)
    t.start()
    return t


def test_pause_step_and_stop_through_the_runs_file(names_xy, tmp_path):
    Xtr, Ytr = names_xy
    C, layers, parameters = deep_stack()
    lab = watch(layers, parameters=parameters, data_dir=tmp_path, name="paused loop")
    done = {}
    t = train_until_stopped(lab, C, layers, parameters, Xtr, Ytr, done)
    page = RunDB(path=tmp_path / "runs.sqlite")
    try:
        assert wait_for(lambda: lab.steps > 5)
        assert page.send(lab.run_id, "pause")
        assert wait_for(lambda: page.get_run(lab.run_id)["state"] == "paused")
        held = lab.steps
        time.sleep(0.5)
        assert lab.steps == held  # the learner's loop is held
        assert page.send(lab.run_id, "step:3")
        assert wait_for(lambda: lab.steps == held + 3 and page.get_run(lab.run_id)["state"] == "paused")
        time.sleep(0.3)
        assert lab.steps == held + 3
        assert page.send(lab.run_id, "resume")
        assert wait_for(lambda: lab.steps > held + 10)
        # Stop from another process, as `python -m core runs stop` sends it
        env = dict(os.environ, ZTH_DATA_DIR=str(tmp_path))
        p = subprocess.run([sys.executable, "-m", "core", "runs", "stop", lab.run_id], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        t.join(30)
        assert not t.is_alive()
        assert "stopped from the dashboard" in done["stopped"] and "Stopped" in done["stopped"]
        row = page.get_run(lab.run_id)
        assert row["state"] == "stopped" and "stopped from the dashboard" in row["meta"]["message"]
        assert p.returncode == 0, p.stderr
        with pytest.raises(WatchError, match="closed"):
            lab.step(1.0)
    finally:
        if t.is_alive():
            page.send(lab.run_id, "stop")
            t.join(30)
        page.close()


def test_a_notebook_with_no_page_open_never_waits_for_one(tmp_path):
    C, layers, parameters = deep_stack()
    lab = watch(layers, parameters=parameters, data_dir=tmp_path, every=1)
    for _ in range(3):
        lab.step(forward(layers, torch.randn(32, 30)).square().mean())
    time.sleep(0.3)  # far longer than any page's orphan timeout in proportion: nothing stops or pauses it
    lab.step(1.0)
    assert lab.state == "running" and lab.steps == 4
    lab.close()


# -----------------------------------------------------------------------------
# bad use: one clear message each


def forward(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def test_step_before_any_forward(tmp_path):
    _, layers, parameters = deep_stack()
    lab = watch(layers, parameters=parameters, data_dir=tmp_path)
    with pytest.raises(WatchError, match="before any forward pass"):
        lab.step(3.3)
    lab.close()
    lab = watch(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), data_dir=tmp_path)
    with pytest.raises(WatchError, match="before any forward pass"):
        lab.step(3.3)
    lab.close()


@pytest.mark.parametrize("target, needle", [
    ([], "nothing to watch"),
    (nn.Identity(), "nothing to watch"),
    ([Tanh, 3], "cannot be called"),
    (42, "not a int"),
    ([torch.zeros(3, requires_grad=True)], "not their parameters"),
    ([nn.Tanh()], "torch.nn module"),
])
def test_a_target_with_nothing_to_watch(target, needle, tmp_path):
    with pytest.raises(WatchError, match=needle):
        watch(target, data_dir=tmp_path)
    assert issubclass(WatchError, ValueError)


def test_a_layer_without_out(tmp_path):
    layers = [Linear(4, 4), NoOut(), Tanh()]
    lab = watch(layers, data_dir=tmp_path)
    forward(layers, torch.randn(8, 4))
    with pytest.raises(WatchError, match=r"1 NoOut have no \.out"):
        lab.step(1.0)
    lab.close()


def test_a_closed_watcher(tmp_path):
    layers = [Linear(4, 4), Tanh()]
    lab = watch(layers, data_dir=tmp_path)
    lab.close()
    lab.close()  # twice is fine
    with pytest.raises(WatchError, match="closed.*call watch\\(\\) again"):
        lab.step(1.0)


def test_a_nan_loss_marks_the_run_diverged_and_goes_on(tmp_path):
    layers = [Linear(4, 4), Tanh()]
    for p in layers[0].parameters():
        p.requires_grad = True
    lab = watch(layers, data_dir=tmp_path, every=1)
    for i in range(5):
        out = forward(layers, torch.randn(8, 4)).sum()
        out.backward()
        lab.step(float("nan") if i == 2 else out)
    assert lab.state == "diverged" and lab.diverged_at == 2 and lab.steps == 5
    lab.close()
    db = RunDB(path=tmp_path / "runs.sqlite")
    try:
        row = db.get_run(lab.run_id)
        assert row["state"] == "diverged" and row["meta"]["diverged_at"] == 2
        assert "diverged at step 2" in row["meta"]["message"]
        assert row["step"] == 5
    finally:
        db.close()


def test_two_watch_calls_are_two_runs(tmp_path):
    a, b = [Linear(4, 4), Tanh()], [Linear(4, 4), Tanh()]
    la, lb = watch(a, data_dir=tmp_path), watch(b, data_dir=tmp_path)
    assert la.run_id != lb.run_id
    again = watch(a, data_dir=tmp_path)  # the cell ran again: a new run, the old one finished
    assert la.closed and again.run_id not in (la.run_id, lb.run_id)
    for lab in (again, lb):
        lab.close()
    db = RunDB(path=tmp_path / "runs.sqlite")
    try:
        assert {r["id"] for r in db.list_runs()} == {la.run_id, lb.run_id, again.run_id}
    finally:
        db.close()
    assert EVERY == 100 and la.every == EVERY


def test_runs_list_and_show_json(names_xy, tmp_path):
    Xtr, Ytr = names_xy
    _, seen, lab = train_deep(Xtr, Ytr, steps=101, lab_kw=dict(every=50, name="deep stack"), data_dir=tmp_path)
    env = dict(os.environ, ZTH_DATA_DIR=str(tmp_path))

    def cli(*argv):
        p = subprocess.run([sys.executable, "-m", "core", "runs", *argv], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])

    runs = cli("list", "--json")["runs"]
    assert [(r["id"], r["name"], r["source"], r["state"], r["step"]) for r in runs] == \
        [(lab.run_id, "deep stack", "script", "finished", 101)]
    assert isinstance(runs[0]["created"], float)
    shown = cli("show", lab.run_id, "--json")
    assert shown["steps"] == 101 and shown["state"] == "finished" and shown["capture_step"] == 100
    assert shown["loss"] is not None
    assert [a["layer"] for a in shown["activations"]][:3] == ["1 BatchNorm1d", "2 Tanh", "4 BatchNorm1d"]
    assert set(shown["activations"][0]) == {"layer", "kind", "mean", "std", "saturated_pct", "grad_std"}
    assert len(shown["weights"]) == 1 + 6 + 2 * 6  # every parameter, C first
    assert set(shown["weights"][0]) == {"name", "shape", "grad_data_ratio", "update_data_log10"}
    assert isinstance(shown["findings"], list)
    at50 = cli("show", lab.run_id, "--step", "60", "--json")
    assert at50["capture_step"] == 50
    tanh = [a for a in at50["activations"] if a["layer"] == "2 Tanh"][0]
    assert tanh["saturated_pct"] == pytest.approx(seen[50]["acts"][1][3], abs=1e-4)


# -----------------------------------------------------------------------------
# a real Jupyter kernel, its working directory anywhere


def execute(nb, cwd, monkeypatch, data_dir, **env):
    """Run notebook `nb` top to bottom in a fresh python3 kernel whose working directory is `cwd`; the
    executed notebook."""
    monkeypatch.setenv("ZTH_DATA_DIR", str(data_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def printed(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def learners_notebook(*last_cells):
    """Lecture 4's deep stack as a learner types it (this file's classes and loop), on random data."""
    source = "\n\n".join(inspect.getsource(f) for f in (Linear, BatchNorm1d, Tanh, deep_stack, train_deep))
    return new_notebook(cells=[
        new_code_cell(f"import sys\nsys.path.insert(0, {str(ROOT)!r})  # the checkout's root: core is importable"),
        new_code_cell("import json, os\nimport torch\nimport torch.nn.functional as F\n"
                      "from core.watch import Stopped, watch\n\n" + source),
        new_code_cell("X = torch.randint(0, 27, (2000, 3), generator=torch.Generator().manual_seed(0))\n"
                      "Y = torch.randint(0, 27, (2000,), generator=torch.Generator().manual_seed(1))"),
        *[new_code_cell(c) for c in last_cells],
    ])


def test_a_notebook_kernel_watches_the_lecture_stack(tmp_path, monkeypatch):
    nb = learners_notebook(
        "lossi, seen, lab = train_deep(X, Y, steps=45, every=20, lab_kw=dict(every=20, name='my notebook'))\n"
        "print(json.dumps(dict(run=lab.run_id, pid=os.getpid(), cwd=os.getcwd(), lossi=lossi, seen=seen)))")
    cwd = tmp_path / "anywhere"
    cwd.mkdir()
    nb = execute(nb, cwd, monkeypatch, tmp_path)
    out = json.loads(printed(nb.cells[-1]))
    assert out["cwd"] == str(cwd) and out["pid"] != os.getpid()
    db = RunDB(path=tmp_path / "runs.sqlite")
    try:
        row = db.get_run(out["run"])
        assert row["name"] == "my notebook" and row["state"] == "finished" and row["step"] == 45
        assert row["meta"]["source"] == "notebook" and row["pid"] == out["pid"]
        assert list(db.steps_since(out["run"])[1]) == out["lossi"]
        caps = db.captures_after(out["run"], -1)
        assert [c.step for c in caps] == [0, 20, 40]
        lecture = out["seen"]["40"]
        for a, (name, mean, std, sat, gstd) in zip(caps[-1].layer_stats(), lecture["acts"]):
            assert a["layer"] == name and a["std"] == pytest.approx(std, rel=1e-4)
            assert a["grad_std"] == pytest.approx(gstd, rel=1e-4)
            if name.endswith("Tanh"):
                assert a["saturated_pct"] == pytest.approx(sat, abs=1e-4)
        for w, gd, ud in zip(caps[-1].weight_stats(), lecture["grad_data"], lecture["ud"]):
            assert w["grad_data_ratio"] == pytest.approx(gd, rel=1e-5)
            assert w["update_data_log10"] == pytest.approx(ud, abs=1e-4)
    finally:
        db.close()


def test_a_killed_kernel_is_ended_by_the_next_reader(tmp_path, monkeypatch):
    nb = learners_notebook(
        "C, layers, parameters = deep_stack()\nlab = watch(layers, parameters=parameters)\nprint(lab.run_id)",
        "import signal\nos.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(DeadKernelError):
        execute(nb, tmp_path, monkeypatch, tmp_path)
    run_id = printed(nb.cells[-2]).strip()
    env = dict(os.environ, ZTH_DATA_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "core", "runs", "list", "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    (listed,) = json.loads(p.stdout)["runs"]
    assert listed["id"] == run_id and listed["source"] == "notebook" and listed["state"] == "failed"
    assert listed["message"].startswith("the worker ended unexpectedly")


def test_the_example_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    path = ROOT / "examples" / "watch_lecture4.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # kept with outputs cleared
    nb = execute(nb, path.parent, monkeypatch, tmp_path, WATCH_EXAMPLE_STEPS="30")
    db = RunDB(path=tmp_path / "runs.sqlite")
    try:
        (row,) = db.list_runs()
        assert row["name"] == "lecture 4: deep stack" and row["state"] == "finished" and row["step"] == 30
        assert row["meta"]["source"] == "notebook" and db.capture(row["id"]).step == 0
    finally:
        db.close()
    assert f"runs show {row['id']}" in printed(nb.cells[-1])


# -----------------------------------------------------------------------------
# the dashboard's Runs page (headless, AppTest): last in this file, its runs file is the module's


@pytest.mark.usefixtures("app_data_dir")
def test_the_runs_page_lists_the_loop_live_and_its_stop_ends_it(names_xy):
    from apptest import page, status
    Xtr, Ytr = names_xy
    C, layers, parameters = deep_stack()
    lab = watch(layers, parameters=parameters, name="my own loop")
    done = {}
    t = train_until_stopped(lab, C, layers, parameters, Xtr, Ytr, done)
    try:
        assert wait_for(lambda: lab.steps > 5)
        db = RunDB()
        assert wait_for(lambda: db.capture_steps(lab.run_id), 30)  # its first capture is in the runs file
        at = page("runs")
        table = at.dataframe[0].value
        assert list(table["name"]) == ["my own loop"] and list(table["state"]) == ["running"]
        assert list(table["data"]) == ["your own code"]
        view = page("runs")
        view.button(key="runs_open").click().run()   # opens on Activations & gradients, attached to the loop
        assert not view.exception, view.exception
        shown = [m.value for m in view.markdown]
        assert "my own loop" in status(view) and " of 0" not in status(view)
        from core.runs.liveness import HOST
        assert f" · your own code (script on {HOST}, pid {os.getpid()})" in status(view), status(view)
        assert any(m.startswith("**Diagnosis** at the latest capture") for m in shown), shown
        at.button(key="runs_stop").click().run()  # the page's Stop: the learner's loop raises Stopped
        t.join(30)
        assert not t.is_alive() and "stopped from the dashboard" in done["stopped"]
        assert lab.state == "stopped"
    finally:
        if t.is_alive():
            RunDB().send(lab.run_id, "stop")
            t.join(30)


# -----------------------------------------------------------------------------
# the runs file is written from the store's own thread: the loop never waits on the disk, and a write that
# fails loses nothing


def test_the_runs_file_fills_while_the_loop_does_something_else(names_xy, tmp_path):
    Xtr, Ytr = names_xy
    C, layers, parameters = deep_stack()
    lab = watch(layers, parameters=parameters, data_dir=tmp_path, every=1)
    for _ in range(30):
        lab.step(lecture_step(C, layers, parameters, Xtr, Ytr))
    page = RunDB(path=tmp_path / "runs.sqlite")
    try:
        # no step() since: the store's thread writes what the loop handed over
        assert wait_for(lambda: page.get_run(lab.run_id)["step"] == 30, timeout=5)
        assert len(page.steps_since(lab.run_id)[0]) == 30 and len(page.capture_steps(lab.run_id)) == 30
        assert page.get_run(lab.run_id)["state"] == "running"
    finally:
        lab.close()
        page.close()


def test_a_full_runs_file_is_said_once_and_loses_nothing(names_xy, tmp_path, monkeypatch):
    Xtr, Ytr = names_xy
    monkeypatch.setenv("ZTH_RUNS_MB", "1")  # the runs file's own cap: a capture every step fills it in a second
    C, layers, parameters = deep_stack()
    lab = watch(layers, parameters=parameters, data_dir=tmp_path, every=1)
    with pytest.raises(WatchError, match="disk full") as e:
        t0 = time.time()
        while time.time() - t0 < 60:
            lab.step(lecture_step(C, layers, parameters, Xtr, Ytr))
    assert "nothing recorded is lost" in str(e.value)
    lab.store.db.lift_cap()  # the learner made room
    lab.step(lecture_step(C, layers, parameters, Xtr, Ytr))  # the loop goes on where it was
    n = lab.steps
    lab.close()
    page = RunDB(path=tmp_path / "runs.sqlite")
    steps, loss, _ = page.steps_since(lab.run_id)
    assert steps.tolist() == list(range(n)) and page.get_run(lab.run_id)["state"] == "finished"
    page.close()
