"""A server that a class shares: dead workers, reused pids, other sessions' runs, a damaged runs file,
a full disk, a locked file. Each fault against real worker processes and a real SQLite file."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from apptest import APP, USE_DATA_DIR, page, tick_until
from conftest import ROOT, wait_for
from streamlit.testing.v1 import AppTest

from core.runs import liveness, settings, storage
from core.runs.db import LIVE_STATES, RunDB
from core.runs.manager import CHECK_SECONDS, CapacityError, NoWorker, RunManager
from core.runs.spec import build_job
from core.runs.store import RunStore
from core.training.loop import Run

FOREVER = 10_000_000


def spec(names_path, steps=FOREVER, **train):
    return {"model": "deep", "preset": "deep-bn", "model_kw": {},
            "train": {"steps": steps, "capture_every": 50, **train},
            "data": {"kind": "file", "path": str(names_path)}}



def registry():
    return sys.modules["dashboard.ui.registry"]


# --- dead workers ------------------------------------------------------------------------------


def test_a_sigkilled_worker_is_marked_ended_with_its_signal_and_stop_and_delete_still_work(tmp_path, names_path):
    m = RunManager(tmp_path / "runs.sqlite", max_live=2, orphan_timeout=60, check_every=CHECK_SECONDS)
    try:
        run_id = m.start(spec(names_path), "killed")
        m.wait(run_id, 60, states=("running",))
        wait_for(lambda: m.db.get_run(run_id)["step"] > 0, 30)
        os.kill(m.db.get_run(run_id)["pid"], signal.SIGKILL)  # the OOM killer, a crash
        t0 = time.time()
        # nobody asks: the server's own check notices (target 5 s from the kill to the page; 15 s on a busy CI)
        r = wait_for(lambda: (lambda r: r if r["state"] not in LIVE_STATES else None)(m.db.get_run(run_id)), 15)
        assert time.time() - t0 < 15
        assert r["state"] == "failed"
        assert r["meta"]["message"].startswith(f"the worker ended unexpectedly at step {r['step']:,} (signal 9, SIGKILL)")
        assert m.max_live - len(m.db.live_runs()) == 2  # its slot is free again
        m.stop(run_id)  # a Stop on a dead worker's run answers at once and changes nothing
        assert m.db.get_run(run_id)["state"] == "failed"
        assert m.delete(run_id) and m.db.get_run(run_id) is None
    finally:
        m.close()
        m.stop_all()


def test_a_reader_that_did_not_start_the_worker_ends_its_run_with_the_log_tail(tmp_path, names_path):
    db = RunDB(tmp_path / "runs.sqlite")
    run_id = db.create_run(spec(names_path), "crashing")
    db.log_path(run_id).parent.mkdir(exist_ok=True)
    db.log_path(run_id).write_text("loading...\nFatal Python error: Segmentation fault\n  File \"loop.py\", line 9\n")
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    db.update_run(run_id, state="running", step=1234, **liveness.identity(p.pid))
    p.wait()  # exited (and waited for): its pid names no process now
    assert liveness.reap(RunDB(db.path)) == [run_id]  # another process's handle, as `runs list` has
    r = db.get_run(run_id)
    assert r["state"] == "failed"
    msg = r["meta"]["message"]
    assert msg.startswith("the worker ended unexpectedly at step 1,234; what it recorded is kept.")
    assert msg.endswith("    Fatal Python error: Segmentation fault\n      File \"loop.py\", line 9")


def test_a_reused_pid_is_never_taken_for_the_worker(tmp_path):
    db = RunDB(tmp_path / "runs.sqlite")
    me = liveness.identity()  # a live process: this test's

    def row(**fields):
        run_id = db.create_run({}, "r")
        db.update_run(run_id, state="running", **fields)
        return run_id

    reused = row(pid=me["pid"], host=me["host"], pid_start="another-boot:12345")  # the pid, not the process
    ours = row(**me)
    old_row = row(pid=me["pid"], created=time.time() - 10 * 86400)  # a row from before start times were kept
    legacy_ours = row(pid=me["pid"])
    never = row(pid=None, created=time.time() - 60)
    remote_quiet = row(pid=1, host="elsewhere")
    db.con.execute("UPDATE runs SET updated = ? WHERE id = ?", (time.time() - 3600, remote_quiet))  # silent 1 h
    remote = row(pid=1, host="elsewhere")
    ended = set(liveness.reap(db))
    assert ended == {reused, old_row, never, remote_quiet}
    assert "now belongs to another process" in db.get_run(reused)["meta"]["message"]
    assert "(it never started)" in db.get_run(never)["meta"]["message"]
    assert "no word from it on elsewhere" in db.get_run(remote_quiet)["meta"]["message"]
    assert {r["id"] for r in db.live_runs()} == {ours, legacy_ours, remote}


def test_a_worker_whose_server_went_away_says_so_when_it_stops(tmp_path, names_path):
    db = RunDB(tmp_path / "runs.sqlite")
    run_id = db.create_run(spec(names_path), "orphan")
    # a server that starts the worker and is gone at once: an outage, not a closed tab
    launcher = ("import os, subprocess, sys; subprocess.Popen([sys.executable, '-m', 'core.runs.worker', "
                f"{str(db.path)!r}, {run_id!r}, '2', f'--server={{os.getpid()}}'])")
    subprocess.run([sys.executable, "-c", launcher], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    r = wait_for(lambda: (lambda r: r if r["state"] == "stopped" else None)(db.get_run(run_id)), 60)
    assert "the server that started it is gone (a server outage or restart" in r["meta"]["message"]
    assert "tab was closed" not in r["meta"]["message"]


def test_sigterm_stops_the_worker_cleanly_and_folds_the_wal_back(tmp_path, names_path):
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=60)
    run_id = m.start(spec(names_path), "terminated")
    m.wait(run_id, 60, states=("running",))
    wait_for(lambda: m.db.get_run(run_id)["step"] > 100, 30)
    m.procs[run_id].send_signal(signal.SIGTERM)
    assert m.procs[run_id].wait(30) == 0
    r = m.db.get_run(run_id)
    assert r["state"] == "stopped" and "SIGTERM" in r["meta"]["message"]
    steps, _, _ = m.db.steps_since(run_id)
    assert list(steps) == list(range(r["step"]))  # every step it trained is on disk
    wal = tmp_path / "runs.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # the worker's close checkpointed it
    m.close()
    assert not wal.exists()  # the last connection gone: runs.sqlite alone holds everything


def test_a_stop_that_a_starting_worker_cannot_answer_yet_still_ends_it_as_stopped(tmp_path, names_path):
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=60)
    run_id = m.start(spec(names_path), "stopped early")
    m.stop(run_id, wait=0.05)  # the worker is still loading torch: it is ended, at the user's word
    r = m.db.get_run(run_id)
    assert r["state"] == "stopped" and r["meta"]["message"].startswith("stopped")
    assert not m.procs and not m.db.live_runs()


# --- who may stop a run -----------------------------------------------------------------------


def test_a_second_session_cannot_pause_stop_or_delete_a_run_unless_teacher(tmp_path, names_path):
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=60)
    try:
        run_id = m.start(spec(names_path), "a's run", session="learner-a")
        m.wait(run_id, 60, states=("running",))
        m.acting("learner-b")
        assert not m.send(run_id, "pause") and not m.stop(run_id) and not m.delete(run_id)
        assert m.send(run_id, "sample:10:eval")  # looking at its samples is for everyone
        time.sleep(0.5)
        assert m.db.get_run(run_id)["state"] == "running"
        m.acting("learner-b", teacher=True)
        assert m.send(run_id, "pause")
        m.wait(run_id, 10, states=("paused",))
        m.acting("learner-a")
        assert m.stop(run_id) and m.db.get_run(run_id)["state"] == "stopped"
    finally:
        m.acting(None)
        m.stop_all()


def test_a_pending_stop_survives_another_sessions_sample_and_the_owner_replaces_a_pending_sample(tmp_path):
    m = RunManager(tmp_path / "runs.sqlite")
    run_id = m.db.create_run({}, "a's run", session="learner-a")
    try:
        m.acting("learner-a")
        assert m.send(run_id, "stop")
        m.acting("learner-b")
        assert not m.send(run_id, "sample:10:eval")  # the one slot is taken: the sample waits its turn
        assert m.db.take_command(run_id)[0] == "stop"
        assert m.send(run_id, "sample:10:eval")  # an empty slot takes it
        m.acting("learner-a")
        assert m.send(run_id, "pause")  # the owner's control goes before someone's look at the samples
        assert m.db.take_command(run_id)[0] == "pause"
    finally:
        m.acting(None)
        m.close()


def session_page(name, session_id, **params):
    """The page `name` in a browser session whose id is session_id (state.session_id() reads it)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["session_id"] = session_id
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    at.switch_page(f"views/{name}.py")
    at.run()
    assert not at.exception, at.exception
    return at


