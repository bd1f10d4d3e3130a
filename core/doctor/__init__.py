"""
The model doctor (issue 19): Karpathy's six most common neural-net mistakes and lecture 3's
under/over-fitting, checked on a model and a batch -- and, through watch(), on the learner's loop.

    from core.doctor import examine
    report = examine(model, X, Y)     # report.checks: [{id, verdict, evidence, fix}], verdict pass|warn|fail|skip

core.doctor.checks: the checks; core.doctor.target: what they run (any model kind); core.doctor.observe:
what watch() sees of the loop; core.doctor.bugs and .variants: the six mistakes planted in our lecture
models; core.doctor.cli: `python -m core doctor`.
"""

import importlib

# the checks need torch (2-4 s to import here): they load on first use, so `python -m core` parses its
# arguments -- the bug names included -- before paying for torch
_CHECKS = ("CHECKS", "Report", "examine")


def __getattr__(name):
    if name in _CHECKS:
        return getattr(importlib.import_module(".checks", __name__), name)
    if name == "DoctorError":
        return importlib.import_module(".target", __name__).DoctorError
    raise AttributeError(f"module 'core.doctor' has no attribute {name!r}")


__all__ = ["CHECKS", "DoctorError", "Report", "examine"]
