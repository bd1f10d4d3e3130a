"""
The recorder's compiled path: core/_capture.cpp, built with torch's C++ extension tools
(g++ and ninja) the first time it is asked for, and core.kernels' numba code as C
function pointers that the C++ side calls, on the training thread or on a worker
thread of its own that never takes the GIL. core.capture.CompiledRecorder drives it;
where it cannot be built (no compiler) the Python recorder does the same work.

    compiled.steps_module(wait=False)  # the built module, or None (a build starts in the background)

ZTH_COMPILED=0 turns the compiled path off.
"""

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from numba import carray, cfunc, njit, types

from . import kernels

_P = types.CPointer
_i64, _f32, _f64, _b = types.int64, types.float32, types.float64, types.boolean


@njit(nogil=True, cache=True)
def _total(sizes, w):
    """How many values w parameters of these sizes (a C array) hold."""
    n = 0
    for q in range(w):
        n += sizes[q]
    return n


@cfunc(types.void(_P(_i64), _P(_i64), _i64, _P(_b), _P(_b), _P(_f32), _P(_f32), _P(types.int32), _i64, _P(_f64),
                  _P(_f32)), cache=True)
def _summarize(addrs, sizes, k, tanh, relu, thr, edges, counts, bins2, stats, used):
    kernels.summarize(carray(addrs, (k,)), carray(sizes, (k,)), carray(tanh, (k,)), carray(relu, (k,)),
                      carray(thr, (k,)), carray(edges, (k, 2)), carray(counts, (k, bins2)), carray(stats, (k, 6)),
                      carray(used, (k, 2)))


@cfunc(types.void(_P(_i64), _P(_i64), _P(_i64), _i64, _P(_f32), _P(_f64)), cache=True)
def _update_in_place(addrs, sizes, starts, w, theta, out):
    n = _total(sizes, w)
    kernels.update_stds_in_place(carray(addrs, (w,)), carray(sizes, (w,)), carray(starts, (w,)), carray(theta, (n,)),
                                 carray(out, (w, 2)))


@cfunc(types.void(_P(_i64), _P(_i64), _P(_i64), _i64, _P(_f32)), cache=True)
def _copy_params(addrs, sizes, starts, w, theta):
    n = _total(sizes, w)
    kernels.copy_params(carray(addrs, (w,)), carray(sizes, (w,)), carray(starts, (w,)), carray(theta, (n,)))


@cfunc(types.void(_P(_f32), _P(_f32), _P(_i64), _P(_i64), _i64, _P(_f64)), cache=True)
def _update_flat(after, before, starts, sizes, w, out):
    n = _total(sizes, w)
    kernels.update_stds(carray(after, (n,)), carray(before, (n,)), carray(starts, (w,)), carray(sizes, (w,)),
                        carray(out, (w, 2)))


@cfunc(types.void(_P(_f64), _i64, _P(_b), _P(_f64), _P(_i64), _i64, _P(_f32), _P(_f32)), cache=True)
def _finish(stats, k, tanh, std, wgrad, w, out_stats, wratio):
    kernels.finish(carray(stats, (k, 6)), carray(tanh, (k,)), carray(std, (w, 2)), carray(wgrad, (w,)),
                   carray(out_stats, (k, 6)), carray(wratio, (w, 3)))


# in the order core/_capture.cpp's Steps takes them
KERNELS = tuple(f.address for f in (_summarize, _update_in_place, _copy_params, _update_flat, _finish))

SOURCE = Path(__file__).with_name("_capture.cpp")
_lock = threading.Lock()
_state = {"module": None, "error": None, "thread": None}


def enabled():
    return os.environ.get("ZTH_COMPILED", "1") != "0"


def build_dir():
    """Where the build lives: one directory per source, torch and Python version (ZTH_CACHE_DIR, default
    ~/.cache/zero-to-hero-lab), so a changed source is a new build, never a stale one."""
    import torch
    key = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode() + sys.version.encode()).hexdigest()[:16]
    root = Path(os.environ.get("ZTH_CACHE_DIR") or Path.home() / ".cache" / "zero-to-hero-lab")
    return root / f"capture-{key}"


def _import_built():
    """The built module, imported from its file: no compiler, no ninja, no build lock needed."""
    import importlib.util

    import torch  # noqa: F401 (the module links against torch's libraries: loaded first)
    spec = importlib.util.spec_from_file_location("zth_capture", build_dir() / "zth_capture.so")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile():
    """Build (or find up to date) the module with torch's tools: only ever in `python -m core.compiled`."""
    import time

    from torch.utils.cpp_extension import load
    d = build_dir()
    d.mkdir(parents=True, exist_ok=True)
    lock = d / "lock"  # torch's build lock: left behind by a killed build, it would stall every later one
    if lock.exists() and time.time() - lock.stat().st_mtime > 600:
        lock.unlink(missing_ok=True)
    return load("zth_capture", [str(SOURCE)], build_directory=str(d), extra_cflags=["-O2"], verbose=False)


def _reason(text):
    """The line of a failed build's output that says why (the first error), else its last line."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        low = line.lower()
        if "error" in low or "not found" in low or "no such file" in low:
            return line
    return lines[-1] if lines else "the build failed"


def _build():
    # compiled in a process of its own, in a session of its own: a build outlives a CLI run that exits or
    # is interrupted meanwhile; the venv's own ninja is found even when the venv is not activated
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    try:
        done = subprocess.run([sys.executable, "-m", "core.compiled"], cwd=SOURCE.parent.parent, env=env,
                              capture_output=True, text=True, timeout=900, start_new_session=True)
        if done.returncode != 0:
            raise RuntimeError(_reason(done.stderr + "\n" + done.stdout))
        module = _import_built()
    except Exception as e:  # no compiler, no ninja, no headers: the Python recorder does the work
        with _lock:
            _state["error"] = f"{type(e).__name__}: {e}".strip()[:500]
        return
    with _lock:
        _state["module"] = module


def steps_module(wait=False):
    """The built C++ module, or None: not built yet (a build is started in the background unless `wait`,
    which waits for it: about a minute the first time on a machine), failed, or turned off."""
    if not enabled():
        return None
    with _lock:
        if _state["module"] is not None or _state["error"] is not None:
            return _state["module"]
        thread = _state["thread"]
        if thread is None:
            if (build_dir() / "zth_capture.so").exists():  # built before: import it (milliseconds)
                try:
                    _state["module"] = _import_built()
                    return _state["module"]
                except Exception:  # half-written by a build going on now, say: wait for that one
                    pass
            thread = _state["thread"] = threading.Thread(target=_build, name="zth-build-capture", daemon=True)
            thread.start()
    if wait:
        thread.join()
    return _state["module"]


def build_error():
    """Why the compiled path is not there (None if it is, or has not been tried)."""
    return _state["error"]


if __name__ == "__main__":  # the build (see _build)
    print(_compile().__file__)
