"""Experiments on the local pool: a bad spec's one line, a real Optuna search whose trials are real worker
runs, pruning, the test split looked at once, a coordinator killed and resumed, the CLI's JSON."""

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import tomllib
import torch
import torch.nn.functional as F
from conftest import ROOT, data_dir_env, wait_for

from core.experiments import spec as specs
from core.experiments import study as studies
from core.experiments.coordinator import Coordinator, LocalPool
from core.experiments.presets import SCENARIOS
from core.runs import liveness
from core.runs.db import LIVE_STATES, RunDB
from data import WordsDataset, load_words

STEPS = 300  # a few hundred steps of the kaiming MLP: dev loss falls from 3.3 to ~2.6, plenty to rank lrs by


def cli(*argv, env=None, timeout=240):
    p = subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})})
    return p


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path



# --- a bad spec: one message naming the line --------------------------------------------------------

GOOD = """name = "ok"
model = "mlp"
preset = "kaiming"
trials = 4
[fixed]
steps = 300
[space]
lr = {log = [1e-2, 1.0]}
n_hidden = [50, 100]
"""


def test_a_good_spec_reads_into_an_experiment(tmp_path):
    exp = specs.load(write(tmp_path, GOOD))
    assert (exp.name, exp.model, exp.preset, exp.trials, exp.sampler, exp.prune) == ("ok", "mlp", "kaiming", 4, "tpe", True)
    assert exp.space["lr"].log and exp.space["n_hidden"].values == [50, 100]
    run = exp.run_spec({"lr": 0.1, "n_hidden": 50}, trial=3)
    assert run["train"] == {"steps": 300, "lr": 0.1, "eval_every": 30} and run["model_kw"] == {"n_hidden": 50}
    assert run["hold_test"] is True and run["experiment"] == {"name": "ok", "trial": 3}
    assert specs.from_dict(exp.to_dict()) == exp  # what the study stores reads back the same


@pytest.mark.parametrize("change, line, needle", [
    (("model = \"mlp\"", "model = \"transformer\""), 2, "unknown model 'transformer'"),
    (("n_hidden = [50, 100]", "n_hiden = [50, 100]"), 9, "unknown hyperparameter 'n_hiden' for mlp"),
    (("n_hidden = [50, 100]", "n_hidden = []"), 9, "empty list"),
    (("lr = {log = [1e-2, 1.0]}", "lr = {log = [1.0, 1e-2]}"), 8, "is empty"),
    (("lr = {log = [1e-2, 1.0]}", "lr = {log = [1e-2, 1e9]}"), 8, "lr must be between 1e-08 and 1e+06"),
    (("n_hidden = [50, 100]", "n_hidden = [50, 100000]"), 9, "n_hidden must be between 1 and 4096"),
    (("n_hidden = [50, 100]", "n_hidden = {float = [50, 100]}"), 9, "takes whole numbers"),
    (("n_hidden = [50, 100]", "gain = [1.0, 2.0]"), 9, "unknown hyperparameter 'gain' for mlp"),
    (("steps = 300", "steps = 300\nlr = 0.1"), 9, "in both [fixed] and [space]"),
    (("trials = 4", "trials = 0"), 4, "trials must be a whole number from 1"),
    (("lr = {log = [1e-2, 1.0]}", "lr = {log = [0, 1.0]}"), 8, "must start above 0"),
    (("steps = 300", "steps = 300\nwidth = 3"), 7, "unknown setting 'width'"),
])
def test_a_bad_spec_names_its_line(tmp_path, change, line, needle):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(specs.ExperimentError) as e:
        specs.load(path)
    msg = str(e.value)
    assert f"{path} line {line}:" in msg and needle in msg and "\n" not in msg


