import pandas as pd
import streamlit as st

from core.runs import export, liveness, settings, storage
from core.runs.db import LIVE_STATES
from core.runs.manager import owner
from dashboard import state
from dashboard.ui import live
from dashboard.ui.registry import NOT_YOURS, manager, may_control

st.title("Runs")
st.caption("Every run this server has trained, kept on disk: reopen one on its page, compare two, export, delete.")

mgr = manager()
mgr.reap()  # a run whose worker is gone shows as ended, with its cause, never as running
db = mgr.db
if db.notice:
    st.warning(db.notice, icon=":material/healing:")
damaged = storage.damaged_files(db.path)
if damaged:
    st.warning("Damaged runs files, moved aside when found and kept for you (`sqlite3 FILE .recover` may save "
               "their rows): " + ", ".join(f"`{f.name}` ({storage.mb(f.stat().st_size)})" for f in damaged),
               icon=":material/folder_off:")
keep = f"the newest {settings.keep_runs():,} runs" if settings.keep_runs() else "every run"  # 0: no limit
days = f"none older than {settings.keep_days():g} days" if settings.keep_days() else "no age limit"
st.caption(f"Runs file {storage.mb(storage.file_size(db.path))} · **{storage.mb(storage.free_space(db.path))} free** "
           f"on its disk · keeps {keep}, {days} (ZTH_KEEP_RUNS, ZTH_KEEP_DAYS) · {mgr.max_live} train at once "
           f"({mgr.cap_note}).")
st.caption("**Teacher mode** (ZTH_TEACHER=1): every session may stop and delete every run." if settings.teacher_mode()
           else "A run started on a page belongs to the browser that started it (a reload keeps it): other browsers "
                "can open, compare and export it, not stop or delete it. Runs from the CLI or a notebook belong to "
                "no page. A server in teacher mode (ZTH_TEACHER=1) lets every session stop and delete every run.")

runs = db.list_runs()
if not runs:
    st.info("No runs yet. Start one on the **Activations & gradients** page.", icon=":material/info:")
    st.stop()


def _where(r):
    """Where the run trains: this server's worker, a Ray node, the CLI, the learner's notebook or script."""
    src = liveness.source(r)
    return f"Ray node {r['meta']['node']}" if src == "ray" and r["meta"].get("node") else \
        {"worker": "this server", "cli": "python -m core train"}.get(src, src)


rows = [dict(id=r["id"], name=r["name"], state=r["state"], step=r["step"],
             params=r["meta"].get("params"), first_loss=r["meta"].get("init_loss"),
             train=(r["meta"].get("final") or {}).get("train"), val=(r["meta"].get("final") or {}).get("val"),
             data=("your own code" if r["spec"].get("watch") else r["spec"].get("data", {}).get("name", "SSA names")),
             trains=_where(r), owner=owner(r, state.session_id()),
             started=pd.Timestamp(r["created"], unit="s").strftime("%Y-%m-%d %H:%M")) for r in runs]
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
             column_config={"train": st.column_config.NumberColumn(format="%.4f"),
                            "val": st.column_config.NumberColumn(format="%.4f"),
                            "first_loss": st.column_config.NumberColumn(format="%.4f")})

ids = [r["id"] for r in runs]
names = {r["id"]: f"{r['name']} · {r['state']} · {r['id']}" for r in runs}
c1, c2 = st.columns(2)
pick = c1.selectbox("Run", ids, format_func=names.get, key="runs_pick")
other = c2.selectbox("Compare with", [None] + [i for i in ids if i != pick],
                     format_func=lambda i: "none" if i is None else names[i], key="runs_compare")
row = next(r for r in runs if r["id"] == pick)


def open_run():
    """The run's own page, attached to it (and to the compared run)."""
    spec = row["spec"]
    page = live.page_for(spec)
    state.put(state.page_key(state.RUN_ID, page), pick)
    # a learner's own watched loop has no lecture model: it opens on Activations & gradients
    params = dict(run=pick, **{k: spec[k] for k in ("model", "preset") if k in spec})
    if other:
        params["compare"] = other
    st.switch_page(f"views/{page}.py", query_params=params)


if row["meta"].get("message") and row["state"] in ("failed", "stopped", "diverged"):
    (st.warning if row["state"] == "stopped" else st.error)(f"{row['name']}: {row['meta']['message']}")
mine = may_control(row)
served = liveness.has_worker(row)  # a run of `python -m core train` or a notebook reads no commands
b = st.columns(4)
if b[0].button("Open", icon=":material/open_in_new:", key="runs_open", width="stretch"):
    open_run()
d = live.run_data(pick)
b[1].download_button("Export (JSON)", live.export_json(d) if row["state"] not in LIVE_STATES else "{}",
                     f"{pick}.json", "application/json", disabled=row["state"] in LIVE_STATES,
                     key="runs_export", width="stretch")
if b[2].button("Delete", icon=":material/delete:", key="runs_delete",
               disabled=row["state"] in LIVE_STATES or not mine, width="stretch") and mine:
    mgr.delete(pick)
    if state.get(state.page_key(state.RUN_ID, live.page_for(row["spec"]))) == pick:
        state.put(state.page_key(state.RUN_ID, live.page_for(row["spec"])), None)
    st.rerun()
if row["state"] in LIVE_STATES:
    st.caption("A live run can be exported or deleted once it is stopped or finished.")
    if not served:
        st.caption("This run trains in its own process (`python -m core train` or a notebook), which reads no "
                   "commands: stop it there.")
    if b[3].button("Stop", icon=":material/stop:", key="runs_stop", disabled=not (mine and served),
                   width="stretch") and mine and served:
        mgr.stop(pick)
        st.rerun()
if not mine:
    st.caption(NOT_YOURS)

# the run as TensorBoard event files (core.runs.export), beside the runs file and as a zip to download
if st.button("Export for TensorBoard", icon=":material/insights:", key="runs_tensorboard",
             disabled=row["state"] in LIVE_STATES):
    try:
        folder, n = export.tensorboard(db, pick, db.path.parent / "tensorboard")
        files = export.zipped(folder)
    except (OSError, ValueError) as e:  # a full disk, a folder it may not write, the run deleted meanwhile
        st.error(f"The export could not be written: {e}")
        st.stop()
    st.success(f"Wrote {n['scalars']:,} scalars and {n['histograms']:,} histograms to `{folder}`: "
               f"`tensorboard --logdir {folder.parent}` shows it, or download the files.")
    st.download_button("Event files (zip)", files, f"{folder.name}.zip", "application/zip",
                       on_click="ignore", key="runs_tensorboard_zip")
