"""
A learner's own script trains lecture 4's deep stack with `watch` while the dashboard is open, in a real
browser: the run appears on the Runs page, its Activations & gradients view refreshes as the script
trains, and the page's Pause holds the script's loop, Resume lets it go on, Stop ends it with Stopped.
"""

import os
import re
import subprocess
import sys
import threading
import time

import pytest
from browser import ROOT, chromium_page, need_browser, no_exception_on_page, streamlit_server, wait_idle

from core.runs.db import RunDB

pytestmark = pytest.mark.browser

SCRIPT = '''
import sys, time
import torch
import torch.nn.functional as F
import data
from core.models.build import build_model
from core.models.presets import get_preset
from core.watch import Stopped, watch

torch.set_num_threads(1)
ds = data.WordsDataset(data.default_words(), 3)
model, g = build_model(get_preset("deep", "deep-bn"), ds.vocab_size, 2147483647)
C, layers, parameters = model.C, [l for _, l in model.layers], model.parameters()
lab = watch(layers, parameters=parameters, name="my script")
print("run", lab.run_id, flush=True)
last = time.monotonic()
try:
    for i in range(10**7):
        ix = torch.randint(0, ds.Xtr.shape[0], (32,), generator=g)
        emb = C[ds.Xtr[ix]]
        x = emb.view(emb.shape[0], -1)
        for layer in layers:
            x = layer(x)
        loss = F.cross_entropy(x, ds.Ytr[ix])
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -0.1 * p.grad
        lab.step(loss)
        if time.monotonic() - last > 0.5:
            print("step", lab.steps, flush=True)
            last = time.monotonic()
except Stopped as e:
    print("stopped:", e, flush=True)
'''


class Script:
    """The learner's script in its own process; its stdout lines are read as they come."""

    def __init__(self, tmp_path):
        path = tmp_path / "my_script.py"
        path.write_text(SCRIPT)
        env = {**os.environ, "ZTH_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
        self.p = subprocess.Popen([sys.executable, "-u", str(path)], cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    def steps(self):
        """The last step count the script printed (0 before any)."""
        return next((int(x.split()[1]) for x in reversed(self.lines) if x.startswith("step ")), 0)

    def wait(self, pred, timeout, what):
        t0 = time.time()
        while not pred():
            assert self.p.poll() is None or pred(), f"the script ended: {self.lines[-20:]}"
            assert time.time() - t0 < timeout, f"timed out waiting for {what}; the script said {self.lines[-20:]}"
            time.sleep(0.2)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def step_shown(page):
    """The step on the run's status line ("· step **1,234**")."""
    text = page.get_by_text(re.compile(r"your own code \(script on ")).first.inner_text(timeout=30_000)
    return int(re.search(r"step ([0-9,]+)", text).group(1).replace(",", ""))


def test_a_script_watched_from_the_runs_page_is_paused_and_resumed_and_stopped_by_it(tmp_path):
    need_browser()
    script = None
    with streamlit_server(tmp_path) as url, chromium_page() as (page, errors):
        try:
            script = Script(tmp_path)
            script.wait(lambda: script.steps() > 0, 120, "the script's first steps")
            run_id = next(x.split()[1] for x in script.lines if x.startswith("run "))
            db = RunDB(path=tmp_path / "runs.sqlite")
            script.wait(lambda: db.capture_steps(run_id), 60, "the run's first capture")

            page.goto(f"{url}/runs")
            wait_idle(page, 60)
            # listed (the table is a canvas; its cells are hidden to a locator) and picked: the only run
            page.locator("[data-testid='glide-cell-1-0']", has_text="my script").wait_for(state="attached",
                                                                                          timeout=120_000)
            open_button = page.locator("[data-testid='stBaseButton-secondary']", has_text="Open")
            open_button.wait_for(timeout=60_000)  # Run: the only run, already picked
            no_exception_on_page(page)
            open_button.click()

            # the Activations & gradients view, attached to the script's run, refreshing as it trains
            page.wait_for_url(re.compile(rf"run={run_id}"), timeout=30_000)
            page.get_by_text(re.compile(rf"your own code \(script on .+, pid {script.p.pid}\)")).first \
                .wait_for(timeout=60_000)
            wait_idle(page, 60)
            first = step_shown(page)
            t0 = time.time()
            while step_shown(page) <= first:
                assert time.time() - t0 < 60, f"the status line stayed at step {first}"
                time.sleep(0.5)
            no_exception_on_page(page)

            # Pause on the page holds the script's loop
            page.get_by_role("button", name="Pause").click()
            script.wait(lambda: db.get_run(run_id)["state"] == "paused", 30, "the run to pause")
            time.sleep(1.0)  # the last lines printed before the pause came through
            held, held_db = script.steps(), db.get_run(run_id)["step"]
            time.sleep(2.5)
            assert script.steps() == held and db.get_run(run_id)["step"] == held_db and script.p.poll() is None
            page.get_by_role("button", name="Resume").wait_for(timeout=30_000)
            no_exception_on_page(page)

            # Resume lets it go on
            wait_idle(page, 60)
            page.get_by_role("button", name="Resume").click()
            script.wait(lambda: script.steps() > held, 60, "the script to train again after Resume")
            assert db.get_run(run_id)["state"] == "running"

            # Stop ends it: the learner's loop gets Stopped
            wait_idle(page, 60)
            page.get_by_role("button", name="Stop").click()
            script.p.wait(60)
            script._reader.join(10)
            assert any(x.startswith("stopped:") and "stopped from the dashboard" in x for x in script.lines), \
                script.lines[-20:]
            assert db.get_run(run_id)["state"] == "stopped"
            no_exception_on_page(page)
            assert errors == []
        finally:
            if script is not None:
                script.kill()