def test_grid_needs_lists_and_a_toml_error_says_its_line(tmp_path):
    with pytest.raises(specs.ExperimentError, match=r"line 9: lr: the grid sampler needs a list"):
        specs.load(write(tmp_path, GOOD.replace("trials = 4", "trials = 4\nsampler = \"grid\"")))
    with pytest.raises(specs.ExperimentError, match=r"not valid TOML.*line 8"):
        specs.load(write(tmp_path, GOOD.replace("lr = {log = [1e-2, 1.0]}", "lr = {log = [1e-2, 1.0]")))


def test_a_missing_data_file_and_a_bad_cli_argument_are_one_line(tmp_path):
    p = cli("experiment", "run", str(write(tmp_path, GOOD)), "--data", str(tmp_path / "nope.txt"))
    assert p.returncode == 2 and p.stderr.strip() == f"error: --data {tmp_path / 'nope.txt'}: no such file"
    p = cli("experiment", "run", str(write(tmp_path, GOOD.replace("model = \"mlp\"", "model = \"rnn\""))))
    assert p.returncode == 2 and "line 2: unknown model 'rnn'" in p.stderr and len(p.stderr.splitlines()) == 1
    p = cli("experiment", "show", "nothing-here", env={"ZTH_DATA_DIR": str(tmp_path)})
    assert p.returncode == 2 and "no experiment 'nothing-here'" in p.stderr


def test_block_size_is_a_hyperparameter_of_the_mlp(tmp_path, names_path):
    """Lecture 3's context length: a trial with block_size 5 trains an MLP whose W1 takes 5 * n_embd inputs."""
    from core.runs.spec import build_job
    exp = specs.load(write(tmp_path, GOOD.replace("n_hidden = [50, 100]", "block_size = [3, 5]")), data=str(names_path))
    model, batches, *_ = build_job(exp.run_spec({"lr": 0.1, "block_size": 5}))
    assert model.W1.shape == (5 * 10, 200) and batches.get_batch("train")[0].shape == (32, 5)
    assert "test" not in batches.splits  # a trial never has the test split to look at


# --- a search on the local pool ------------------------------------------------------------------

# four learning rates near the lecture's 0.1, then one far too small: the pruner's case
GOOD_LRS = [0.1, 0.2, 0.3, 0.05]
BAD_LR = 1e-4


@pytest.fixture(scope="module")
def searched(tmp_path_factory, names_path):
    """One real experiment, trials one at a time (workers=1) so the bad one comes after four finished. Run once
    per test session: under pytest -n 2 the two workers share it (a lock and a folder named by the session's
    xdist run id), instead of each training its own five trials."""
    session = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"{os.getpid()}-{time.time_ns()}"
    root = tmp_path_factory.getbasetemp().parent  # the same folder for both xdist workers of a session
    d = root / f"exp-search-{session}"
    d.mkdir(exist_ok=True)
    path = d / "search.toml"
    with open(root / f"exp-search-{session}.lock", "w") as lock, data_dir_env(d):
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = d / "summary.json"
        if not done.exists():
            path.write_text(f'name = "search"\nmodel = "mlp"\npreset = "kaiming"\ntrials = 5\n'
                            f'[fixed]\nsteps = {STEPS}\n[space]\nlr = {{log = [1e-5, 1.0]}}\n')
            exp = specs.load(path, data=str(names_path))
            lines = []
            c = Coordinator(exp, LocalPool(workers=1), out=lines.append)
            for lr in GOOD_LRS + [BAD_LR]:
                c.study.enqueue_trial({"lr": lr})
            try:
                s = c.run()
            finally:
                c.backend.close()
            done.write_text(json.dumps(dict(summary=s, lines=lines)))
        res = json.loads(done.read_text())
    yield dict(dir=d, summary=res["summary"], lines=res["lines"], spec_path=path)


