"""
The live-run machinery pages share: scenario controls that live in the URL, the
Start / Pause / Step / Stop / Reset buttons, and reading a run from the runs file.
Training happens in a worker process (core.runs.worker); a page only sends commands
and polls what the worker wrote, from one flat fragment.
"""

import bisect
import math
import time
from pathlib import Path

import numpy as np
import streamlit as st

from core.models.presets import MAKEMORE_SEED, PRESETS, get_preset, train_config
from core.runs import strict_json
from core.runs.db import LIVE_STATES
from core.runs.manager import CapacityError
from core.runs.spec import SpecError, check_spec, count_params
from dashboard import state
from dashboard.ui.registry import manager, refusal

VIEWS = Path(__file__).resolve().parent.parent / "views"  # the pages' scripts

# the lecture-4 scenarios a learner picks from, per model (presets hold the numbers)
GAINS = {"5/3": 5 / 3, "1": 1.0, "0.5": 0.5, "3": 3.0}


# -----------------------------------------------------------------------------
# scenario controls -> a job spec


def scenario_controls(models=("mlp", "deep", "wavenet", "gpt"), presets=None):
    """Model, scenario and hyperparameters, read from and written to the URL. Returns (spec, errors).
    presets: the scenarios a page offers, per model (None = all of them)."""
    if not state.presenting():
        return _scenario_fields(models, presets, lambda: st.expander("Hyperparameters", expanded=False))
    # presentation mode: the whole scenario folds into one line, so the charts start above the fold
    # (the status line above the charts names the scenario that runs)
    with st.expander("Scenario and hyperparameters", icon=":material/tune:"):
        return _scenario_fields(models, presets, st.container)


def _scenario_fields(models, presets, hyper_box):
    models = list(models)
    model = state.url_get("model", models[0])
    model = model if model in models else models[0]
    if len(models) > 1:
        c1, c2 = st.columns([1, 2])
        model = c1.selectbox("Model", models, index=models.index(model), key="ctl_model", on_change=_new_scenario)
    else:  # a lecture page has one model: its scenarios are the choice
        c2 = st.container()
    offered = (presets or {}).get(model)
    presets = list(offered or PRESETS[model])
    preset = state.url_get("preset", None)
    if preset not in presets:
        preset = {"mlp": "raw", "deep": "deep-bn", "gpt": "blocks"}.get(model, presets[0])
        preset = preset if preset in presets else presets[0]
    preset = c2.selectbox("Scenario", presets, index=presets.index(preset), key=f"ctl_preset_{model}",
                          help="The lecture's scenarios, one after another.", on_change=_new_scenario)
    p = get_preset(model, preset)
    c2.caption(p.note)
    cfg = train_config(p)
    kw, train = {}, {}
    with hyper_box():
        cols = st.columns(4)
        if model in ("mlp", "deep", "wavenet", "gpt"):
            kw["n_embd"] = _int(cols[0], "n_embd", p.kwargs.get("n_embd", 10), model)
        if model in ("mlp", "deep", "wavenet"):
            kw["n_hidden"] = _int(cols[1], "n_hidden", p.kwargs.get("n_hidden", 100), model)
        if model in ("deep", "gpt"):
            kw["n_layer"] = _int(cols[2], "n_layer", p.kwargs.get("n_layer", 5), model, label="depth (n_layer)")
        if model == "gpt":
            kw["n_head"] = _int(cols[3], "n_head", p.kwargs.get("n_head", 4), model)
            cols = st.columns(4)
            kw["block_size"] = _int(cols[0], "block_size", p.block_size, model, label="block_size (context)")
            kw["dropout"] = _float(cols[1], "dropout", p.kwargs.get("dropout", 0.0), model)
        if model == "deep":
            gains = list(GAINS)
            g0 = state.url_get("gain", None)
            default_gain = {1.0: "1", 5 / 3: "5/3"}.get(p.kwargs.get("gain"), "1")
            g = cols[3].selectbox("gain", gains, index=gains.index(g0 if g0 in gains else default_gain),
                                  key=f"ctl_gain_{preset}", help="Linear weights × gain (5/3 is Kaiming's for tanh)")
            kw["gain"] = GAINS[g]
            state.url_set(gain=g)
            b1, b2 = st.columns(2)
            kw["batchnorm"] = b1.checkbox("BatchNorm", value=state.as_bool(state.url_get("bn", p.kwargs["batchnorm"])),
                                          key=f"ctl_bn_{preset}")
            kw["tanh"] = b2.checkbox("tanh", value=state.as_bool(state.url_get("tanh", p.kwargs["tanh"])),
                                     key=f"ctl_tanh_{preset}")
            state.url_set(bn=int(kw["batchnorm"]), tanh=int(kw["tanh"]))
        cols = st.columns(4)
        train["batch_size"] = _int(cols[0], "batch_size", cfg.batch_size, model, label="batch size")
        train["lr"] = _float(cols[1], "lr", cfg.lr, model, label="learning rate")
        train["lr_decay_step"] = _int(cols[2], "lr_decay_step", cfg.lr_decay_step, model, label="decay at step")
        train["lr_final"] = _float(cols[3], "lr_final", cfg.lr_final, model, label="lr after decay")
        cols = st.columns(4)
        train["steps"] = _int(cols[0], "steps", min(cfg.steps, 200_000), model, label="steps")
        capture = p.train.get("capture_every", _default_capture(model))
        train["capture_every"] = _int(cols[1], "capture_every", capture, model, label="capture every (steps)")
    state.url_set(model=model, preset=preset)
    spec = {"model": model, "preset": preset, "model_kw": kw, "train": train,
            "data": state.get(state.DATA_SOURCE, {"kind": "ssa"}), "device": state.get(state.DEVICE, "cpu")}
    seed = state.get(state.SEED, MAKEMORE_SEED)
    train["seed"] = cfg.seed if seed == MAKEMORE_SEED else seed  # the preset's own (42 WaveNet, 1337 GPT) by default
    return spec, validate(spec)