@USE_DATA_DIR
def test_the_runs_page_lets_only_the_owning_session_stop_and_says_why(names_path, monkeypatch):
    page("runs")
    mgr = registry()._manager()
    run_id = mgr.start(spec(names_path), "a's run", session="learner-a")
    try:
        mgr.wait(run_id, 60, states=("running",))
        other = session_page("runs", "learner-b")
        other.selectbox(key="runs_pick").set_value(run_id).run()
        assert other.button(key="runs_stop").proto.disabled
        assert any("belongs to another browser session" in c.value for c in other.caption)
        assert any("teacher mode (ZTH_TEACHER=1)" in c.value for c in other.caption)
        # the run's own page, opened through its link: Stop is there, and refused with the reason
        other = session_page("activations", "learner-b", run=run_id, model="deep", preset="deep-bn")
        other.button(key="btn_stop").click().run()
        assert any("belongs to another browser session" in e.value for e in other.error)
        other.button(key="btn_pause").click().run()
        time.sleep(1.0)
        assert mgr.db.get_run(run_id)["state"] == "running" and mgr.db.get_run(run_id)["command"] is None
        monkeypatch.setenv("ZTH_TEACHER", "1")
        teacher = session_page("runs", "teacher")
        teacher.selectbox(key="runs_pick").set_value(run_id).run()
        assert any("**Teacher mode**" in c.value for c in teacher.caption)
        assert not teacher.button(key="runs_stop").proto.disabled
        teacher.button(key="runs_stop").click().run()
        assert mgr.db.get_run(run_id)["state"] == "stopped"
    finally:
        mgr.stop_all()


