"""
Driving the dashboard headless with AppTest: real scripts, real worker processes,
real training (tiny runs). AppTest never fires run_every by itself, so a tick is
another .run(). A test module marks itself with USE_DATA_DIR to get its own runs file
(the app_data_dir fixture in conftest.py).
"""

import base64
import sys
import time

import numpy as np
import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

APP = str(ROOT / "dashboard" / "app.py")
USE_DATA_DIR = pytest.mark.usefixtures("app_data_dir")


def page(name="activations", **params):
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    if name != "home":
        at.switch_page(f"views/{name}.py")
        at.run()
    assert not at.exception, at.exception
    return at


def status(at):
    return next((m.value for m in at.markdown if "` · step **" in m.value), "")


def tick_until(at, pred, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        time.sleep(0.3)
        at.run()
        assert not at.exception, at.exception
        if pred(at):
            return at
    raise AssertionError(f"timed out; status: {status(at)}; errors: {[e.value for e in at.error]}")


def manager():
    return sys.modules["dashboard.ui.registry"].manager()


def run_of(at):
    return manager().db.get_run(at.query_params["run"][0] if isinstance(at.query_params["run"], list)
                                else at.query_params["run"])


def with_data_path(path, name="activations", **params):
    """Choose a dataset path in the sidebar (on the home page: AppTest drops the entry script's
    sidebar after switch_page, a browser does not), then open the page `name`."""
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = str(v)
    # through session state, before the first run: AppTest loses the entry script's sidebar on reruns
    at.session_state["data_how"] = "A file on this machine"
    at.session_state["data_path"] = str(path)
    at.run()
    sidebar = [e.value for e in at.sidebar.error], [c.value for c in at.sidebar.caption]
    at.switch_page(f"views/{name}.py")
    at.run()
    assert not at.exception, at.exception
    return at, sidebar


def values(v):
    """A plotly array from a chart's JSON: a list, or numpy's base64 form {'dtype', 'bdata'}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)
