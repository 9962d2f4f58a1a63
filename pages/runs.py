"""Runs: every run with status, progress and latest reward/overlap; select one to cancel,
resume or delete it (with a confirmation), read its log tail, events and error."""

import streamlit as st

from app.dashboard.runs_view import draw_runs
from app.dashboard.widgets import cached_runs, db_url, empty_state

st.title(":material/table_rows: Runs")
url = db_url()
runs = cached_runs(url)
if not runs:
    empty_state("No runs yet: launch the demo.", key="runs")
    st.stop()

active = any(not r.is_terminal for r in runs)  # queued or running
auto = st.toggle(
    "Auto-refresh", value=True, key="runs:auto", help="every 5 s while runs are active"
)


@st.fragment(run_every=5 if (auto and active) else None)
def body() -> None:
    """Refreshes while runs are active."""
    draw_runs(url)


body()
