"""Home: what this is, runs by status, the machine's GPUs/CPU, and a button to the demo."""

import streamlit as st

from app.queries import STATUS_MARKERS, status_counts
from app.widgets import cached_runs, db_url, gpu_summary, page_path

st.title("📊 copd: Co-Evolving Policy Distillation workbench")
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
    if st.button("🚀 Launch the demo", type="primary", key="home:demo"):
        st.session_state["launch_preset"] = "demo"
        st.switch_page(page_path("launch"))
with right:
    st.caption(f"Compute: {gpu_summary()}")
    st.caption(f"Run store: `{db_url()}`")

if not runs:
    st.info(
        "No runs yet: press **Launch the demo** (two branches, `add` and `rev`, on the "
        "built-in tiny model; a few minutes on a CPU), then follow it on **Live run view**."
    )
else:
    st.page_link(page_path("runs"), label="See all runs", icon="📋")
    st.page_link(page_path("live"), label="Watch the latest run", icon="📈")
