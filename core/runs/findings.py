"""
The findings of a recorded run, read from its store: what the CLI's --json prints and what a
script or the model doctor asks for (a page passes what it already holds to the same
core.capture.diagnose.diagnose_records).
"""

from core.capture.diagnose import diagnose_records


def run_findings(store, spec=None, state=None, diverged_at=None, step=None):
    """Findings of the run in `store` at the capture at or before `step` (None: its latest), worst first.
    spec: the run's spec (the model's settings); state/diverged_at: the Run's, when it is at hand."""
    meta = dict(store.meta)
    if diverged_at is not None:
        meta["diverged_at"] = diverged_at
    return diagnose_records(meta, spec, store.captures, store.losses(), store.evals, step=step, state=state)
