"""
The one place that touches st.session_state and st.query_params. Settings that
make a demo reproducible live in the URL (a link reopens the same scenario and
run); everything else lives in the session.
"""

import hashlib
import math
import uuid

import streamlit as st

# session keys
DATA_SOURCE = "data_source"     # {"kind": "ssa"} | {"kind": "file", "path": ..., "name": ...}
DATA_ERROR = "data_error"       # the data layer's message for a rejected file, or None
SEED = "seed"
DEVICE = "device"
RUN_ID = "run_id"               # this session's current run on a page (one slot per page, see page_key)
COMPARE_ID = "compare_id"       # the run overlaid on it (also per page)
PAGE = "page"                   # the file name (no .py) of the page being shown (set by app.py)
SESSION_ID = "session_id"
RUN_SLOTS = "run_slots"         # the run slots this session has used (see live.current_run)
RUN_DATA = "run_data"           # run id -> live.RunData, kept between ticks so each reads only new rows
FLASH = "flash"                 # a message a callback leaves for the next run to show (e.g. the server is full)
POKE_UNTIL = "poke_until"       # keep refreshing until this time: a command or a new worker takes a moment
PRESENT = "present_toggle"      # presentation mode (the sidebar's toggle; ?present=1 in the URL)
EXPERIMENT = "experiment"        # the experiment the Experiments page shows (also ?experiment= in the URL)
EXPERIMENT_ERROR = "experiment_error"  # why Start refused the spec, for the next run of the page to show


def get(key, default=None):
    return st.session_state.get(key, default)


def data_source():
    """The sidebar's dataset (a copy): {"kind": "ssa"} until one is chosen."""
    return dict(get(DATA_SOURCE) or {"kind": "ssa"})


def put(key, value):
    st.session_state[key] = value


def setdefault(key, default):
    return st.session_state.setdefault(key, default)


def has(key):
    return key in st.session_state


def take(key):
    """The value under key, removed: a message shown once."""
    return st.session_state.pop(key, None)


def page_key(key, page=None):
    """A session key scoped to one page: each training page keeps its own current run."""
    return f"{key}:{get(PAGE, '') if page is None else page}"


def forget_widgets(prefix, keep=()):
    """Drop the state of widgets whose key starts with prefix (not those starting with one of keep):
    on the next run they start again from the value their page gives them."""
    for k in [k for k in st.session_state if str(k).startswith(prefix) and not str(k).startswith(tuple(keep))]:
        del st.session_state[k]


def session_id():
    """Who is at this page, for owning runs: the browser, by a hash of the XSRF cookie Streamlit gives it (it
    survives a reload, so a learner who reloads keeps Stop on their own run; another browser has another);
    without the cookie (AppTest) this session alone."""
    sid = get(SESSION_ID)
    if sid is None:
        token = _browser_token(st.context.cookies.get(BROWSER_COOKIE))
        sid = hashlib.sha256(token).hexdigest()[:12] if token else uuid.uuid4().hex[:12]
        put(SESSION_ID, sid)
    return sid


BROWSER_COOKIE = "_streamlit_xsrf"  # set once per browser by Streamlit's server (XSRF protection is on by default)


def _browser_token(cookie):
    """The browser's XSRF token from Tornado's cookie "2|mask|masked token|time": the server re-masks it on
    every page load (against BREACH), so the token itself, unmasked, is what stays the same."""
    try:
        version, mask, masked, _ = (cookie or "").split("|")
        mask, masked = bytes.fromhex(mask), bytes.fromhex(masked)
    except ValueError:
        return None
    return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)) if version == "2" and mask else None


# --- the URL ---------------------------------------------------------------------

def url_get(name, default, cast=str):
    """A query parameter, cast; the default when missing or unreadable (a hand-edited link never crashes)."""
    raw = st.query_params.get(name)
    if raw is None:
        return default
    try:
        v = cast(raw)
    except (TypeError, ValueError):
        return default
    if isinstance(v, float) and not math.isfinite(v):
        return default
    return v


def url_set(**kw):
    for k, v in kw.items():
        if v is None:
            st.query_params.pop(k, None)
        else:
            s = f"{v:g}" if isinstance(v, float) else str(v)
            if st.query_params.get(k) != s:
                st.query_params[k] = s


def as_bool(s):
    return str(s).lower() in ("1", "true", "yes", "on")


# --- presentation mode -------------------------------------------------------------

def sync_present():
    """Presentation mode from the URL, before the sidebar's toggle is drawn: a link's ?present= wins over
    the session (a shared link opens as it was sent); the session keeps it across pages, which drop the URL."""
    if "present" in st.query_params:
        st.session_state[PRESENT] = as_bool(st.query_params["present"])
    return presenting()


def presenting():
    """Presentation mode: big labels and little chrome, for a projector."""
    return bool(st.session_state.get(PRESENT, False))


def present_changed():
    """The toggle's callback: the URL follows it, so a copied link keeps the mode."""
    url_set(present=1 if st.session_state.get(PRESENT) else None)
