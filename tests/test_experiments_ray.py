"""
Experiments on a real Ray cluster: one local head for the test session, on loopback with two CPUs. Trials run
as Ray actors, their records relayed into this machine's runs file; a worker SIGKILLed mid-trial fails only its
trial; Pause reaches a remote trial through the runs file; a lost cluster fails the trials still training and
keeps the finished ones; an address nobody answers is refused, never run on the local pool instead.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
from apptest import page
from browser import free_port
from conftest import ROOT, data_dir_env
from conftest import wait_for as wait_every
from rayhead import kill_head, local_head

from core.experiments import spec as specs
from core.experiments import study as studies
from core.experiments.spec import ExperimentError
from core.runs.db import RunDB

pytestmark = pytest.mark.long


def wait_for(pred, timeout):
    return wait_every(pred, timeout, every=0.2)  # the predicates read the study: poll less often


def cli(*argv, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})



def trials(name):
    """The experiment's trial rows, [] while its coordinator is still making the study."""
    try:
        return studies.summary(name)["trials"]
    except ExperimentError:
        return []


def test_an_unreachable_address_is_refused_and_nothing_runs_locally(tmp_path, names_path):
    spec = tmp_path / "x.toml"
    spec.write_text('name = "nowhere"\nmodel = "mlp"\ntrials = 2\n[fixed]\nsteps = 100\n[space]\nlr = [0.1, 0.2]\n')
    port = free_port()  # nothing listens there
    p = cli("experiment", "run", str(spec), "--data", str(names_path),
            env={"ZTH_DATA_DIR": str(tmp_path), "ZTH_RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert p.returncode == 2 and f"no Ray cluster answers at 127.0.0.1:{port}" in p.stderr
    assert "never fall back to this machine" in p.stderr
    with data_dir_env(tmp_path):
        db = RunDB()
        assert db.list_runs() == []  # not one trial trained here instead
        db.close()
    p = cli("experiment", "run", str(spec), "--data", str(names_path), "--detach",
            env={"ZTH_DATA_DIR": str(tmp_path), "ZTH_RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert p.returncode == 2 and f"no Ray cluster answers at 127.0.0.1:{port}" in p.stderr  # now, not in the background
    with data_dir_env(tmp_path):
        assert not studies.exists("nowhere")
    p = cli("experiment", "run", str(spec), "--ray", "localhost", env={"ZTH_DATA_DIR": str(tmp_path)})
    assert p.returncode == 2 and "a Ray address is HOST:PORT" in p.stderr


@pytest.mark.usefixtures("app_data_dir")
def test_the_page_refuses_to_start_an_experiment_on_a_cluster_that_is_not_there(monkeypatch):
    port = free_port()
    monkeypatch.setenv("ZTH_RAY_ADDRESS", f"127.0.0.1:{port}")
    at = page("experiments")
    at.button(key="exp_start").click().run()
    assert any(f"no Ray cluster answers at 127.0.0.1:{port}" in e.value for e in at.error), [e.value for e in at.error]
    assert studies.names() == []  # nothing started, on the cluster or here


@pytest.mark.usefixtures("app_data_dir")
def test_an_experiment_started_on_the_page_runs_on_the_servers_cluster(ray_head, monkeypatch):
    """A teacher's server with ZTH_RAY_ADDRESS: the page's Start sends the trials to the cluster."""
    monkeypatch.setenv("ZTH_RAY_ADDRESS", ray_head["address"])
    at = page("experiments")
    at.text_area(key="exp_toml_lecture3-lr").set_value(
        'name = "page-on-ray"\nmodel = "mlp"\ntrials = 2\nsampler = "grid"\n[fixed]\nsteps = 200\n'
        '[space]\nlr = [0.1, 0.2]\n').run()
    at.button(key="exp_start").click().run()
    assert not at.error, [e.value for e in at.error]
    wait_for(lambda: [t["state"] for t in trials("page-on-ray")] == ["finished", "finished"], 300)
    assert {t["backend"] for t in trials("page-on-ray")} == {"ray"}


def test_a_coordinator_that_finds_no_cluster_says_why_in_the_study(tmp_path):
    """The cluster gone between the check and the coordinator's start: `experiment show` and the page read
    "failed" and why, not a coordinator that never came ("interrupted")."""
    spec = tmp_path / "x.toml"
    spec.write_text('name = "gone"\nmodel = "mlp"\ntrials = 2\n[fixed]\nsteps = 100\n[space]\nlr = [0.1, 0.2]\n')
    port = free_port()
    with data_dir_env(tmp_path):
        exp = specs.load(spec)
        studies.create(exp, exp.run_spec({})["train"]["eval_every"])
        p = subprocess.run([sys.executable, "-m", "core.experiments.coordinator", "gone", "--ray", f"127.0.0.1:{port}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert p.returncode == 2
        s = studies.summary("gone")
        assert s["status"] == "failed" and f"no Ray cluster answers at 127.0.0.1:{port}" in s["ended"]["why"]


def test_trials_on_a_real_ray_head_a_killed_worker_fails_only_its_trial(ray_head, tmp_path, names_path):
    env = {"ZTH_DATA_DIR": str(tmp_path)}
    spec = tmp_path / "ray.toml"
    # trial 0 trains long enough to be paused, resumed and killed; the others are short
    spec.write_text('name = "on-ray"\nmodel = "mlp"\npreset = "kaiming"\ntrials = 4\nsampler = "grid"\nprune = false\n'
                    '[fixed]\nlr = 0.1\n[space]\nsteps = [400, 500, 600, 2000000]\n')
    p = cli("experiment", "run", str(spec), "--data", str(names_path), "--ray", ray_head["address"], "--detach",
            "--json", env=env)
    assert p.returncode == 0, p.stderr
    with data_dir_env(tmp_path):
        db = RunDB()
        try:
            long = wait_for(lambda: next((t for t in trials("on-ray") if t["params"].get("steps") == 2000000 and t["run"]),
                                         None), 180)
            run = long["run"]
            wait_for(lambda: db.get_run(run)["step"] > 200, 120)
            # Pause from the runs file (as a page's button writes it) reaches the remote trial, and Resume
            assert db.send(run, "pause")
            wait_for(lambda: db.get_run(run)["state"] == "paused", 30)
            assert db.send(run, "resume")
            wait_for(lambda: db.get_run(run)["state"] == "running", 30)
            row = db.get_run(run)
            assert row["meta"]["backend"] == "ray" and row["meta"]["node_pid"] != row["pid"]
            os.kill(row["meta"]["node_pid"], signal.SIGKILL)  # the Ray worker process, mid-trial
            wait_for(lambda: not studies.running("on-ray"), 240)
            s = studies.summary("on-ray")
            by_steps = {t["params"]["steps"]: t for t in s["trials"]}
            killed = by_steps[2000000]
            assert killed["state"] == "failed" and "died mid-trial" in killed["why"] and killed["backend"] == "ray"
            assert db.get_run(run)["state"] == "failed" and "died mid-trial" in db.get_run(run)["meta"]["message"]
            assert s["status"] == "finished"  # the experiment went on
            for steps in (400, 500, 600):
                t = by_steps[steps]
                assert t["state"] == "finished" and t["backend"] == "ray" and t["node"], t
                r = db.get_run(t["run"])
                # the remote run's records are in this machine's runs file: steps, dev losses, captures, the model
                assert r["step"] == steps and t["dev_loss"] == r["meta"]["final"]["val"] < 3.0
                assert len(db.evals(t["run"])) == 10 and db.capture_steps(t["run"])
                assert db.checkpoint_path(t["run"]).exists() and "test" not in r["meta"]["final"]
        finally:
            db.close()


def test_a_lost_cluster_fails_the_trials_still_training_and_keeps_the_finished(tmp_path, names_path):
    with local_head() as head:  # a head of its own: this test kills it (the session's serves the other tests)
        _lose_the_cluster(head, tmp_path, names_path)


def _lose_the_cluster(ray_head, tmp_path, names_path):
    env = {"ZTH_DATA_DIR": str(tmp_path)}
    spec = tmp_path / "lost.toml"
    spec.write_text('name = "lost"\nmodel = "mlp"\ntrials = 3\nsampler = "grid"\nprune = false\n'
                    '[fixed]\nlr = 0.1\n[space]\nsteps = [200, 300, 3000000]\n')
    p = subprocess.Popen([sys.executable, "-m", "core", "experiment", "run", str(spec), "--data", str(names_path),
                          "--ray", ray_head["address"], "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        with data_dir_env(tmp_path):
            wait_for(lambda: any(t["state"] == "finished" for t in trials("lost")), 420)  # a loaded 2-core CI machine: 180 s was once too few
            wait_for(lambda: sum(t["state"] == "running" for t in trials("lost")) >= 1, 60)
        kill_head(ray_head["temp"])  # the head machine is gone
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1 and out.strip(), err[-3000:]
    s = json.loads(out.splitlines()[-1])
    states = sorted(t["state"] for t in s["trials"])
    assert "finished" in states and "failed" in states and s["status"] == "failed"
    lost = [t for t in s["trials"] if t["state"] == "failed"]
    assert all("was lost" in t["why"] for t in lost), [t["why"] for t in lost]
    assert s["best"]["dev_loss"] is not None  # the finished trial is kept, and still the best