def test_every_trial_is_an_ordinary_run_with_dev_loss_at_checkpoints(searched):
    s = searched["summary"]
    assert s["status"] == "finished" and [t["number"] for t in s["trials"]] == [0, 1, 2, 3, 4]
    with data_dir_env(searched["dir"]):
        db = RunDB()
        for t in s["trials"][:4]:
            assert t["state"] == "finished" and t["backend"] == "local" and t["node"] == liveness.HOST
            r = db.get_run(t["run"])
            assert r["name"] == f"search#{t['number']}" and r["state"] == "finished" and r["step"] == STEPS
            assert r["spec"]["experiment"] == {"name": "search", "trial": t["number"]}
            assert r["spec"]["train"]["lr"] == t["params"]["lr"]
            evals = db.evals(t["run"])
            assert [e[0] for e in evals] == list(range(30, STEPS + 1, 30))  # ten checkpoints, the last at the end
            assert t["dev_loss"] == r["meta"]["final"]["val"] == evals[-1][2]
            assert "test" not in r["meta"]["final"]  # the trial never computed a test loss
            assert db.capture_steps(t["run"])  # the recorder ran: the run opens with every panel
        db.close()


def test_the_best_trial_is_the_lowest_dev_loss_and_near_the_lectures_lr(searched):
    s = searched["summary"]
    finished = [t for t in s["trials"] if t["state"] == "finished"]
    assert s["best"]["dev_loss"] == min(t["dev_loss"] for t in finished)
    # 300 steps from the kaiming init: every good rate ends well below ln(27) = 3.30, the best near 2.5-2.7
    assert all(t["dev_loss"] < 2.9 for t in finished) and s["best"]["dev_loss"] < 2.75
    assert s["best"]["params"]["lr"] in GOOD_LRS


def test_a_trial_far_behind_is_pruned_keeping_its_last_dev_loss_and_saying_why(searched):
    s = searched["summary"]
    bad = s["trials"][4]
    assert bad["params"] == {"lr": BAD_LR} and bad["state"] == "pruned"
    assert bad["why"].startswith(f"pruned at step {bad['step']}:") and "worst quarter of the 4 finished" in bad["why"]
    with data_dir_env(searched["dir"]):
        db = RunDB()
        r = db.get_run(bad["run"])
        evals = {e[0]: e[2] for e in db.evals(bad["run"])}
        db.close()
    # stopped at the checkpoint where it fell behind: long before its last step, its dev loss the one it had there
    assert r["state"] == "stopped" and r["step"] < STEPS and r["meta"]["message"] == bad["why"]
    assert bad["dev_loss"] == evals[bad["step"]] and bad["dev_loss"] > 3.0
    assert any("pruned" in line for line in searched["lines"])


def test_the_test_split_is_computed_once_and_recorded(searched, names_path):
    env = {"ZTH_DATA_DIR": str(searched["dir"])}
    first = cli("experiment", "test", "search", "--json", env=env)
    assert first.returncode == 0, first.stderr
    a = json.loads(first.stdout.splitlines()[-1])
    best = searched["summary"]["best"]
    assert a["trial"] == best["number"] and a["recorded"] is False
    # the oracle: the best run's saved model on the lecture's Xte (random.seed(42) shuffle, 80/10/10), by hand
    with data_dir_env(searched["dir"]):
        db = RunDB()
        model, step = db.load_checkpoint(best["run"])
        db.close()
    assert step == STEPS
    ds = WordsDataset(load_words(names_path), 3)
    with torch.no_grad():
        logits, _ = model(ds.Xte)
        want = F.cross_entropy(logits, ds.Yte).item()
    assert a["test_loss"] == pytest.approx(want, abs=1e-6) and abs(a["test_loss"] - best["dev_loss"]) < 0.1
    time.sleep(1.1)
    second = cli("experiment", "test", "search", "--json", env=env)
    b = json.loads(second.stdout.splitlines()[-1])
    assert b == {**a, "recorded": True}  # the same number and time: not computed again
    plain = cli("experiment", "test", "search", env=env).stdout
    assert "not computed again" in plain and a["computed_at"] in plain


