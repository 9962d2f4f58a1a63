"""Compare: overlay metrics across runs or an ablation group (seeds of one method become a
mean line with a band), the paper-style results table, and a config diff; CSV everywhere."""

import streamlit as st

from app.dashboard.compare_view import draw_compare
from app.dashboard.widgets import cached_runs, db_url, empty_state

st.title(":material/balance: Compare runs")
url = db_url()
runs = cached_runs(url)
if not runs:
    empty_state("No runs yet: launch the demo (or an ablation set) to compare.", key="compare")
    st.stop()

draw_compare(url, runs)
