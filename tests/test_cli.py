"""The headless CLI as a user meets it: a subprocess, its exit code, its last JSON line, its errors."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, wait_for

from core.runs import strict_json
from core.runs.db import RunDB


def run_cli(*argv, timeout=300):
    p = subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def assert_one_line_error(code, out, err, needle):
    assert code == 2
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert needle in lines[0]


def test_train_json_is_the_last_line(names_path):
    code, out, err = run_cli("train", "--model", "deep", "--data", str(names_path), "--steps", "20",
                             "--capture-every", "10", "--json")
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["model"] == "deep" and res["preset"] == "deep-bn" and res["steps"] == 20
    assert res["state"] == "finished" and res["capture_step"] == 19
    assert len(res["activations"]) == 11 and len(res["weights"]) == 7   # 5 BN + 5 tanh + last BN; C + 6 Linear
    assert all(w["update_data_log10"] < 0 for w in res["weights"])
    assert "32,033 words" in err  # the dataset describes itself (on stderr with --json)


def test_steps_0_evaluates_the_fresh_model(names_path):
    code, out, err = run_cli("train", "--model", "mlp", "--preset", "raw", "--data", str(names_path),
                             "--steps", "0", "--json")
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["steps"] == 0 and res["init_loss"] > 20   # the confidently wrong softmax
    assert res["train_loss"] > 20 and res["val_loss"] > 20


def test_default_data_is_the_offline_ssa_names():
    code, out, err = run_cli("train", "--model", "bigram")
    assert code == 0, err
    assert "SSA names" in out and "29,910 words" in out


def test_sample_is_seeded(names_path):
    a = run_cli("sample", "--model", "bigram", "--data", str(names_path), "-n", "5", "--seed", "3")
    b = run_cli("sample", "--model", "bigram", "--data", str(names_path), "-n", "5", "--seed", "3")
    assert a[0] == 0 and a == b
    assert len(a[1].split()) == 5 and all(w.endswith(".") for w in a[1].split())


def test_gpt_on_running_text(shakespeare_path):
    code, out, err = run_cli("train", "--model", "gpt", "--data", str(shakespeare_path), "--steps", "20", "--json")
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert abs(res["init_loss"] - 4.174) < 0.3    # -ln(1/65)
    assert res["val_loss"] < res["init_loss"]


def test_diverging_run_exits_1_with_a_clear_line(names_path):
    code, out, err = run_cli("train", "--model", "bigram-nn", "--data", str(names_path),
                             "--steps", "50", "--lr", "1e6")
    assert code == 1
    assert "Traceback" not in err
    assert "diverged at step 1" in out


@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "nope"], "invalid choice"),
    (["train", "--model", "mlp", "--preset", "nope"], "nope"),
    (["train", "--model", "mlp", "--steps", "-5"], ">= 0"),
    (["train", "--model", "mlp", "--lr", "nan"], "finite number > 0"),
    (["train", "--model", "mlp", "--lr", "0"], "finite number > 0"),
    (["train", "--model", "mlp", "--gain", "2"], "--gain applies to --model deep only"),
    (["train", "--model", "mlp", "--data", "/no/such/file.txt"], "No such file"),
    (["train"], "--model"),
])
def test_bad_arguments_give_one_line(argv, needle):
    assert_one_line_error(*run_cli(*argv), needle)


def test_bad_files_give_one_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    for path, needle in [(empty, "empty"), (binary, "binary"), (blank, "blank")]:
        assert_one_line_error(*run_cli("train", "--model", "bigram", "--data", str(path)), needle)


# --- issue 17's CLI list: every bad input is one line and exit 2 --------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "mlp", "--threads", "0"], ">= 1"),
    (["train", "--model", "mlp", "--threads", "1000000"], "at most"),     # segfaulted inside OpenMP
    (["train", "--model", "mlp", "--threads", "-3"], ">= 1"),
    (["train", "--model", "mlp", "--threads", "two"], "whole number"),
    (["sample", "-n", "1000000000"], "at most 10,000"),                    # ran for hours
    (["sample", "--data", ""], "--data needs the path"),
])
def test_bad_threads_and_counts_give_one_line(argv, needle):
    assert_one_line_error(*run_cli(*argv, timeout=60), needle)


@pytest.mark.parametrize("model,n_words", [("mlp", 1), ("mlp", 2), ("mlp", 4), ("deep", 5), ("wavenet", 4),
                                           ("ninja", 1)])
def test_too_few_words_for_the_split_is_one_line_with_the_count_needed(tmp_path, model, n_words):
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(["emma", "olivia", "ava", "isabella", "sophia"][:n_words]) + "\n")
    code, out, err = run_cli("train", "--model", model, "--data", str(path), "--steps", "5", "--json")
    assert_one_line_error(code, out, err, "too few words for an 80/10/10 split (need 6)")
    assert out == ""   # no "val nan", no JSON with a bare NaN of a run that could not be


def test_six_words_train_with_a_finite_val_loss(tmp_path):
    path = tmp_path / "six.txt"
    path.write_text("emma\nolivia\nava\nisabella\nsophia\nmia\n")
    code, out, err = run_cli("train", "--model", "mlp", "--data", str(path), "--steps", "5", "--json")
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["val_loss"] is not None and 0 < res["val_loss"] < 10


def test_text_too_short_for_the_gpt_says_how_many_characters_are_needed(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("First Citizen:\n" * 5)
    assert_one_line_error(*run_cli("train", "--model", "gpt", "--data", str(path)),
                          "too few for a 90/10 split with block_size 32 (need 321")


def test_a_one_word_file_still_counts_bigrams_and_samples(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("emma\n")
    code, out, err = run_cli("train", "--model", "bigram", "--data", str(path))
    assert code == 0, err
    assert "1 word," in out and "5 bigrams" in out
    code, out, err = run_cli("sample", "--data", str(path), "-n", "3")
    assert code == 0 and len(out.split()) == 3


def test_utf16_data_trains_from_the_cli(tmp_path):
    path = tmp_path / "names-utf16.txt"
    path.write_bytes("\n".join(["emma", "olivia", "ava", "isabella", "sophia", "mia"]).encode("utf-16"))
    code, out, err = run_cli("train", "--model", "bigram", "--data", str(path))
    assert code == 0, err
    assert "6 words" in out


def parse_strictly(line):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(line, parse_constant=refuse)


def test_json_turns_nan_and_infinity_into_null():
    res = {"val_loss": math.nan, "init_loss": 3.3, "weights": [{"update_data_log10": -math.inf}],
           "findings": [{"step": 5, "value": math.inf}], "shape": (27, 10)}
    line = strict_json.dumps(res)   # what --json prints
    assert parse_strictly(line) == {"val_loss": None, "init_loss": 3.3, "weights": [{"update_data_log10": None}],
                                 "findings": [{"step": 5, "value": None}], "shape": [27, 10]}


# -----------------------------------------------------------------------------
# the CLI's run is a run like the dashboard's: in the runs file, live, and Pause/Step/Stop from a page reach it


def cli_env(tmp_path):
    return dict(os.environ, ZTH_DATA_DIR=str(tmp_path))


def test_train_saves_its_run_and_the_json_names_it(tmp_path, names_path):
    env = cli_env(tmp_path)
    p = subprocess.run([sys.executable, "-m", "core", "train", "--model", "mlp", "--data", str(names_path),
                        "--steps", "30", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    listed = subprocess.run([sys.executable, "-m", "core", "runs", "list", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    runs = json.loads(listed.stdout.strip().splitlines()[-1])["runs"]
    assert [(r["id"], r["source"], r["state"], r["step"]) for r in runs] == [(res["run"], "cli", "finished", 30)]
    shown = subprocess.run([sys.executable, "-m", "core", "runs", "show", res["run"], "--json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    show = json.loads(shown.stdout.strip().splitlines()[-1])
    assert show["spec"]["model"] == "mlp" and show["spec"]["train"]["steps"] == 30  # what was trained, kept
    assert show["activations"] == res["activations"]  # the same statistics, read back from the file


def test_no_save_leaves_the_runs_file_alone(tmp_path, names_path):
    env = cli_env(tmp_path)
    p = subprocess.run([sys.executable, "-m", "core", "train", "--model", "mlp", "--data", str(names_path),
                        "--steps", "30", "--no-save", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["run"] is None and res["steps"] == 30 and res["activations"]
    assert not (tmp_path / "runs.sqlite").exists()


def test_a_page_pauses_steps_and_stops_the_cli_run(tmp_path, names_path):
    p = subprocess.Popen([sys.executable, "-m", "core", "train", "--model", "mlp", "--data", str(names_path),
                          "--steps", "200000", "--json"], cwd=ROOT, env=cli_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    page = None
    try:
        assert wait_for(lambda: (tmp_path / "runs.sqlite").exists(), 60)
        page = RunDB(path=tmp_path / "runs.sqlite")
        assert wait_for(lambda: page.list_runs() and page.list_runs()[0]["step"] > 0, 60)
        run = page.list_runs()[0]["id"]
        assert page.send(run, "pause")
        assert wait_for(lambda: page.get_run(run)["state"] == "paused")
        held = page.get_run(run)["step"]
        time.sleep(0.6)
        assert page.get_run(run)["step"] == held  # the CLI's loop is held
        assert page.send(run, "step:7")
        assert wait_for(lambda: page.get_run(run)["step"] == held + 7 and page.get_run(run)["state"] == "paused")
        assert page.send(run, "stop")
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
        if page is not None:
            page.close()
    assert p.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["state"] == "stopped" and res["steps"] == held + 7 and res["run"] == run
    assert "stopped from the dashboard" in err
    db = RunDB(path=tmp_path / "runs.sqlite")
    assert db.get_run(run)["state"] == "stopped" and "stopped from the dashboard" in db.get_run(run)["meta"]["message"]
    db.close()


def test_ctrl_c_keeps_the_cli_run_as_stopped(tmp_path, names_path):
    p = subprocess.Popen([sys.executable, "-m", "core", "train", "--model", "mlp", "--data", str(names_path),
                          "--steps", "200000"], cwd=ROOT, env=cli_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = None
    try:
        assert wait_for(lambda: (tmp_path / "runs.sqlite").exists(), 120)
        db = RunDB(path=tmp_path / "runs.sqlite")
        assert wait_for(lambda: db.list_runs() and db.list_runs()[0]["step"] > 0, 120)  # it trains
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    (row,) = db.list_runs()
    assert row["state"] == "stopped" and row["step"] > 0 and "Ctrl-C" in row["meta"]["message"]
    assert len(db.steps_since(row["id"])[0]) == row["step"]  # every step it trained is kept
    db.close()
