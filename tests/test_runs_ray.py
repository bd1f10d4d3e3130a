"""
A dashboard server's own runs on a real Ray cluster (ZTH_RAY_ADDRESS): the run trains in an actor on the
head's worker, its records relayed into the server's runs file by a light local process; the page's Pause,
Step and Stop reach it; a run no page watches stops itself there too; a killed relay takes its actor with it;
an address nobody answers is refused at Start, and nothing trains on the server in its place; the page says
where its run trains.
"""

import math
import os
import signal
import time

import pytest
from apptest import manager, page, run_of, status, tick_until
from browser import free_port
from conftest import wait_for

from core.runs import liveness, settings
from core.runs.manager import CapacityError, NoCluster, RunManager

pytestmark = pytest.mark.long


def spec(names_path, steps=1_000_000):
    return {"model": "mlp", "preset": "kaiming", "model_kw": {}, "train": {"steps": steps},
            "data": {"kind": "file", "path": str(names_path)}}


@pytest.fixture
def on_cluster(ray_head, monkeypatch, tmp_path):
    monkeypatch.setenv("ZTH_RAY_ADDRESS", ray_head["address"])
    m = RunManager(tmp_path / "runs.sqlite", max_live=4, orphan_timeout=600)
    yield m
    m.stop_all()
    m.close()