# the hyperparameter fields; a new scenario starts from its own values, not the last scenario's
HYPER = ("n_embd", "n_hidden", "n_layer", "n_head", "block_size", "dropout", "gain", "bn", "tanh", "batch_size",
         "lr", "lr_decay_step", "lr_final", "steps", "capture_every")


def _new_scenario():
    state.url_set(**dict.fromkeys(HYPER))
    state.forget_widgets("ctl_", keep=("ctl_model", "ctl_preset_"))


def _default_capture(model):
    return {"gpt": 20, "wavenet": 100}.get(model, 100)


def _url_number(name, default):
    """A number from the link; a hand-edited 'nan' or 'abc' falls back to the default, and says so."""
    raw = state.url_get(name, None)
    v = state.url_get(name, None, float)
    if raw is not None and v is None:
        st.warning(f"The link's {name}={raw!r} is not a finite number; using {default:g} instead.",
                   icon=":material/link_off:")
    return default if v is None else v


def _int(col, name, default, model, label=None):
    v = col.number_input(label or name, value=int(_url_number(name, default)), step=1,
                         key=f"ctl_{name}_{model}", format="%d")
    state.url_set(**{name: int(v) if v == v and abs(v) != math.inf else None})
    return v


def _float(col, name, default, model, label=None):
    v = col.number_input(label or name, value=float(_url_number(name, default)),
                         key=f"ctl_{name}_{model}", format="%.4g", step=None)
    state.url_set(**{name: float(v) if v == v and abs(v) != math.inf else None})
    return v


def validate(spec):
    """Every problem with a spec, as messages to show (empty when it can start)."""
    errors = []
    if state.get(state.DATA_ERROR):
        errors.append(f"Dataset: {state.get(state.DATA_ERROR)}")
    src = spec["data"]
    if src.get("words_error") and spec["model"] != "gpt":
        errors.append(src["words_error"])
    try:
        check_spec(spec)
        n = count_params(spec, vocab_size=27)
        spec["_params"] = n
    except SpecError as e:
        errors.append(str(e))
    return errors


