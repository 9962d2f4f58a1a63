"""Runs: every run with status, progress and latest reward/overlap; select one to cancel,
resume or delete it (with a confirmation), read its log tail, events and error."""

import pandas as pd
import streamlit as st

from app.queries import status_label
from app.widgets import (
    cached_runs,
    cached_runs_frame,
    db_url,
    empty_state,
    get_launcher,
    get_store,
    invalidate,
    page_path,
    run_label,
)

st.title("📋 Runs")
url = db_url()
runs = cached_runs(url)
if not runs:
    empty_state("No runs yet: launch the demo.", key="runs")
    st.stop()

active = any(r.status in ("queued", "running") for r in runs)
auto = st.toggle(
    "Auto-refresh", value=True, key="runs:auto", help="every 5 s while runs are active"
)


@st.fragment(run_every=5 if (auto and active) else None)
def body() -> None:
    """The table, the selected run's details and its log; refreshes while runs are active."""
    runs = cached_runs(url)
    frame = cached_runs_frame(url)
    statuses = sorted(frame["status"].unique())
    groups = sorted(g for g in frame["group"].unique() if g)
    c1, c2 = st.columns(2)
    want_status = c1.multiselect("Status", statuses, key="runs:status_filter")
    want_group = c2.multiselect("Group", groups, key="runs:group_filter")
    shown = frame
    if want_status:
        shown = shown[shown["status"].isin(want_status)]
    if want_group:
        shown = shown[shown["group"].isin(want_group)]

    event = st.dataframe(
        shown,
        hide_index=True,
        key="runs:table",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "id": st.column_config.NumberColumn("id", width="small"),
            "status": st.column_config.TextColumn("status", help="💥 crashed = the process died"),
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0.0, max_value=1.0, format="percent"
            ),
            "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
            "latest reward": st.column_config.NumberColumn(
                "latest reward", format="%.3f", help="mean over branches of branch/*/reward/mean"
            ),
            "latest overlap": st.column_config.NumberColumn(
                "latest overlap", format="%.3f", help="mean over pairs of pair/*/overlap_top10"
            ),
        },
    )

    by_id = {r.id: r for r in runs}
    ids = [int(i) for i in shown["id"]] or list(by_id)
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    if rows:
        st.session_state["runs:selected"] = ids[rows[0]]
    if st.session_state.get("runs:selected") not in ids:
        st.session_state.pop("runs:selected", None)
    run_id = st.selectbox(
        "Run",
        ids,
        format_func=lambda i: run_label(by_id[i]),
        key="runs:selected",
        help="or click a row of the table",
    )
    run = get_store().get_run(run_id)
    launcher = get_launcher()

    st.subheader(f"#{run.id} {run.name}")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("status", status_label(run.status))
    m2.metric("method", run.method)
    m3.metric("progress", f"{run.progress:.0%}")
    m4.metric("GPUs", run.assigned_gpus or ("CPU" if not run.requested_gpus else "pending"))
    if run.status in ("failed", "crashed") and run.error:
        first, _, rest = run.error.partition("\n")
        st.error(f"{run.status}: {first}")
        if rest:
            st.code(rest, language="text")

    # Actions. Every destructive one asks first: the pending action lives in session state.
    b1, b2, b3, b4 = st.columns(4)
    if b1.button("Cancel", disabled=run.status not in ("queued", "running"), key="runs:cancel"):
        st.session_state["runs:confirm"] = ("cancel", run.id)
    if b2.button(
        "Resume", disabled=run.status not in ("cancelled", "crashed", "failed"), key="runs:resume"
    ):
        st.session_state["runs:confirm"] = ("resume", run.id)
    if b3.button("Delete", disabled=run.status == "running", key="runs:delete"):
        st.session_state["runs:confirm"] = ("delete", run.id)
    if b4.button("Open live view", key="runs:live"):
        st.session_state["live_run"] = run.id
        st.switch_page(page_path("live"))

    pending = st.session_state.get("runs:confirm")
    if pending and pending[1] == run.id:
        action = pending[0]
        st.warning(f"Really {action} run #{run.id} {run.name}?")
        y, n = st.columns(2)
        if y.button(f"Yes, {action}", type="primary", key="runs:yes"):
            st.session_state.pop("runs:confirm")
            try:
                if action == "cancel":
                    launcher.request_cancel(run.id)
                elif action == "resume":
                    launcher.resume(run.id)
                    launcher.tick()
                else:
                    launcher.delete(run.id)
                    st.session_state.pop("runs:selected", None)
            except Exception as e:  # the launcher's message says what the state allows
                st.error(str(e))
            else:
                invalidate()
                st.rerun(scope="app")
        if n.button("No", key="runs:no"):
            st.session_state.pop("runs:confirm")
            st.rerun(scope="app")

    left, right = st.columns(2)
    with left:
        st.markdown("**Log tail**")
        tail = launcher.log_tail(run.id, n_lines=200)
        st.code(tail or "(no log yet)", language="text")
    with right:
        st.markdown("**Recent events**")
        events = get_store().events(run.id, limit=50)
        if events:
            st.dataframe(
                pd.DataFrame(
                    {
                        "time": [pd.Timestamp(e.wall_time, unit="s", tz="UTC") for e in events],
                        "level": [e.level for e in events],
                        "step": [e.step for e in events],
                        "message": [e.message for e in events],
                    }
                ).iloc[::-1],
                hide_index=True,
            )
        else:
            st.caption("No events recorded.")
    with st.expander("Config"):
        st.json(run.config, expanded=False)


body()