def test_show_json_names_every_trial_with_its_state_backend_and_run(searched):
    p = cli("experiment", "show", "search", "--json", env={"ZTH_DATA_DIR": str(searched["dir"])})
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert set(s) >= {"name", "trials", "best"} and s["name"] == "search"
    for t in s["trials"]:
        assert set(t) >= {"number", "params", "state", "dev_loss", "run", "backend", "node"}
        assert t["state"] in ("running", "finished", "pruned", "failed") and t["backend"] == "local"
    assert [t["state"] for t in s["trials"]] == ["finished"] * 4 + ["pruned"]
    assert s["best"] == searched["summary"]["best"]


def test_the_same_name_with_another_spec_is_refused(searched, tmp_path):
    with data_dir_env(searched["dir"]):
        exp = specs.load(searched["spec_path"])
        exp.space["lr"].hi = 0.5
        with pytest.raises(specs.ExperimentError, match="exists with a different spec"):
            studies.create(exp, 30)


def test_no_prune_switches_the_pruner_off(tmp_path):
    exp = specs.load(write(tmp_path, GOOD))
    assert type(studies.pruner(exp, 30)).__name__ == "PercentilePruner"
    exp.prune = False
    assert type(studies.pruner(exp, 30)).__name__ == "NopPruner"


OPEN_AT = """
import sys, time
from pathlib import Path
from core.experiments import study
study.folder(sys.argv[1]).mkdir(parents=True)
study.storage(sys.argv[1])  # a study of its own first: sqlalchemy and alembic load now, not below
ready = study.root() / "ready"
(ready / sys.argv[1]).touch()
while len(list(ready.iterdir())) < 6:  # every process opens at the same moment
    time.sleep(0.001)
study.storage("together")
"""


def test_processes_opening_a_new_study_at_once_all_open_it(tmp_path):
    """A page (or `experiment show`) reading while the coordinator makes the study: without one opener at a
    time, their table-making collides (UNIQUE constraint failed: alembic_version) and one of them raises."""
    (tmp_path / "experiments" / "together").mkdir(parents=True)
    (tmp_path / "experiments" / "ready").mkdir()
    ps = [subprocess.Popen([sys.executable, "-c", OPEN_AT, f"own{i}"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "ZTH_DATA_DIR": str(tmp_path)}) for i in range(6)]
    errs = [p.communicate(timeout=120)[1] for p in ps]
    assert [p.returncode for p in ps] == [0] * 6, [e[-500:] for e in errs if e]


# --- a restart: the coordinator killed, its worker killed, the experiment resumed --------------------