@USE_DATA_DIR
def test_a_notebook_run_has_no_stop_on_the_runs_page_and_stop_or_delete_say_why():
    store = RunStore(name="a notebook's run")  # what Run() makes in a notebook: this process trains it
    store.db.update_run(store.run_id, state="running")
    try:
        at = session_page("runs", "learner-a")
        at.selectbox(key="runs_pick").set_value(store.run_id).run()
        assert at.button(key="runs_stop").proto.disabled and at.button(key="runs_delete").proto.disabled
        assert any("trains in its own process" in c.value for c in at.caption)
        mgr = registry()._manager()
        for act in (mgr.stop, mgr.delete):
            with pytest.raises(NoWorker, match=rf"run {store.run_id} trains in its own process \(pid {os.getpid()}"):
                act(store.run_id)
        assert mgr.db.get_run(store.run_id)["state"] == "running"
        rc, out, err = cli("stop", store.run_id, data_dir=mgr.db.path.parent)  # the shell says it in a line
        assert rc == 2 and out == "" and err.count("\n") == 1 and "reads no commands" in err, err
    finally:
        store.db.update_run(store.run_id, state="stopped")
        store.close()


@USE_DATA_DIR
def test_the_runs_page_with_keep_runs_0_keeps_every_run(monkeypatch):
    monkeypatch.setenv("ZTH_KEEP_RUNS", "0")  # 0 turns the limit off
    at = page("runs")
    assert any("keeps every run, none older than" in c.value for c in at.caption), [c.value for c in at.caption]


