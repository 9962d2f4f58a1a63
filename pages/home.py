"""Home: what this is, runs by status, alerts per run, the machine's GPUs/CPU, and the
demo in one click (CoPD and the independent experts, one group, opened on the Live view)."""

import pandas as pd
import streamlit as st

from app.control.demo import DEMO_DESCRIPTION
from app.dashboard.queries import STATUS_MARKERS, status_counts, status_label
from app.dashboard.text import md_line
from app.dashboard.widgets import (
    cached_alert_counts,
    cached_runs,
    db_url,
    gpu_summary,
    launch_demo_and_watch,
    page_path,
)

st.title(":material/monitoring: copd: Co-Evolving Policy Distillation workbench")
st.markdown(
    "Train several **branches** of one model, each on its own domain, alternating "
    "**phase I** (GRPO on verifiable rewards) with **phase II** (mutual on-policy "
    "distillation between branches), then **merge** them: CoPD (arXiv 2604.27083) and its "
    "baselines (expert, mixed GRPO, static OPD, MOPD, weight averaging). Launch runs here, "
    "watch their behavioural overlap live, and compare methods across seeds."
)

runs = cached_runs(db_url())
counts = status_counts(runs)
cols = st.columns(len(STATUS_MARKERS))
for col, (status, label) in zip(cols, STATUS_MARKERS.items(), strict=True):
    col.metric(label, counts.get(status, 0))

left, right = st.columns([1, 2])
with left:
    if st.button(
        "Launch the demo",
        icon=":material/rocket_launch:",
        type="primary",
        key="home:demo",
        help="starts the demo CoPD run and the independent-experts baseline (same seed, one "
        "group) and opens the Live view, which overlays them",
    ):
        launch_demo_and_watch()
with right:
    st.caption(f"Compute: {gpu_summary()}")
    st.caption(f"Run store: {md_line(db_url())}")

if not runs:
    st.info(f"No runs yet. {DEMO_DESCRIPTION} A few minutes on a CPU.")
else:
    alerts = cached_alert_counts(db_url())
    st.subheader(f":material/warning: Alerts ({sum(alerts.values())})")
    if alerts:
        by_id = {r.id: r for r in runs}
        st.dataframe(
            pd.DataFrame(
                [
                    {"run": rid, "name": by_id[rid].name, "status": status_label(by_id[rid].status),
                     "alerts": n, "view": f"live?run={rid}"}
                    for rid, n in alerts.items() if rid in by_id
                ]
            ),
            hide_index=True,
            key="home:alerts",
            column_config={"view": st.column_config.LinkColumn("view", display_text="open")},
        )  # fmt: skip
    else:
        st.caption("No alerts (NaN/inf, reward collapse, low overlap, stalls, crashes).")
    st.page_link(page_path("runs"), label="See all runs", icon=":material/table_rows:")
    st.page_link(page_path("live"), label="Watch the latest run", icon=":material/monitoring:")