# -----------------------------------------------------------------------------
# run controls


# the page a run belongs to, by model (a file in dashboard/views/, without .py)
PAGE_FOR_MODEL = {"bigram-nn": "bigram", "ninja": "ninja", "wavenet": "wavenet", "gpt": "gpt"}


def page_for(spec):
    """Which page shows a run: its model's lecture page when there is one, else Activations & gradients."""
    page = spec.get("page") or PAGE_FOR_MODEL.get(spec.get("model"), "activations")
    return page if (VIEWS / f"{page}.py").exists() else "activations"


def set_number(name, model, value):
    """Set a hyperparameter field from a callback (e.g. the lr finder's suggestion), and the link with it."""
    state.put(f"ctl_{name}_{model}", value)
    state.url_set(**{name: value})


def current_run(slot="run"):
    """This page's run: the URL's ?run= (a reload re-attaches), else the session's for this page.
    A page's second run (lecture 3's lr finder) lives in its own slot, e.g. ?lrf=."""
    run_id = state.url_get(slot, None) or state.get(_slot_key(slot))
    if run_id and manager().db.get_run(run_id) is None:
        return None
    return run_id


def _slot_key(slot):
    return state.page_key(state.RUN_ID if slot == "run" else f"{state.RUN_ID}_{slot}")


def _start(spec, paused=False, slot="run"):
    mgr = manager()
    held = {state.get(_slot_key(s)) for s in state.get(state.RUN_SLOTS, set()) if s != slot}  # this page's other slots
    for r in mgr.db.live_runs():  # one live run per slot; starting on one page stops the session's others
        if (r["session"] == state.session_id() and r["id"] not in held) or r["id"] == current_run(slot):
            mgr.stop(r["id"])
    spec = {k: v for k, v in spec.items() if not k.startswith("_")}
    name = f"{spec['model']}/{spec['preset']}" + (" lr sweep" if spec["train"].get("lre_sweep") else "")
    try:
        run_id = mgr.start(spec, name, session=state.session_id(), paused=paused)
    except CapacityError as e:
        state.put(state.FLASH, str(e))
        return None
    state.put(_slot_key(slot), run_id)
    state.put(state.RUN_SLOTS, state.get(state.RUN_SLOTS, set()) | {slot})
    state.url_set(**{slot: run_id})
    poke(10.0)  # a worker takes a moment to load torch and the data
    return run_id


def start_in_slot(spec, slot):
    """Start a page's second run (the lr finder) without touching its main run."""
    _start(spec, slot=slot)


def _command(cmd):
    run_id = current_run()
    if run_id:
        if not manager().send(run_id, cmd):  # another session's run, or a busy runs file
            state.put(state.FLASH, refusal(run_id))
        poke()


def poke(seconds=3.0):
    """Keep the page ticking a little while a command takes effect in the worker."""
    state.put(state.POKE_UNTIL, time.time() + seconds)


def needs_ticks(d):
    """Refresh every second while a run trains (or a command is on its way); not while paused."""
    if d.state in ("starting", "ready", "running"):
        return True
    return d.live and ((d.row or {}).get("command") is not None or state.get(state.POKE_UNTIL, 0) > time.time())


def keep_alive(runs):
    """A paused run is not refreshed but is still watched: a light heartbeat every 5 s keeps it."""
    live_ids = [d.run_id for d in runs if d.live]
    if not live_ids:
        return

    @st.fragment(run_every=5.0)
    def beat():
        for run_id in live_ids:
            manager().db.heartbeat(run_id)
        if any((manager().db.get_run(i) or {}).get("state") not in LIVE_STATES for i in live_ids):
            st.rerun()  # it ended while paused (its worker was killed): the page says why
    beat()


