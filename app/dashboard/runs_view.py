"""The Runs page's body (Streamlit): the filterable run table, the selected run's header,
its actions (cancel, resume, delete: each asks first), log tail, events and config. Called
inside an auto-refreshing fragment by pages/runs.py.

    draw_runs(url)   # everything below the page title and the auto-refresh toggle
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app.control.launcher import LOG_NAME, Launcher
from app.dashboard.export_view import export_panel, harness_panel
from app.dashboard.labels_view import search_box, tags_notes_editor
from app.dashboard.logview import log_tail
from app.dashboard.queries import (
    flat_configs,
    offered_fields,
    status_label,
    with_config_columns,
)
from app.dashboard.series import percent
from app.dashboard.text import md_escape, md_line
from app.dashboard.widgets import (
    cached_runs,
    cached_runs_frame,
    get_launcher,
    get_store,
    invalidate,
    page_path,
    run_label,
    trusts_task_code,
)
from storage import Event, Run, RunStatus, allows


def draw_runs(url: str) -> None:
    """The table, the selected run's details and its log."""
    runs = cached_runs(url)
    shown = filter_frame(cached_runs_frame(url), runs)
    flat = flat_configs(runs)  # once per refresh: the picker and the columns read it
    shown = with_config_columns(shown, flat, config_columns(offered_fields(flat)))
    event = runs_table(shown)
    run_id = pick_run(runs, shown, event)
    run = get_store().get_run(run_id)
    launcher = get_launcher()
    run_header(run)
    run_actions(run, launcher)
    tags_notes_editor(run, sorted({t for r in runs for t in r.tags}))
    run_details(run, launcher)
    export_panel(run)
    harness_panel(run, url)


def filter_frame(frame: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """The status, group and tag filters and the search query above the table; the rows
    they keep (a run with any of the picked tags; a bad query filters nothing)."""
    statuses = sorted(frame["status"].unique())
    groups = sorted(g for g in frame["group"].unique() if g)
    c1, c2, c3 = st.columns(3)
    want_status = c1.multiselect("Status", statuses, key="runs:status_filter")
    want_group = c2.multiselect("Group", groups, key="runs:group_filter")
    tags = sorted({t for r in runs for t in r.tags})
    want_tags = c3.multiselect("Tags", tags, key="runs:tag_filter", help="runs with any of them")
    shown = frame
    if want_status:
        shown = shown[shown["status"].isin(want_status)]
    if want_group:
        shown = shown[shown["group"].isin(want_group)]
    if want_tags:
        shown = shown[shown["id"].isin([r.id for r in runs if set(r.tags) & set(want_tags)])]
    found = search_box(runs, key="runs:query")
    if len(found) != len(runs):
        shown = shown[shown["id"].isin([r.id for r in found])]
    return shown


def config_columns(offered: list[str]) -> list[str]:
    """The config fields the user shows as columns (`?cols=opd.beta,schedule.rl_steps` in
    the link keeps the choice); the fields that differ between runs are offered first."""
    key = "runs:config_cols"
    if key not in st.session_state:
        linked = [f for f in st.query_params.get("cols", "").split(",") if f in offered]
        st.session_state[key] = linked
    st.session_state[key] = [f for f in st.session_state[key] if f in offered]
    return st.multiselect(
        "Config columns",
        offered,
        key=key,
        on_change=write_cols_link,
        placeholder="add config fields as columns, e.g. opd.beta",
        help="fields that differ between runs first; click a header to sort, filter with "
        "the search box (e.g. opd.beta >= 1)",
    )


def write_cols_link() -> None:
    """The chosen config columns into the link, on a change only: the table refreshes in a
    fragment every few seconds, and a link written on every refresh closes any open
    dropdown of the page."""
    chosen = st.session_state["runs:config_cols"]
    if chosen:
        st.query_params["cols"] = ",".join(chosen)
    else:
        st.query_params.pop("cols", None)


def runs_table(shown: pd.DataFrame) -> Any:
    """The run table with single-row selection; returns the selection event."""
    return st.dataframe(
        shown,
        hide_index=True,
        key="runs:table",
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "id": st.column_config.NumberColumn("id", width=40),
            "seed": st.column_config.NumberColumn("seed", width=40),
            "method": st.column_config.TextColumn("method", width=60),
            "status": st.column_config.TextColumn("status", help="✕ crashed = the process died"),
            "progress": st.column_config.ProgressColumn(
                "progress",
                width=80,
                min_value=0,
                max_value=100,
                format="%d%%",
                help="whole percent, rounded down, as on every page",
            ),  # fmt: skip
            "started": st.column_config.DatetimeColumn(
                "started",
                format="MM-DD HH:mm",
                width=90,
                help="the first start, UTC (a resume keeps it)",
            ),
            "duration": st.column_config.TextColumn(
                "duration",
                width=60,
                help="from the first start to the end (or now), resumes included",
            ),
            # short headers and fixed widths: every column, the last included, fits the page
            "latest reward": st.column_config.NumberColumn(
                "reward",
                format="%.3f",
                width=60,
                help="latest reward: mean over branches of branch/*/reward/mean",
            ),
            "latest overlap": st.column_config.NumberColumn(
                "overlap",
                format="%.3f",
                width=60,
                help="latest overlap: mean over pairs of pair/*/overlap_top10",
            ),
            "tags": st.column_config.TextColumn("tags", width=60),
            "notes": st.column_config.TextColumn(
                "notes", width=80, help="the selected run's notes read whole below the table"
            ),
        },  # fmt: skip
    )