@USE_DATA_DIR
def test_the_tensorboard_export_into_a_folder_it_cannot_write_says_why(app_data_dir):
    page("runs")
    db = registry()._manager().db
    run_id = db.create_run({"model": "mlp"}, "finished")
    db.append(run_id, steps=[(s, 2.0, 0.1) for s in range(5)], state="finished", step=5)
    blocker = app_data_dir / "tensorboard"
    blocker.write_text("a file where the export folder goes")  # as an unwritable folder or a full disk would
    try:
        at = page("runs")
        at.selectbox(key="runs_pick").set_value(run_id).run()
        at.button(key="runs_tensorboard").click().run()
        assert not at.exception, at.exception
        assert any(e.value.startswith("The export could not be written: ") and "Not a directory" in e.value
                   for e in at.error), [e.value for e in at.error]
    finally:
        blocker.unlink()


@USE_DATA_DIR
def test_a_killed_workers_page_says_so_within_seconds():
    at = page(model="mlp", preset="kaiming")
    at.button(key="btn_start").click().run()
    tick_until(at, lambda a: any("`running`" in m.value for m in a.markdown), 60)
    run_id = at.query_params["run"]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    os.kill(registry().manager().db.get_run(run_id)["pid"], signal.SIGKILL)
    t0 = time.time()
    tick_until(at, lambda a: any("the worker ended unexpectedly" in e.value for e in a.error), 15)
    assert time.time() - t0 < 15  # the target is 5 s: the server's check every 2 s, a page tick every 1 s
    assert any("(signal 9, SIGKILL)" in e.value for e in at.error)
    assert at.button(key="btn_stop").proto.disabled  # it is no longer live: nothing left to stop


# --- the runs file -------------------------------------------------------------------------------


def filled_runs_file(path, n_runs=3, steps=2000):
    db = RunDB(path)
    for i in range(n_runs):
        run_id = db.create_run({"model": "mlp"}, f"run {i}")
        db.append(run_id, steps=[(s, 2.0, 0.1) for s in range(steps)], state="finished", step=steps)
    db.close()