def watch(run_id, draw, compare_id=None):
    """
    draw(d, o, ticking) inside a fragment that redraws once a second while the run (or the
    compared one) trains, and not at all while it is paused or finished (charts can then be
    zoomed). A watched run gets heartbeats; when it stops needing ticks, one full rerun
    stops the timer. d, o: RunData of the run and of the compared run (or None).
    """
    main = run_data(run_id)
    other = run_data(compare_id) if compare_id else None
    keep_alive([r for r in (main, other) if r is not None])
    ticking = needs_ticks(main) or (other is not None and needs_ticks(other))
    was_paused = main.state == "paused"  # the controls drawn now say Resume

    @st.fragment(run_every=1.0 if ticking else None)
    def frame():
        d = run_data(run_id)
        o = run_data(compare_id) if compare_id else None
        for r in (d, o):
            if r is not None and r.live:
                manager().db.heartbeat(r.run_id)  # a watched run keeps training; an orphaned one stops
        if ticking and not (needs_ticks(d) or (o is not None and needs_ticks(o))):
            st.rerun()  # it paused or ended: a full rerun stops the timer and redraws the still view
        if ticking and (d.state == "paused") != was_paused:
            st.rerun()  # it paused or resumed since the controls were drawn: Pause/Resume follows it
        draw(d, o, ticking)

    frame()
    return ticking


def _step(spec, n):
    run_id = current_run()
    r = manager().db.get_run(run_id) if run_id else None
    if r is None or r["state"] not in LIVE_STATES:
        run_id = _start(spec, paused=True)
    if run_id:
        manager().send(run_id, f"step:{int(n)}")
        poke()


def _stop():
    """Stop answers at once: the worker gets the command, writes its last rows and ends on its own
    (the page ticks until it has); Start waits for it before starting another."""
    run_id = current_run()
    if run_id:
        if not manager().send(run_id, "stop"):  # another session's run, or a busy runs file
            state.put(state.FLASH, refusal(run_id))
        poke(10.0)


def _reset():
    _stop()
    state.put(state.page_key(state.RUN_ID), None)
    state.put(state.page_key(state.COMPARE_ID), None)
    state.url_set(run=None, compare=None)


def show_flash():
    """The message a callback left for this run (e.g. the server is full), shown once."""
    message = state.take(state.FLASH)
    if message:
        st.error(message, icon=":material/block:")


def run_controls(spec, errors):
    """Start, Pause/Resume, Step N, Stop, Reset. Callbacks only send commands: they answer at once."""
    run_id = current_run()
    r = manager().db.get_run(run_id) if run_id else None
    live = r is not None and r["state"] in LIVE_STATES
    for e in errors:
        st.error(e, icon=":material/error:")
    show_flash()
    c = st.columns([1, 1, 1.4, 1, 1])
    c[0].button("Start", type="primary", on_click=_start, args=(spec,), disabled=bool(errors),
                icon=":material/play_arrow:", width="stretch", key="btn_start")
    if live and r["state"] == "paused":
        c[1].button("Resume", on_click=_command, args=("resume",), icon=":material/resume:",
                    width="stretch", key="btn_resume")
    else:
        c[1].button("Pause", on_click=_command, args=("pause",), disabled=not live, icon=":material/pause:",
                    width="stretch", key="btn_pause")
    with c[2]:
        s1, s2 = st.columns([1, 1.3])
        n = s1.number_input("steps", min_value=1, max_value=100_000, value=1, key="step_n",
                            label_visibility="collapsed")
        s2.button(f"Step {n}", on_click=_step, args=(spec, n), disabled=bool(errors) and not live,
                  icon=":material/skip_next:", width="stretch", key="btn_step")
    c[3].button("Stop", on_click=_stop, disabled=not live, icon=":material/stop:", width="stretch",
                key="btn_stop")
    c[4].button("Reset", on_click=_reset, disabled=run_id is None, icon=":material/restart_alt:",
                width="stretch", key="btn_reset")
    return run_id