def pick_run(runs: list[Run], shown: pd.DataFrame, event: Any) -> int:
    """The selected run id: a clicked table row wins, else the selectbox (kept in sync)."""
    by_id = {r.id: r for r in runs}
    ids = [int(i) for i in shown["id"]] or list(by_id)
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    if rows:
        st.session_state["runs:selected"] = ids[rows[0]]
    if st.session_state.get("runs:selected") not in ids:
        st.session_state.pop("runs:selected", None)
    return st.selectbox(
        "Run",
        ids,
        format_func=lambda i: run_label(by_id[i]),
        key="runs:selected",
        help="or click a row of the table",
    )


def run_header(run: Run) -> None:
    """Name, status, method, progress, GPUs; the error of a failed or crashed run."""
    st.subheader(f"#{run.id} {md_line(run.name)}")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("status", status_label(run.status))
    m2.metric("method", md_line(run.method))
    m3.metric("progress", percent(run.progress))
    m4.metric(
        "GPUs", md_line(run.assigned_gpus or ("CPU" if not run.requested_gpus else "pending"))
    )
    if run.status in (RunStatus.FAILED, RunStatus.CRASHED) and run.error:
        first, _, rest = run.error.partition("\n")
        st.error(f"{run.status}: {md_line(first)}")
        if rest:
            st.code(rest, language="text")


def run_actions(run: Run, launcher: Launcher) -> None:
    """Cancel / Resume / Delete / Open live view. Every destructive action asks first: the
    pending action lives in session state until Yes or No."""
    b1, b2, b3, b4 = st.columns(4)
    if b1.button("Cancel", disabled=not allows(run.status, "cancel"), key="runs:cancel"):
        st.session_state["runs:confirm"] = ("cancel", run.id)
    if b2.button("Resume", disabled=not allows(run.status, "resume"), key="runs:resume"):
        st.session_state["runs:confirm"] = ("resume", run.id)
    if b3.button("Delete", disabled=not allows(run.status, "delete"), key="runs:delete"):
        st.session_state["runs:confirm"] = ("delete", run.id)
    if b4.button("Open live view", key="runs:live"):
        st.session_state["live_run"] = run.id
        st.switch_page(page_path("live"))

    pending = st.session_state.get("runs:confirm")
    if pending and pending[1] == run.id:
        confirm(pending[0], run, launcher)


def confirm(action: str, run: Run, launcher: Launcher) -> None:
    """Ask "Really <action>?"; on Yes apply it through the launcher and rerun the app."""
    st.warning(f"Really {action} run #{run.id} {md_line(run.name)}?")
    y, n = st.columns(2)
    if y.button(f"Yes, {action}", type="primary", key="runs:yes"):
        st.session_state.pop("runs:confirm")
        try:
            apply_action(action, run.id, launcher)
        except Exception as e:  # the launcher's message says what the state allows
            st.error(md_escape(e))
        else:
            invalidate()
            st.rerun(scope="app")
    if n.button("No", key="runs:no"):
        st.session_state.pop("runs:confirm")
        st.rerun(scope="app")


def apply_action(action: str, run_id: int, launcher: Launcher) -> None:
    """Cancel (non-blocking), resume (queued, then one tick) or delete a run."""
    if action == "cancel":
        launcher.request_cancel(run_id)
    elif action == "resume":
        launcher.resume(run_id, trust_task_code=trusts_task_code())
        launcher.start_now()
    else:
        launcher.delete(run_id)
        st.session_state.pop("runs:selected", None)


LOG_LINES_SHOWN = 20  # the log's last lines, shown whole under "Log tail"


def run_details(run: Run, launcher: Launcher) -> None:
    """The log tail (progress-bar redraws collapsed) and recent events side by side, the
    config folded below."""
    left, right = st.columns(2)
    with left:
        st.markdown("**Log tail**")
        tail = log_tail(Path(run.run_dir) / LOG_NAME, n_lines=200) if run.run_dir else ""
        # the end of the log in full view (a fixed-height block opens scrolled to its top,
        # which showed the oldest of the 200 lines); the longer tail folded below
        end = "\n".join(tail.splitlines()[-LOG_LINES_SHOWN:])
        st.code(end or "(no log yet)", language="text", wrap_lines=True)
        if tail.count("\n") >= LOG_LINES_SHOWN:
            with st.expander("Last 200 lines"):
                st.code(tail, language="text", wrap_lines=True, height=420)
    with right:
        st.markdown("**Recent events**")
        events = get_store().events(run.id, limit=50)
        if events:  # plain text, wrapped: a long message reads whole (a table cell cuts it)
            st.code(events_text(events), language="text", wrap_lines=True, height=420)
        else:
            st.caption("No events recorded.")
    with st.expander("Config"):
        st.json(run.config, expanded=False)


def events_text(events: list[Event]) -> str:
    """Events as lines, newest first: `2026-01-02 10:11:12 warning step 12: message`."""
    frame = events_frame(events)
    return "\n".join(
        f"{t:%Y-%m-%d %H:%M:%S} {level}" + ("" if pd.isna(step) else f" step {int(step)}")
        + f": {message}"
        for t, level, step, message in frame.itertuples(index=False)
    )  # fmt: skip


def events_frame(events: list[Event]) -> pd.DataFrame:
    """Events as a table, newest first (the store returns them oldest first)."""
    return pd.DataFrame(
        {
            "time": [pd.Timestamp(e.wall_time, unit="s", tz="UTC") for e in events],
            "level": [e.level for e in events],
            "step": [e.step for e in events],
            "message": [e.message for e in events],
        }
    ).iloc[::-1]