def trainers():
    """The head's processes that train a run (Ray names an actor's worker ray::TrialActor...)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmd = open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::TrialActor"):
                out.append(int(p))
    return out


def test_a_page_run_trains_on_the_cluster_and_obeys_pause_step_and_stop(on_cluster, names_path):
    m = on_cluster
    run_id = m.start(spec(names_path), "on the cluster")
    relay = m.procs[run_id].pid
    wait_for(lambda: m.db.get_run(run_id)["step"] > 200, 180)  # the actor loads torch on the node first
    r = m.db.get_run(run_id)
    # the run row names the relay here (liveness, Stop), its meta the node that trains it
    assert r["pid"] == relay and r["host"] == liveness.HOST and r["state"] == "running"
    assert r["meta"]["backend"] == "ray" and r["meta"]["node"] and r["meta"]["node_pid"] != relay
    assert liveness.source(r) == "ray"  # as `runs list` says it
    assert len(m.db.steps_since(run_id)) > 0 and m.db.capture_steps(run_id)
    assert "libtorch" not in open(f"/proc/{relay}/maps").read()  # the relay only relays: torch loads on the node
    m.send(run_id, "pause")
    wait_for(lambda: m.db.get_run(run_id)["state"] == "paused", 10)
    s0 = m.db.get_run(run_id)["step"]
    time.sleep(1.0)
    assert m.db.get_run(run_id)["step"] == s0  # held there, not training behind the page's back
    m.send(run_id, "step:5")
    wait_for(lambda: m.db.get_run(run_id)["step"] == s0 + 5, 10)
    assert m.db.get_run(run_id)["state"] == "paused"
    m.send(run_id, "resume")
    wait_for(lambda: m.db.get_run(run_id)["step"] > s0 + 100, 20)
    assert m.stop(run_id, wait=10)
    r = m.db.get_run(run_id)
    assert r["state"] == "stopped" and r["meta"]["message"] == "stopped by the user"
    assert m.db.checkpoint_path(run_id).exists()  # the model came back: pages look inside it
    wait_for(lambda: not liveness.alive(dict(pid=relay, host=liveness.HOST, pid_start=r["pid_start"])), 10)


def test_a_run_no_page_watches_stops_itself_on_the_cluster(ray_head, monkeypatch, tmp_path, names_path):
    monkeypatch.setenv("ZTH_RAY_ADDRESS", ray_head["address"])
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=3)
    try:
        run_id = m.start(spec(names_path), "a closed tab")
        wait_for(lambda: m.db.get_run(run_id)["state"] == "stopped", 180)
        assert "no page watched this run for 3 s" in m.db.get_run(run_id)["meta"]["message"]
    finally:
        m.stop_all()
        m.close()


def test_a_killed_relay_ends_its_run_and_its_actor(on_cluster, names_path):
    m = on_cluster
    run_id = m.start(spec(names_path), "the server's machine loses a process")
    wait_for(lambda: m.db.get_run(run_id)["step"] > 0, 180)
    actor = m.db.get_run(run_id)["meta"]["node_pid"]
    assert actor in trainers()
    os.kill(m.procs[run_id].pid, signal.SIGKILL)
    wait_for(lambda: (m.reap(), m.db.get_run(run_id)["state"])[1] == "failed", 10)
    assert "SIGKILL" in m.db.get_run(run_id)["meta"]["message"]
    wait_for(lambda: actor not in trainers(), 60)  # Ray ends an actor whose owner died


def test_a_full_cluster_is_a_queue_a_waiting_run_can_be_stopped_and_an_ended_run_lets_go(on_cluster, names_path):
    """The head has 2 CPUs: a third and a fourth run wait for one, saying so, as long as it takes (a classroom
    is bigger than its cluster); Stop reaches a waiting run; the third trains once a CPU frees. A run someone
    else ended (judged gone) keeps their word: its relay lets the actor go and writes nothing more."""
    m = on_cluster
    a, b = (m.start(spec(names_path), f"trains {i}") for i in "ab")
    wait_for(lambda: all(m.db.get_run(r)["step"] > 0 for r in (a, b)), 180)
    c, d = (m.start(spec(names_path), f"waits {i}") for i in "cd")
    waiting = "waiting for a free CPU on the Ray cluster (all 2 are training)"
    wait_for(lambda: all(m.db.get_run(r)["meta"].get("message") == waiting for r in (c, d)), 120)
    assert all(m.db.get_run(r)["state"] == "starting" and not m.db.get_run(r)["meta"].get("node") for r in (c, d))
    assert m.stop(d, wait=30)
    r = m.db.get_run(d)
    assert r["state"] == "stopped" and r["meta"]["message"] == "stopped by the user, before the Ray cluster placed it"
    m.send(c, "pause")  # pressed while it waits: it starts paused
    time.sleep(1.0)     # (the relay has taken the command from the slot: it holds it)
    assert m.stop(a, wait=30)
    wait_for(lambda: m.db.get_run(c)["state"] == "paused", 120)  # a's CPU went to c
    r = m.db.get_run(c)
    assert r["meta"]["node"] and not r["meta"].get("message") and r["step"] == 0
    m.send(c, "resume")
    wait_for(lambda: m.db.get_run(c)["step"] > 0, 60)
    actor, relay = m.db.get_run(c)["meta"]["node_pid"], m.procs[c]
    assert m.db.end_if_live(c, "ended by a teacher's script")
    wait_for(lambda: relay.poll() is not None, 60)
    wait_for(lambda: actor not in trainers(), 30)
    r = m.db.get_run(c)
    time.sleep(1.0)
    assert m.db.get_run(c)["step"] == r["step"]
    assert r["state"] == "failed" and r["meta"]["message"] == "ended by a teacher's script"


def test_runs_that_still_train_here_keep_this_machines_cap(monkeypatch, tmp_path):
    """With ZTH_RAY_ADDRESS the cap is 8 relays per core, but micrograd's runs train on the server itself:
    those keep the cap of a server without a cluster."""
    monkeypatch.delenv("ZTH_MAX_RUNS", raising=False)
    monkeypatch.setenv("ZTH_RAY_ADDRESS", f"127.0.0.1:{free_port()}")  # micrograd never asks the cluster
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=600)
    here, _ = settings.local_max_runs()
    assert here == max(2, settings.cores() // 2) < m.max_live
    micro = {"model": "micrograd", "train": {"optimizer": "sgd", "steps": 100, "lr": 1.0, "seed": 1337}}
    try:
        for i in range(here):
            m.start(micro, f"micrograd {i}", paused=True)
        with pytest.raises(CapacityError, match=f"{here} runs are training on this server itself already"):
            m.start(micro, "one too many here")
        monkeypatch.setenv("ZTH_MAX_RUNS", "30")
        assert settings.local_max_runs() is None  # a teacher's number covers every run
    finally:
        m.stop_all()
        m.close()


def test_an_address_nobody_answers_refuses_the_start_and_nothing_trains_here(monkeypatch, tmp_path, names_path):
    port = free_port()
    monkeypatch.setenv("ZTH_RAY_ADDRESS", f"127.0.0.1:{port}")
    m = RunManager(tmp_path / "runs.sqlite")
    try:
        with pytest.raises(NoCluster, match=f"no Ray cluster answers at 127.0.0.1:{port}.*never fall back"):
            m.start(spec(names_path), "nowhere")
        assert m.db.list_runs() == [] and not m.procs
        micro = {"model": "micrograd", "train": {"optimizer": "sgd", "steps": 10, "lr": 1.0, "seed": 1337}}
        assert m.start(micro, "lecture 1 stays here")  # tiny, and its frames are files the page reads
    finally:
        m.stop_all()
        m.close()


def test_the_cap_grows_when_the_server_only_relays(monkeypatch):
    monkeypatch.delenv("ZTH_MAX_RUNS", raising=False)
    monkeypatch.delenv("ZTH_RAY_ADDRESS", raising=False)
    here, _ = settings.max_runs()
    monkeypatch.setenv("ZTH_RAY_ADDRESS", "127.0.0.1:6379")
    cap, why = settings.max_runs()
    assert cap == settings.RELAYS_PER_CORE * settings.cores() > here and "Ray cluster" in why
    monkeypatch.setenv("ZTH_MAX_RUNS", "30")
    assert settings.max_runs()[0] == 30  # a teacher's number stands


@pytest.mark.usefixtures("app_data_dir")
def test_the_page_starts_a_run_on_the_cluster_and_says_where_it_trains(ray_head, monkeypatch, names_path):
    """...and, while the cluster is full, that the run waits for a CPU (a class bigger than its cluster)."""
    monkeypatch.setenv("ZTH_RAY_ADDRESS", ray_head["address"])
    at = page(model="mlp", preset="kaiming", steps=1_000_000)
    full = [manager().start(spec(names_path), f"holds a CPU {i}", orphan_timeout=math.inf) for i in range(2)]
    wait_for(lambda: all(manager().db.get_run(r)["step"] > 0 for r in full), 180)
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: any("waiting for a free CPU on the Ray cluster" in i.value for i in a.info), 60)
    assert "`starting`" in status(at)
    for r in full:
        manager().stop(r, wait=10)
    tick_until(at, lambda a: run_of(a)["step"] > 0 and "on the Ray cluster (node" in status(a), 180)
    assert not any("waiting for a free CPU" in i.value for i in at.info)
    assert run_of(at)["meta"]["backend"] == "ray"
    runs = page("runs").dataframe[0].value  # the Runs page says where each run trains
    assert runs["trains"].iloc[0] == f"Ray node {run_of(at)['meta']['node']}"
    at.button(key="btn_stop").click().run()
    tick_until(at, lambda a: run_of(a)["state"] == "stopped", 30)


def test_sigterm_stops_a_run_on_the_cluster_as_it_stops_a_local_one(on_cluster, names_path):
    m = on_cluster
    run_id = m.start(spec(names_path), "the server shuts down")
    wait_for(lambda: m.db.get_run(run_id)["step"] > 0, 180)
    m.procs[run_id].terminate()  # ray.init put its own SIGTERM handler in place: the relay puts ours back
    assert m.procs[run_id].wait(30) == 0
    r = m.db.get_run(run_id)
    assert r["state"] == "stopped" and "SIGTERM" in r["meta"]["message"], r["meta"].get("message")
