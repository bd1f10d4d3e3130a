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


def statistics(cap):
    """A capture's numbers as `train --json` and `runs show --json` print them: each activation layer in forward
    order (as lecture 4's cells print them) and each weight."""
    if cap is None:
        return dict(activations=[], weights=[])
    return dict(activations=[dict(layer=a["layer"], kind=a["kind"], mean=a["mean"], std=a["std"],
                                  saturated_pct=a["saturated_pct"], grad_std=a["grad_std"])
                             for a in cap.layer_stats()],
                weights=[dict(name=w["name"], shape=w["shape"], grad_data_ratio=w["grad_data_ratio"],
                              update_data_log10=w["update_data_log10"]) for w in cap.weight_stats()])