@pytest.mark.parametrize("how", ["garbage_over_the_header", "truncated_file", "garbage_mid_file"])
def test_a_damaged_runs_file_is_moved_aside_and_a_fresh_one_started(tmp_path, how):
    path = tmp_path / "runs.sqlite"
    filled_runs_file(path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if how == "garbage_over_the_header":
            f.write(os.urandom(100))
        elif how == "truncated_file":
            f.truncate(size // 2)
        else:
            f.seek(size // 3)
            f.write(os.urandom(16384))
    damaged = path.read_bytes()
    db = RunDB(path)
    assert db.notice.startswith("The runs file was damaged (") and "moved aside to runs.damaged-" in db.notice
    assert db.count_runs() == 0 and db.list_runs() == []  # a fresh one, ready for runs
    assert db.create_run({}, "after") and db.count_runs() == 1
    (kept,) = storage.damaged_files(path)
    assert kept.read_bytes() == damaged  # the damaged file kept as it was, for its owner
    assert RunDB(path).notice is None  # the fresh one is whole


def test_damaged_runs_files_found_in_the_same_second_are_each_kept(tmp_path):
    path = tmp_path / "runs.sqlite"
    written = []
    for _ in range(3):  # well within a second: the names must differ beyond the timestamp
        RunDB(path).close()
        with open(path, "r+b") as f:
            f.write(os.urandom(100))
        written.append(path.read_bytes())
        assert RunDB(path).notice is not None
    assert sorted(f.read_bytes() for f in storage.damaged_files(path)) == sorted(written)


@USE_DATA_DIR
def test_the_runs_page_says_the_runs_file_was_damaged_and_shows_free_space(app_data_dir):
    page("runs")
    reg = registry()
    reg.manager().stop_all()
    reg.manager.clear()  # the server stops; its runs file is damaged while it is down
    with open(app_data_dir / "runs.sqlite", "r+b") as f:
        f.write(b"this is not a database" * 10)
    at = page("runs")  # the server starts again
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("The runs file was damaged (file is not a database)") for w in warnings)
    assert any("runs.damaged-" in w and "kept for you" in w for w in warnings)
    assert any(" free** on its disk" in c.value and "ZTH_KEEP_RUNS" in c.value for c in at.caption)
    assert any("runs.damaged-" in p.name for p in app_data_dir.iterdir())


def test_a_full_runs_file_stops_the_run_with_disk_full_and_its_traceback(tmp_path, names_path, monkeypatch):
    monkeypatch.setenv("ZTH_RUNS_MB", "1")  # the runs file's own cap, through SQLite's max_page_count
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=60)
    try:
        run_id = m.start(spec(names_path, capture_every=1), "filler")
        r = m.wait(run_id, 120)
    finally:
        m.stop_all()
    assert r["state"] == "failed"
    assert r["meta"]["message"].startswith("disk full: 1 runs kept, free space needed")
    assert "at its cap of 1 MB (ZTH_RUNS_MB)" in r["meta"]["message"]
    log = m.db.log_path(run_id).read_text()
    assert "Traceback" in log and "database or disk is full" in log
    steps, _, _ = m.db.steps_since(run_id)
    assert len(steps) > 0 and list(steps) == list(range(len(steps)))  # what it recorded is kept, in order
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_a_full_disk_under_the_checkpoint_leaves_no_tmp_and_fails_the_run(tmp_path, names_path):
    db = RunDB(tmp_path / "runs.sqlite")
    run_id = db.create_run(spec(names_path, capture_every=0), "no room")
    limit = 150_000  # bytes a file of the worker may grow to: its model's checkpoint (~200 KB) does not fit
    worker = ("import resource, runpy, sys; "
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
              f"sys.argv = ['worker', {str(db.path)!r}, {run_id!r}, '60']; "
              "runpy.run_module('core.runs.worker', run_name='__main__')")
    db.log_path(run_id).parent.mkdir(exist_ok=True)
    with open(db.log_path(run_id), "wb") as log:
        p = subprocess.run([sys.executable, "-c", worker], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, timeout=120)
    assert p.returncode == 0
    r = db.get_run(run_id)
    assert r["state"] == "failed" and r["meta"]["message"].startswith("disk full: 1 runs kept, free space needed")
    log = db.log_path(run_id).read_text()
    assert "Traceback" in log and "File too large" in log
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_a_runs_file_locked_for_20_s_makes_training_wait_and_keeps_every_row(tmp_path, names_path):
    m = RunManager(tmp_path / "runs.sqlite", orphan_timeout=120)
    try:
        run_id = m.start(spec(names_path), "patient")
        m.wait(run_id, 60, states=("running",))
        wait_for(lambda: m.db.get_run(run_id)["step"] > 50, 30)
        other = sqlite3.connect(tmp_path / "runs.sqlite", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        t0 = time.time()
        locked_at = m.db.get_run(run_id)["step"]
        assert m.db.heartbeat(run_id) is False and time.time() - t0 < 5  # a page's beat skips, never raises
        time.sleep(20 - (time.time() - t0))
        other.execute("COMMIT")
        other.close()
        wait_for(lambda: m.db.get_run(run_id)["step"] > locked_at + 200, 60)
        assert m.db.get_run(run_id)["state"] == "running"
        m.stop(run_id)
    finally:
        m.stop_all()
    r = m.db.get_run(run_id)
    assert r["state"] == "stopped" and r["meta"]["message"] == "stopped by the user"
    assert "training waited and went on" in r["meta"]["busy"]
    steps, _, _ = m.db.steps_since(run_id)
    assert list(steps) == list(range(r["step"]))  # every row, none lost to the lock
    assert "the runs file is locked by another program: training waits" in m.db.log_path(run_id).read_text()


def test_close_waits_for_a_reader_and_still_folds_the_log_back(tmp_path):
    db = RunDB(tmp_path / "runs.sqlite")
    run_id = db.create_run({}, "r")
    reading, done = threading.Event(), threading.Event()

    def reader():  # another program reading an old snapshot for 1.5 s, longer than one checkpoint waits
        con = sqlite3.connect(db.path, isolation_level=None)
        con.execute("BEGIN")
        con.execute("SELECT count(*) FROM steps").fetchone()
        reading.set()
        time.sleep(1.5)
        con.execute("COMMIT")
        done.wait(30)
        con.close()

    t = threading.Thread(target=reader)
    t.start()
    try:
        reading.wait(10)
        db.append(run_id, steps=[(s, 2.0, 0.1) for s in range(1000)], step=1000)  # frames past its snapshot
        db.close()
        wal = tmp_path / "runs.sqlite-wal"
        assert wal.stat().st_size == 0  # the reader still has the file open, so the log stays, empty
    finally:
        done.set()
        t.join()


def test_a_notebook_run_folds_its_log_back_at_close_and_still_reads_after(tmp_path, names_path, monkeypatch):
    monkeypatch.setenv("ZTH_DATA_DIR", str(tmp_path))
    model, batches, cfg, _, _, _ = build_job({"model": "mlp", "preset": "kaiming", "train": {"steps": 5},
                                              "data": {"kind": "file", "path": str(names_path)}})
    run = Run(model, batches, cfg)
    run.run()
    run.close()
    assert not (tmp_path / "runs.sqlite-wal").exists()  # its own handle closed: runs.sqlite alone is whole
    assert list(run.store.losses()[0]) == list(range(5))  # a read after close opens the file again
    run.store.close()


def test_live_runs_reads_only_the_live_rows(tmp_path):
    db = RunDB(tmp_path / "runs.sqlite")
    meta = {"generated": ["x" * 2000], "final": {"train": 2.0}}
    with db._tx():  # a server's thousand kept runs, each with its meta to parse
        db.con.executemany("INSERT INTO runs (id, created, name, spec, meta, state, heartbeat, updated) "
                           "VALUES (?, ?, 'old', '{}', ?, 'finished', 0, 0)",
                           [(f"old{i}", i, json.dumps(meta)) for i in range(1000)])
    live = [db.create_run({}, f"live {i}") for i in range(2)]
    assert [r["id"] for r in db.live_runs()] == live[::-1]  # newest first, as list_runs orders them

    def best(f):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)

    # the server's check asks every 2 s and Start asks each time: it must not parse every run kept
    assert best(db.live_runs) * 5 < best(db.list_runs)


# --- the server --------------------------------------------------------------------------------


def test_one_handle_shared_by_many_threads_keeps_each_transaction_whole(tmp_path):
    db = RunDB(tmp_path / "runs.sqlite")
    ids = [db.create_run({}, f"r{i}") for i in range(4)]
    errors = []

    def hammer(k):
        try:
            for i in range(150):
                run_id = ids[(k + i) % len(ids)]
                db.append(run_id, steps=[(k * 1000 + i, 1.0, 0.1)], step=i, meta=dict(by=k))
                db.heartbeat(run_id)
                db.send(run_id, "pause")
                db.take_command(run_id)
                db.get_run(run_id)
        except Exception as e:  # "cannot start a transaction within a transaction" without the lock
            errors.append(repr(e))

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(len(db.steps_since(i)[0]) for i in ids) == 8 * 150


def test_the_cap_scales_with_the_cores_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("ZTH_MAX_RUNS", raising=False)
    m = RunManager(tmp_path / "runs.sqlite")
    assert m.max_live == max(2, settings.cores() // 2)
    assert m.cap_note == f"half of this machine's {settings.cores()} cores, at least 2; ZTH_MAX_RUNS changes it"
    for _ in range(m.max_live):  # live rows of this process, as a notebook's runs are
        db_id = m.db.create_run({}, "filler")
        m.db.update_run(db_id, state="running", **liveness.identity())
    with pytest.raises(CapacityError, match=rf"the cap is {m.max_live}: half of this machine's"):
        m.start({}, "one too many")
    monkeypatch.setenv("ZTH_MAX_RUNS", "5")
    assert RunManager(tmp_path / "runs.sqlite").max_live == 5
    monkeypatch.setenv("ZTH_MAX_RUNS", "zero")
    with pytest.raises(ValueError, match=r"ZTH_MAX_RUNS must be a whole number >= 1 \(got 'zero'\)"):
        RunManager(tmp_path / "runs.sqlite")


def test_retention_keeps_the_newest_runs_and_never_a_live_one(tmp_path):
    db = RunDB(tmp_path / "runs.sqlite")
    now = time.time()
    ended = []
    for i in range(5):
        run_id = db.create_run({}, f"ended {i}")
        db.update_run(run_id, state="finished", created=now - 100 + i)
        ended.append(run_id)
    db.checkpoint_path(ended[0]).parent.mkdir(exist_ok=True)
    db.checkpoint_path(ended[0]).write_bytes(b"model")
    db.log_path(ended[0]).parent.mkdir(exist_ok=True)
    db.log_path(ended[0]).write_text("log")
    live = db.create_run({}, "live")
    db.update_run(live, state="running", created=now - 10**7, **liveness.identity())
    assert set(db.prune(keep_runs=3)) == set(ended[:2])
    assert not db.checkpoint_path(ended[0]).exists() and not db.log_path(ended[0]).exists()
    db.update_run(ended[2], created=now - 40 * 86400)
    assert db.prune(keep_runs=3, keep_days=30) == [ended[2]]
    assert {r["id"] for r in db.list_runs()} == {ended[3], ended[4], live}


# --- python -m core runs ---------------------------------------------------------------------------


def cli(*args, data_dir):
    p = subprocess.run([sys.executable, "-m", "core", "runs", *args], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "ZTH_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_cli_runs_start_list_show_and_a_killed_worker_read_from_the_shell(tmp_path, names_path):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec(names_path)))
    rc, out, err = cli("start", str(spec_file), "--json", data_dir=tmp_path)
    assert rc == 0, err
    started = json.loads(out)
    assert set(started) == {"id", "pid", "name", "state"} and started["name"] == "deep/deep-bn"
    run_id, pid = started["id"], started["pid"]
    db = RunDB(tmp_path / "runs.sqlite")
    try:
        wait_for(lambda: db.get_run(run_id)["step"] > 0, 60)
        time.sleep(1.0)  # no page watches a run started here: no orphan timeout stops it
        rc, out, _ = cli("show", run_id, "--json", data_dir=tmp_path)
        shown = json.loads(out)
        assert rc == 0 and shown["pid"] == pid and shown["state"] == "running" and shown["steps_recorded"] > 0
    finally:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not liveness.alive(dict(pid=pid)), 10)
    rc, out, _ = cli("list", "--json", data_dir=tmp_path)  # the reader ends the run whose worker is gone
    (listed,) = json.loads(out)["runs"]
    assert rc == 0 and listed["id"] == run_id and listed["state"] == "failed"
    assert listed["message"].startswith("the worker ended unexpectedly at step")
    rc, out, _ = cli("list", data_dir=tmp_path)
    assert rc == 0 and out.startswith(f"{run_id}  failed")


@pytest.mark.parametrize("args,needle", [
    (["show", "nosuchrun"], "no run 'nosuchrun'"),
    (["start", "/no/such/spec.json"], "cannot read the spec /no/such/spec.json"),
    (["start", "SPEC:[1, 2]"], "must be a JSON object"),
    (["start", "SPEC:{not json"], "is not valid JSON"),
    (["start", 'SPEC:{"model": "mlp", "preset": "raw", "train": {"steps": -1}}'], "steps must be between"),
    (["stop"], "the following arguments are required: id"),
])
def test_cli_runs_bad_input_gets_one_line_and_exit_2(tmp_path, args, needle):
    if args[-1].startswith("SPEC:"):
        (tmp_path / "spec.json").write_text(args[-1][5:])
        args = [*args[:-1], str(tmp_path / "spec.json")]
    rc, out, err = cli(*args, data_dir=tmp_path)
    assert rc == 2 and out == "" and err.count("\n") == 1 and needle in err, err
