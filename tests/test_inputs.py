"""
Inputs that cannot exhaust the server (issue 17): a device, a FIFO or a folder given as a
dataset is refused by its type, at once and without reading it, by the data layer, the CLI
and the sidebar's "A file on this machine". /dev/zero reports size 0 and never ends; a FIFO
blocks an open until a writer comes: before the type check, the first ate memory until
MemoryError and the second hung.
"""

import os
import resource
import subprocess
import sys
import time

import pytest
from apptest import APP, USE_DATA_DIR, run_of, with_data_path
from conftest import ROOT
from streamlit.testing.v1 import AppTest
from test_cli import assert_one_line_error, run_cli

HAZARDS = {"dev_zero": "is a device", "fifo": "is a pipe (FIFO)", "folder": "is a folder"}


@pytest.fixture(params=list(HAZARDS))
def hazard(request, tmp_path):
    """(path, what the message says) for each kind of file that is not a regular file."""
    if request.param == "dev_zero":
        return "/dev/zero", HAZARDS["dev_zero"]
    if request.param == "fifo":
        path = tmp_path / "names.txt"  # a FIFO can carry a text file's name
        os.mkfifo(path)
        return str(path), HAZARDS["fifo"]
    return str(tmp_path), HAZARDS["folder"]


def cap_memory():
    # a regression reads /dev/zero until MemoryError: let it fail at 4 GB, not take the machine with it
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("load", ["load_words", "load_text", "read_text"])
def test_a_device_fifo_or_folder_is_refused_by_the_data_layer_in_well_under_a_second(hazard, load):
    path, needle = hazard
    code = ("import sys, time, data\nt = time.perf_counter()\ntry:\n    data.%s(sys.argv[1])\n"
            "except data.DataError as e:\n    print(f'{time.perf_counter() - t:.4f} {e}')\n" % load)
    p = subprocess.run([sys.executable, "-c", code, path], cwd=ROOT, capture_output=True, text=True,
                       timeout=30, preexec_fn=cap_memory)
    assert p.returncode == 0 and p.stderr == "", p.stderr[-500:]
    seconds, message = p.stdout.strip().split(" ", 1)
    assert float(seconds) < 0.5 and needle in message and "\n" not in message


@pytest.mark.parametrize("argv", [("train", "--model", "mlp"), ("sample",)])
def test_a_device_fifo_or_folder_is_one_line_and_exit_2_in_the_cli_before_torch_loads(hazard, argv):
    path, needle = hazard
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "core", *argv, "--data", path], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, preexec_fn=cap_memory)
    assert_one_line_error(p.returncode, p.stdout, p.stderr, needle)
    assert time.time() - t0 < 3.0  # python and the argument parser; torch's import alone takes longer


def test_an_empty_data_path_in_the_cli_is_an_error_not_the_default():
    assert_one_line_error(*run_cli("train", "--model", "mlp", "--data", " "), "--data needs the path")


@USE_DATA_DIR
def test_a_device_fifo_or_folder_in_the_sidebar_is_a_message_at_once_with_the_memory_flat(hazard):
    path, needle = hazard
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["data_how"] = "A file on this machine"
    at.session_state["data_path"] = "/no/such/file.txt"
    at.run()  # a first render: the app's imports and the page, before anything is measured
    assert any("No such file" in e.value for e in at.sidebar.error)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the process's peak so far
    at.session_state["data_path"] = path
    t0 = time.time()
    at.run()
    seconds = time.time() - t0
    assert not at.exception, at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and needle in errors[0], errors
    assert seconds < 3.0, seconds  # the whole rerun of the home page; the check itself is a stat
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50 * 1024  # the peak grew < 50 MB
    assert "data" not in at.query_params  # the link keeps no path that was refused


# --- what the sidebar says about a file ------------------------------------------------------------

@USE_DATA_DIR
@pytest.mark.parametrize("lines,caption", [(1, "one.txt: 1 line."), (2, "one.txt: 2 lines."),
                                           (6, "one.txt: 6 lines")])
def test_the_sidebar_counts_lines_in_the_singular_and_warns_below_the_split(tmp_path, lines, caption):
    path = tmp_path / "one.txt"
    path.write_text("\n".join(["emma", "olivia", "ava", "isabella", "sophia", "mia"][:lines]) + "\n")
    _, (errors, captions) = with_data_path(path, "home")
    assert not errors
    assert any(c.startswith(caption) for c in captions), captions
    assert any("Too few words" in c for c in captions) == (lines < 6)


@USE_DATA_DIR
def test_a_file_of_one_character_of_running_text_is_counted_in_the_singular(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("x" * 65 + "\n")   # a "word" over the 64-character cap: running text only
    _, (errors, captions) = with_data_path(path, "home")
    assert any(c.startswith("x.txt: 66 characters of running text") for c in captions), captions
    path.write_bytes("é".encode("utf-16"))
    _, (errors, captions) = with_data_path(path, "home")
    assert any(c.startswith("x.txt: 1 line") for c in captions), captions   # UTF-16, decoded


@USE_DATA_DIR
def test_an_upload_reopened_from_its_link_shows_the_users_file_name(tmp_path):
    # an upload is kept as uploads/<16 hex of its hash>-<its name>; a link or a reload reopens it by that path
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    path = uploads / "8ffdcc32747ad3f7-my names.txt"
    path.write_text("emma\nolivia\nava\nisabella\nsophia\nmia\n")
    at, (errors, captions) = with_data_path(path, "activations", model="mlp", steps=5)
    assert not errors and any(c.startswith("my names.txt: 6 lines") for c in captions), captions
    assert not any("8ffdcc32747ad3f7" in c for c in captions)
    at.button(key="btn_start").click().run()
    assert run_of(at)["spec"]["data"]["name"] == "my names.txt"   # the Runs page and the run's header say so
    at.button(key="btn_stop").click().run()
    other = tmp_path / "8ffdcc32747ad3f7-notes.txt"   # outside uploads/: a name the user chose
    other.write_text(path.read_text())
    _, (_, captions) = with_data_path(other, "home")
    assert any(c.startswith("8ffdcc32747ad3f7-notes.txt: 6 lines") for c in captions), captions
