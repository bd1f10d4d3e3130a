"""
The Mistakes page headless (AppTest, real workers): each of the six planted bugs trains next to the healthy
model from the same seed, and its symptom shows in what the page reads -- the losses, the samples, the
gradients. The oracles are the mistakes' own arithmetic (a softmax fed to cross_entropy cannot go below
ln(26 + e) - 1) and the healthy twin.
"""

import math
import time

import numpy as np
import pytest
from apptest import USE_DATA_DIR, manager, page

from core.doctor.bugs import BUGS

pytestmark = USE_DATA_DIR
STEPS = 600


def train_pair(bug):
    at = page("mistakes", bug=bug)
    at.number_input(key="mk_steps").set_value(STEPS).run()
    at.button(key="mk_start").click().run()
    assert not at.exception, at.exception
    ids = at.session_state["mk_runs"]
    from dashboard.ui import doctor_view
    for proc in doctor_view._asked().values():  # the doctor's own process: not this test's business
        proc.terminate()
    t0 = time.time()
    while time.time() - t0 < 240:
        rows = [manager().db.get_run(i) for i in ids]
        if all(r["state"] not in ("starting", "ready", "running") for r in rows):
            break
        time.sleep(0.5)
        at.run()  # a tick of the page: it watches the pair (an unwatched run stops itself)
    at.run()  # the page draws the finished pair
    assert not at.exception, at.exception
    assert [r["state"] for r in rows] == ["finished", "finished"], [r["meta"].get("message") for r in rows]
    losses = [np.asarray(manager().db.steps_since(i)[1]) for i in ids]
    assert rows[0]["spec"]["train"]["seed"] == rows[1]["spec"]["train"]["seed"]
    if bug in ("no-zero-grad", "eval-mode", "bias-before-bn"):  # a forward unchanged at init: the same first loss
        assert losses[0][0] == losses[1][0]
    return at, rows, losses


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_bug_shows_its_symptom_beside_the_healthy_model(bug):
    at, (sick, healthy), (ls, lh) = train_pair(bug)
    tail = slice(-100, None)
    if bug == "no-zero-grad":  # the gradients pile up: the loss climbs far above a blank model's
        assert ls.max() > 10 and lh[tail].mean() < math.log(27)
    elif bug == "softmax-loss":  # cross_entropy of probabilities has a floor: ln(V - 1 + e) - 1
        assert ls.min() > math.log(26 + math.e) - 1 - 1e-4 and lh.min() < ls.min()
    elif bug == "no-overfit":  # labels reshuffled every step: nothing beyond the letters' frequencies
        assert ls[tail].mean() > lh[tail].mean() + 0.2
    elif bug == "eval-mode":  # sampling one name in 'eval' mode still normalizes it by itself
        assert sick["meta"]["samples"]["error"] and not sick["meta"]["samples"]["words"]
        assert len(healthy["meta"]["samples"]["words"]) == 10
    elif bug == "bias-before-bn":  # b1's gradient is zero: the page's table of gradient stds shows it
        table = at.dataframe[-1].value.set_index("parameter")
        assert float(table.loc["b1", "with the bug"]) < 1e-6 * float(table.loc["W1", "with the bug"])
        assert table.loc["b1", "healthy"] == "(none)"
    elif bug == "view-permute":  # examples built from other examples' characters: worse on unseen data
        assert sick["meta"]["final"]["val"] > healthy["meta"]["final"]["val"] + 0.1
    names = [m.value for m in at.markdown if "` · step **" in m.value]
    assert any(f"bug {bug}" in n for n in names) and any("healthy" in n for n in names)
