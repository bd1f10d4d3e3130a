"""The headless CLI as a user meets it: a subprocess, its exit code, its last JSON line, its errors."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT


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
