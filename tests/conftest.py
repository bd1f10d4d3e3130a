import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.training.loop import configure_torch
from data import load_words

ROOT = Path(__file__).resolve().parent.parent

# makemore's names.txt and tiny Shakespeare live beside the checkout, for tests only
SHARED = Path(os.environ.get("ZTH_SHARED", ROOT.parent / "shared"))


def shared_file(name):
    path = SHARED / "data" / name
    if not path.exists():  # a gap, not a pass: fail loudly rather than skip
        pytest.fail(f"test data {path} is missing (set ZTH_SHARED to the folder holding data/{name})")
    return path


@pytest.fixture(scope="session")
def names_path():
    return shared_file("names.txt")


@pytest.fixture(scope="session")
def shakespeare_path():
    return shared_file("tinyshakespeare.txt")


@pytest.fixture(scope="session")
def names_words(names_path):
    return load_words(names_path)


@pytest.fixture(autouse=True, scope="session")
def session_data_dir(tmp_path_factory):
    """Every run a test trains lands in a runs file of the test session's own, never the user's."""
    with data_dir_env(tmp_path_factory.mktemp("zth-session")) as d:
        yield d


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    configure_torch(1)


@pytest.fixture(scope="session")
def ray_head():
    """One real local Ray head for the test session (tests/rayhead.py), started for the first test that asks."""
    from rayhead import local_head
    with local_head() as head:
        yield head


@pytest.fixture(autouse=True)
def no_actor_left(request):
    """A test on the session's Ray head leaves it as it found it: every actor of its runs gone (a leaked one
    holds a CPU, and the next test's runs wait for it)."""
    yield
    if "ray_head" not in request.fixturenames:
        return
    from rayhead import cpus
    address = request.getfixturevalue("ray_head")["address"]
    t0 = time.time()
    while (left := cpus(address))[0] < left[1] and time.time() - t0 < 30:
        time.sleep(1)
    assert left[0] == left[1], f"{left[1] - left[0]:g} CPUs of the Ray head still held 30 s after the test"


@pytest.fixture(scope="session")
def screenshot_dir():
    """Browser tests save screenshots here (ignored by git) for a person to look at."""
    d = ROOT / "screenshots"
    d.mkdir(exist_ok=True)
    return d


def wait_for(pred, timeout=10.0, every=0.05):
    """pred()'s first truthy value within `timeout` seconds; AssertionError when none came."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


@contextmanager
def data_dir_env(path):
    """Point ZTH_DATA_DIR (the runs file, uploads) at a test's own folder, and put it back after."""
    old = os.environ.get("ZTH_DATA_DIR")
    os.environ["ZTH_DATA_DIR"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("ZTH_DATA_DIR", None)
        else:
            os.environ["ZTH_DATA_DIR"] = old


@pytest.fixture(scope="module")
def app_data_dir(tmp_path_factory):
    """Each test module gets its own runs file; its workers are stopped at the end."""
    with data_dir_env(tmp_path_factory.mktemp("zth-data")) as d:
        yield d
        reg = sys.modules.get("dashboard.ui.registry")
        if reg is not None:  # stop this module's workers; the next module gets a fresh manager
            reg.manager().stop_all()
            reg.manager.clear()
