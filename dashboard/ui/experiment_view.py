"""
The Experiments page's parts: Start (a coordinator process per experiment, never in the server), the live
view of its trials, and the actions on it (stop, resume, open a trial, evaluate on test once, export).
The page reads the study and the runs file; only the coordinator writes the study (core.experiments).
"""

import io

import pandas as pd
import streamlit as st
import tomllib

from core.experiments import coordinator
from core.experiments import study as studies
from core.experiments.spec import ExperimentError, parse
from core.runs.manager import NoCluster, server_cluster
from dashboard import state
from dashboard.plot import experiments as plots
from dashboard.ui.registry import manager

REFRESH_SECONDS = 2  # trials take tens of seconds: a table read every 2 s is live enough and costs the server little

TEST_WARNING = ("The test split is the final exam: look at it once, for the trial you chose on dev, when the "
                "search is over. Each look that helps you choose leaks the test set into your choices, and then its "
                "number no longer says how the model does on names it has never seen. So it is computed once and "
                "recorded; pressing again shows the recorded number.")


def start(toml_key):
    """Start's callback: check the spec, then start its coordinator in a process of its own."""
    text = st.session_state.get(toml_key, "")
    source = state.data_source()
    try:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ExperimentError(f"the spec is not valid TOML: {e}") from None
        exp = parse(doc, text, source="the spec", data=source.get("path") if source.get("kind") == "file" else None)
        if studies.running(exp.name):
            raise ExperimentError(f"{exp.name} is running already; change its name to start another")
        coordinator.detach(exp, ray=_cluster())
    except ExperimentError as e:
        state.put(state.EXPERIMENT_ERROR, str(e))
        return
    state.put(state.EXPERIMENT_ERROR, None)
    _select(exp.name)


def show_error():
    if state.get(state.EXPERIMENT_ERROR):
        st.error(state.get(state.EXPERIMENT_ERROR), icon=":material/error:")


def _select(name):
    state.put(state.EXPERIMENT, name)
    state.url_set(experiment=name)


def pick():
    _select(st.session_state["exp_pick"])


def current(names):
    """The experiment shown: the URL's (a reload keeps it), else this session's, else the newest."""
    name = state.url_get("experiment", None) or state.get(state.EXPERIMENT)
    if name not in names:
        name = names[0] if names else None
    if name is not None:
        _select(name)
    return name


# -----------------------------------------------------------------------------


@st.fragment(run_every=REFRESH_SECONDS)
def show(name):
    """Everything about the experiment, read afresh every REFRESH_SECONDS (its buttons follow its status too):
    where it stands, the trials, a look inside one, the test split once, the exports."""
    try:
        s = studies.summary(name)
    except ExperimentError as e:  # made this very moment by its coordinator
        st.info(str(e), icon=":material/hourglass_top:")
        return
    _status(name, s)
    if not s["trials"]:
        st.info("Waiting for the first trial to start (a worker loads PyTorch and the data first).",
                icon=":material/hourglass_top:")
        return
    _trials(s)
    _inspect(s)
    _test_once(name, s)
    _exports(name, s)


def _status(name, s):
    spec, rows, best = s["spec"], s["trials"], s["best"]
    done = [r for r in rows if r["state"] != "running"]
    goal = spec.get("goal")
    m = st.columns([1, 1, 1, 1, 1])
    m[0].metric("Status", s["status"])
    m[1].metric("Trials", f"{len(done)} of {spec['trials']}", f"{len(rows) - len(done)} training", delta_color="off")
    m[2].metric("Best dev loss", "-" if best is None else f"{best['dev_loss']:.4f}",
                None if best is None or goal is None else f"{best['dev_loss'] - goal:+.4f} vs goal {goal:g}",
                delta_color="inverse")
    m[3].metric("Test loss (once)", "-" if not s["test"] else f"{s['test']['test_loss']:.4f}")
    if s["status"] == "running":
        m[4].button("Stop", icon=":material/stop:", key="exp_stop", width="stretch", on_click=studies.stop,
                    args=(name,), help="stop the experiment: its trials still training stop too")
    elif s["status"] == "interrupted" or (s["status"] in ("stopped", "failed") and len(rows) < spec["trials"]):
        m[4].button("Resume", icon=":material/play_arrow:", key="exp_resume", width="stretch", on_click=_resume,
                    args=(name,), help="go on with the budget; trials still training are followed again")
    if s["ended"] and s["ended"].get("why"):
        st.warning(f"{name}: {s['ended']['why']}", icon=":material/warning:")
    if s["status"] == "interrupted":
        st.warning("Its coordinator went away before the budget was spent (a restart?). **Resume** goes on where "
                   "it stopped: trials still training are followed again.", icon=":material/restart_alt:")