def stop_until_started(run_id, hint):
    """The page's guard: until there is a run, show how to begin and stop the page here."""
    if run_id is None:
        st.info(hint, icon=":material/school:")
        st.stop()


# -----------------------------------------------------------------------------
# reading a run (incrementally: each tick fetches only the new steps)


class RunData:
    """What a page knows of one run; refresh() pulls new rows from the runs file."""

    def __init__(self, run_id):
        self.run_id = run_id
        self.steps = np.zeros(0, np.int64)
        self.loss = np.zeros(0)
        self.lr = np.zeros(0)
        self.row = None
        self._captures = []  # every recorded Capture, oldest first (unpacked once)

    def refresh(self):
        db = manager().db
        self.row = db.get_run(self.run_id)
        last = int(self.steps[-1]) if len(self.steps) else -1
        s, l, lr = db.steps_since(self.run_id, last)
        if len(s):
            self.steps = np.concatenate([self.steps, s])
            self.loss = np.concatenate([self.loss, l])
            self.lr = np.concatenate([self.lr, lr])
        self._sync_captures(db)
        return self

    @property
    def state(self):
        return self.row["state"] if self.row else "missing"

    @property
    def live(self):
        return self.state in LIVE_STATES

    @property
    def meta(self):
        return self.row["meta"] if self.row else {}

    @property
    def label(self):
        return self.row["name"] if self.row else self.run_id

    def evals(self):
        return manager().db.evals(self.run_id)

    def capture_steps(self):
        return [c.step for c in self._captures]

    def capture_every(self):
        """Steps between two captures: the run's setting, else the gap between its newest captures."""
        every = ((self.row or {}).get("spec") or {}).get("train", {}).get("capture_every")
        if every:
            return int(every)
        steps = self.capture_steps()[-20:]
        return int(np.median(np.diff(steps))) if len(steps) > 2 else None

    def capture(self, step=None):
        """The latest capture, or the one at `step` (the nearest recorded at or before it)."""
        have = self._captures
        if not have:
            return None
        if step is None:
            return have[-1]
        i = bisect.bisect_right([c.step for c in have], step)
        return have[max(i - 1, 0)]

    def captures(self, max_n=400):
        """Recorded captures, oldest first, at most max_n (evenly thinned)."""
        every = max(1, len(self._captures) // max_n)
        return self._captures[::every]

    def _sync_captures(self, db):
        # only captures newer than the last one held are read and unpacked; old ones the worker
        # thinned away are dropped here too
        have = self._captures
        steps = db.capture_steps(self.run_id)
        if steps and (not have or steps[-1] > have[-1].step):
            have.extend(db.captures_after(self.run_id, have[-1].step if have else -1))
        if len(have) > len(steps):
            keep = set(steps)
            self._captures = [c for c in have if c.step in keep]

    def init_loss(self):
        return float(self.loss[0]) if len(self.loss) else self.meta.get("init_loss")


def run_data(run_id):
    """The session's RunData for run_id (one per run, kept between ticks)."""
    cache = state.setdefault(state.RUN_DATA, {})
    if run_id not in cache:
        if len(cache) > 4:
            cache.clear()
        cache[run_id] = RunData(run_id)
    return cache[run_id].refresh()


def export_json(d):
    caps = d.captures(max_n=10_000)
    return strict_json.dumps(dict(run=d.row, steps=d.steps.tolist(), loss=d.loss.tolist(), lr=d.lr.tolist(),
                                  evals=d.evals(), interventions=d.meta.get("interventions", []),
                                  captures=[c.to_dict() for c in caps]))


def checkpoint(run_id):
    """(model, step): the run's model as its worker last saved it (every ~2 s, at pauses and at the end),
    for pages that look inside it -- embeddings, softmax rows, attention. None before the first save."""
    path = manager().db.checkpoint_path(run_id)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    return _load_checkpoint(run_id, mtime)


@st.cache_resource(max_entries=8, show_spinner=False)
def _load_checkpoint(run_id, mtime):
    return manager().db.load_checkpoint(run_id)
