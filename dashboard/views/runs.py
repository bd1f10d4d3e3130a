import pandas as pd
import streamlit as st

from core.runs.db import LIVE_STATES
from dashboard import state
from dashboard.ui import live
from dashboard.ui.registry import manager

st.title("Runs")
st.caption("Every run this server has trained, kept on disk: reopen one on its page, compare two, export, delete.")

runs = manager().db.list_runs()
if not runs:
    st.info("No runs yet. Start one on the **Activations & gradients** page.", icon=":material/info:")
    st.stop()

rows = [dict(id=r["id"], name=r["name"], state=r["state"], step=r["step"],
             params=r["meta"].get("params"), first_loss=r["meta"].get("init_loss"),
             train=(r["meta"].get("final") or {}).get("train"), val=(r["meta"].get("final") or {}).get("val"),
             data=r["spec"].get("data", {}).get("name", "SSA names"),
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
    params = dict(run=pick, model=spec["model"], preset=spec["preset"])
    if other:
        params["compare"] = other
    st.switch_page(f"views/{page}.py", query_params=params)


b = st.columns(4)
if b[0].button("Open", icon=":material/open_in_new:", key="runs_open", width="stretch"):
    open_run()
d = live.run_data(pick)
b[1].download_button("Export (JSON)", live.export_json(d) if row["state"] not in LIVE_STATES else "{}",
                     f"{pick}.json", "application/json", disabled=row["state"] in LIVE_STATES,
                     key="runs_export", width="stretch")
if b[2].button("Delete", icon=":material/delete:", key="runs_delete", disabled=row["state"] in LIVE_STATES,
               width="stretch"):
    manager().db.delete_run(pick)
    if state.get(state.page_key(state.RUN_ID, live.page_for(row["spec"]))) == pick:
        state.put(state.page_key(state.RUN_ID, live.page_for(row["spec"])), None)
    st.rerun()
if row["state"] in LIVE_STATES:
    st.caption("A live run can be exported or deleted once it is stopped or finished.")
    if b[3].button("Stop", icon=":material/stop:", key="runs_stop", width="stretch"):
        manager().stop(pick)
        st.rerun()
