"""
The findings of a recorded run, read from its store: what the CLI's --json prints and what a
script or the model doctor asks for. (A page assembles the same inputs from what it already
holds and calls core.capture.diagnose itself.)
"""

from core.capture.diagnose import WINDOW, Subject, diagnose


def run_findings(store, spec=None, state=None, diverged_at=None, step=None):
    """Findings of the run in `store` at the capture at or before `step` (None: its latest), worst first.
    spec: the run's spec (the model's settings); state/diverged_at: the Run's, when it is at hand."""
    meta = store.meta
    caps = store.captures
    if step is not None:
        caps = [c for c in caps if c.step <= step]
    steps, loss, lr = store.losses()
    if step is not None:
        keep = steps <= max(step, caps[-1].step if caps else step)
        steps, loss, lr = steps[keep], loss[keep], lr[keep]
    evals = [e for e in store.evals if step is None or e[0] <= step]
    return diagnose(Subject.of(meta, spec), init_loss=meta.get("init_loss"), capture=caps[-1] if caps else None,
                    recent=caps[-WINDOW:], losses=(steps, loss, lr), evals=evals,
                    state=state or meta.get("state"), diverged_at=diverged_at or meta.get("diverged_at"),
                    sampled_in_train_mode=(meta.get("samples") or {}).get("mode") == "train")
