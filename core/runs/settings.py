"""
A server's settings for runs, read from the environment when asked (a test or a shell may change them
between two runs). One home, so the pages, the CLI and the workers agree on every number.

    ZTH_MAX_RUNS        runs training at once on this server (default: half its cores, at least 2; with
                        ZTH_RAY_ADDRESS, 8 per core: the runs train on the cluster, the server relays,
                        and those that still train here -- micrograd's -- keep the half-the-cores cap)
    ZTH_ORPHAN_SECONDS  a page's run that no page has watched this long stops itself (default 30)
    ZTH_KEEP_RUNS       the runs file keeps the newest this many runs (default 1000)...
    ZTH_KEEP_DAYS       ...and none older than this many days (default 365); 0 turns either off
    ZTH_RUNS_MB         a cap on the runs file's size in MB (default 0: none, only the disk's own)
    ZTH_BUSY_SECONDS    a worker waits this long for a runs file another program keeps locked (default 300)
    ZTH_TEACHER         1: teacher mode, every page may stop and delete every run (default 0)
    ZTH_RAY_ADDRESS     HOST:PORT of a Ray cluster: runs train there, this server only relays and draws
                        (default: none, runs train on this machine)
"""

import math
import os


def _number(name, default, integer=True, least=0):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = int(raw) if integer else float(raw)
    except ValueError:
        v = None
    if v is None or not math.isfinite(v) or v < least:
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{name} must be {kind} >= {least:g} (got {raw!r}).")
    return v


def cores():
    """The cores this process may use (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 2


RELAYS_PER_CORE = 8  # runs on a Ray cluster: each one's relay here uses ~3% of a core (bench/bench_ray_runs.py)


def max_runs():
    """(cap, why): how many runs may train at once, and a phrase saying where the number comes from.
    A worker trains on one thread; half the cores leaves the other half to the server and its pages. With
    ZTH_RAY_ADDRESS the runs train on the cluster and the server only relays: more of them fit."""
    if os.environ.get("ZTH_MAX_RUNS", "").strip():
        return _number("ZTH_MAX_RUNS", 2, least=1), "set by ZTH_MAX_RUNS"
    n = cores()
    if ray_address():
        return (RELAYS_PER_CORE * n, f"{RELAYS_PER_CORE} per core of this server's {n}: its runs train on the Ray "
                                     "cluster and it only relays them; ZTH_MAX_RUNS changes it")
    return _half(n)


def local_max_runs():
    """(cap, why) for the runs that train on this machine although the server sends its runs to a Ray cluster
    (micrograd's, the CLI's, notebooks'): the cap of a server without one. None when max_runs() already is that
    cap (no cluster, or ZTH_MAX_RUNS set: the teacher's number covers every run)."""
    if not ray_address() or os.environ.get("ZTH_MAX_RUNS", "").strip():
        return None
    cap, why = _half(cores())
    return cap, why.replace("at least 2;", "at least 2, for the runs that train here beside the cluster's;")


def _half(n):
    return max(2, n // 2), f"half of this machine's {n} cores, at least 2; ZTH_MAX_RUNS changes it"


def orphan_seconds():
    return _number("ZTH_ORPHAN_SECONDS", 30.0, integer=False, least=1)


def keep_runs():
    return _number("ZTH_KEEP_RUNS", 1000)


def keep_days():
    return _number("ZTH_KEEP_DAYS", 365.0, integer=False)


def runs_file_mb():
    return _number("ZTH_RUNS_MB", 0.0, integer=False)


def busy_seconds():
    return _number("ZTH_BUSY_SECONDS", 300.0, integer=False)


def teacher_mode():
    return os.environ.get("ZTH_TEACHER", "").strip().lower() in ("1", "true", "yes", "on")


def ray_address():
    """The Ray cluster the server's runs (and experiments' trials) train on; None: this machine."""
    return os.environ.get("ZTH_RAY_ADDRESS", "").strip() or None