@pytest.mark.long  # several CLI processes and workers, each loading torch
def test_a_killed_worker_fails_its_trial_and_a_killed_coordinator_resumes(tmp_path, names_path):
    env = {"ZTH_DATA_DIR": str(tmp_path)}
    path = write(tmp_path, 'name = "restart"\nmodel = "mlp"\npreset = "kaiming"\ntrials = 3\nprune = false\n'
                           '[fixed]\nsteps = 3000\n[space]\nlr = [0.1, 0.2, 0.05]\n')
    p = cli("experiment", "run", str(path), "--data", str(names_path), "--workers", "1", "--detach", "--json", env=env)
    assert p.returncode == 0, p.stderr
    coordinator = json.loads(p.stdout)["pid"]
    with data_dir_env(tmp_path):
        db = RunDB()

        def trial_run(n):
            rows = studies.summary("restart")["trials"]
            return rows[n]["run"] if len(rows) > n and rows[n]["run"] else None

        try:
            # trial 0: its worker is SIGKILLed mid-trial (the OOM killer): only that trial fails
            run0 = wait_for(lambda: trial_run(0), 60)
            wait_for(lambda: db.get_run(run0)["step"] > 100, 60)
            os.kill(db.get_run(run0)["pid"], signal.SIGKILL)
            # trial 1 starts; the coordinator is killed mid-trial (a server restart) while its worker trains on
            run1 = wait_for(lambda: trial_run(1), 60)
            wait_for(lambda: db.get_run(run1)["step"] > 100, 60)
            os.kill(coordinator, signal.SIGKILL)
            wait_for(lambda: not studies.running("restart"), 10)
            s = studies.summary("restart")
            assert s["status"] == "interrupted" and s["trials"][0]["state"] == "failed"
            assert "SIGKILL" in s["trials"][0]["why"] and s["trials"][1]["state"] == "running"
            assert db.get_run(run1)["state"] in LIVE_STATES  # the worker outlived its coordinator
            # the same command again resumes: trial 1 is followed to its end, trial 2 runs, the budget is met
            p = cli("experiment", "run", str(path), "--data", str(names_path), "--workers", "1", "--json", env=env)
            assert p.returncode == 0, p.stderr
            s = json.loads(p.stdout.splitlines()[-1])
            assert "trial   1 resumed" in p.stderr
            assert [t["state"] for t in s["trials"]] == ["failed", "finished", "finished"] and s["status"] == "finished"
            assert s["trials"][1]["run"] == run1 and db.get_run(run1)["state"] == "finished"
            assert s["best"]["number"] in (1, 2) and math.isfinite(s["best"]["dev_loss"])
        finally:
            for r in db.live_runs():
                if r["pid"]:
                    try:
                        os.kill(r["pid"], signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            db.close()


@pytest.mark.long  # several CLI processes and workers, each loading torch
def test_a_running_experiment_is_refused_a_second_coordinator_and_stops_on_request(tmp_path, names_path):
    env = {"ZTH_DATA_DIR": str(tmp_path)}
    path = write(tmp_path, 'name = "busy"\nmodel = "mlp"\ntrials = 2\n[fixed]\nsteps = 1000000\n'
                           '[space]\nlr = [0.1, 0.2]\n')
    p = cli("experiment", "run", str(path), "--data", str(names_path), "--workers", "1", "--detach", env=env)
    assert p.returncode == 0, p.stderr
    with data_dir_env(tmp_path):
        wait_for(lambda: studies.running("busy") and studies.summary("busy")["trials"], 60)
        again = cli("experiment", "run", str(path), "--data", str(names_path), env=env)
        assert again.returncode == 2 and "is running already" in again.stderr
        assert "is running already" in cli("experiment", "test", "busy", env=env).stderr
        stopped = cli("experiment", "stop", "busy", env=env)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        s = studies.summary("busy")
        assert s["status"] == "stopped" and s["trials"][0]["state"] == "failed"
        assert "asked to end (SIGTERM)" in s["trials"][0]["why"]
        db = RunDB()
        assert db.get_run(s["trials"][0]["run"])["state"] == "stopped"
        db.close()


@pytest.mark.long  # one 30,000-step trial: about 30 s on a free core
def test_the_lecture3_preset_beats_the_lectures_val_217_in_a_seventh_of_the_steps(tmp_path, names_path):
    """The page's lecture-3 preset, its first trial put at the lecture's own sizes (n_embd 10, n_hidden 200,
    block_size 3): 30,000 steps of the kaiming MLP reach a dev loss below the lecture's 2.17 (200,000 steps)."""
    text = SCENARIOS["lecture3-size"].toml.replace("trials = 20", "trials = 1")
    with data_dir_env(tmp_path):
        exp = specs.parse(tomllib.loads(text), text, data=str(names_path))
        c = Coordinator(exp, LocalPool(workers=1), out=lambda line: None)
        c.study.enqueue_trial({"n_embd": 10, "n_hidden": 200, "block_size": 3})
        try:
            s = c.run()
        finally:
            c.backend.close()
    t = s["trials"][0]
    assert t["state"] == "finished" and t["step"] == 30_000
    assert t["dev_loss"] < exp.goal == 2.17 and t["dev_loss"] == pytest.approx(2.1457, abs=0.002)