def _trials(s):
    spec, rows, best = s["spec"], s["trials"], s["best"]
    goal = spec.get("goal")
    keys = list(spec["space"])
    st.dataframe(_table(rows, keys), hide_index=True, width="stretch", height=min(35 * (len(rows) + 1) + 3, 360),
                 column_config={"dev loss": st.column_config.NumberColumn(format="%.4f")})
    st.plotly_chart(plots.by_hyperparameter(rows, keys, best, goal), key="exp_by_param", width="stretch")
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.parallel(rows, keys), key="exp_parallel", width="stretch")
    if best is not None:
        c2.plotly_chart(plots.curves([_curve(f"trial {best['number']}", best["run"])], goal), key="exp_best",
                        width="stretch")
        c2.caption(f"The best trial so far, trial {best['number']}: training loss (faint) and dev loss at each "
                   "checkpoint, the numbers the pruner judged.")
    pruned = [r for r in rows if r["state"] in ("pruned", "failed")]
    if pruned:
        with st.expander(f"Pruned and failed trials ({len(pruned)}) and why"):
            for r in pruned:
                st.markdown(f"**trial {r['number']}** ({r['state']}, {_params(r['params'])}): {r['why']}")


def _table(rows, keys):
    """A row a trial, sorted by dev loss (trials without one last)."""
    df = pd.DataFrame([dict(trial=r["number"], state=r["state"], **{"dev loss": r["dev_loss"]},
                            **{k: r["params"].get(k) for k in keys}, step=r["step"], run=r["run"],
                            backend=r["backend"], node=r["node"]) for r in rows])
    return df.sort_values("dev loss", na_position="last")


def _params(params):
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def _curve(label, run_id):
    db = manager().db
    steps, loss, _ = db.steps_since(run_id)
    return label, steps, loss, db.evals(run_id)


# -----------------------------------------------------------------------------
# actions: stop or resume, open a trial, compare the best two, the test split once, exports


def _inspect(s):
    """Any trial with every panel on Activations & gradients; the best two overlaid."""
    scored = sorted((r for r in s["trials"] if r["dev_loss"] is not None and r["run"]), key=lambda r: r["dev_loss"])
    if not scored:
        return
    finished = [r for r in scored if r["state"] == "finished"]
    pick = st.selectbox("Look inside a trial", [r["number"] for r in scored], key="exp_trial",
                        format_func=lambda n: _label(next(r for r in scored if r["number"] == n)))
    row = next(r for r in scored if r["number"] == pick)
    c1, c2, _ = st.columns([1, 1, 1])
    if c1.button("Open in Activations & gradients", icon=":material/monitoring:", key="exp_open", width="stretch"):
        _open(row["run"])
    if len(finished) >= 2 and c2.button("Compare the best two", icon=":material/compare_arrows:", key="exp_compare",
                                        width="stretch"):
        _open(finished[0]["run"], finished[1]["run"])


def _test_once(name, s):
    if s["test"]:
        t = s["test"]
        st.success(f"Test loss **{t['test_loss']:.4f}** for trial {t['trial']} (dev {t['dev_loss']:.4f}), computed "
                   f"once at {t['computed_at']} UTC and recorded; it is not computed again.", icon=":material/quiz:")
        return
    ready = s["status"] not in ("running", "starting") and s["best"] is not None
    c1, c2 = st.columns([1, 2])
    c2.caption(TEST_WARNING)
    if c1.button("Evaluate the best trial on test, once", icon=":material/quiz:", key="exp_test", disabled=not ready,
                 width="stretch", help=None if ready else "when the experiment has ended and a trial has finished"):
        try:
            studies.evaluate_test(name)
        except ExperimentError as e:
            st.error(str(e))
        else:
            st.rerun(scope="fragment")


def _exports(name, s):
    c1, c2, _ = st.columns([1, 1, 1])
    c1.download_button("Trials table (CSV)", _csv(s["trials"]), f"{name}-trials.csv", "text/csv", key="exp_csv",
                       icon=":material/download:", width="stretch", on_click="ignore")
    running = s["status"] in ("running", "starting")
    study_file = studies.folder(name) / "study.sqlite"
    c2.download_button("Study (SQLite)", b"" if running else study_file.read_bytes(), f"{name}-study.sqlite",
                       disabled=running, key="exp_study", icon=":material/download:", width="stretch",
                       on_click="ignore",
                       help="Optuna's own study file (once the experiment has ended): "
                            f"optuna.load_study(study_name='{name}', storage='sqlite:///{name}-study.sqlite')")


def _label(r):
    return f"trial {r['number']} · {r['state']} · dev {r['dev_loss']:.4f} · {_params(r['params'])}"


def _open(run_id, compare=None):
    """The trial's run on the Activations & gradients page, with every panel (and a second trial overlaid)."""
    spec = manager().db.get_run(run_id)["spec"]
    state.put(state.page_key(state.RUN_ID, "activations"), run_id)
    params = dict(run=run_id, model=spec["model"], preset=spec["preset"])
    if compare:
        params["compare"] = compare
    st.switch_page("views/activations.py", query_params=params)


def _resume(name):
    exp = studies.spec_of(studies.load(name))
    try:
        coordinator.detach(exp, ray=_cluster())
    except ExperimentError as e:
        state.put(state.EXPERIMENT_ERROR, str(e))
        return
    state.put(state.EXPERIMENT_ERROR, None)


def _cluster():
    """The server's Ray cluster, checked now: one that is not there is an error on the page, and nothing starts
    (never the local pool instead). None: the local pool."""
    try:
        return server_cluster()
    except NoCluster as e:
        raise ExperimentError(str(e)) from None


def _csv(rows):
    f = io.StringIO()
    studies.write_csv(rows, f)
    return f.getvalue()
