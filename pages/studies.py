"""Studies: the pilot study (OPD gain vs top-k overlap, fitted line and Pearson r; paper
Fig. 2a/b) and the drift of experts vs CoPD branches (overlap and symmetric KL through
training; Fig. 2c/d, 4a/b). Produced by `copd pilot --db`, `copd drift`, `copd reproduce`."""

import pandas as pd
import streamlit as st

from app.dashboard import figures, studies_data
from app.dashboard.widgets import cached_runs, csv_button, db_url, empty_state, get_store, plot
from storage import RunStatus

st.title(":material/science: Studies")
url = db_url()
runs = cached_runs(url)
if not runs:
    empty_state("No runs yet: `copd pilot --db URL` or `copd reproduce --db URL`.", key="studies")
    st.stop()
store = get_store()

# ---------------------------------------------------------------- pilot
st.header("Pilot: OPD gain vs top-k overlap")
pilots = studies_data.pilot_runs(runs)
if not pilots:
    st.info("No pilot study yet: run `copd pilot --db URL` (one run per seed, method 'pilot').")
else:
    groups = sorted({r.group or "(no group)" for r in pilots})
    group = st.selectbox("Pilot group", groups, key="studies:pilot_group")
    chosen = [r for r in pilots if (r.group or "(no group)") == group]
    points = studies_data.pilot_points(store, [r.id for r in chosen])
    if not points:
        st.info("These pilot runs have no points yet.")
    else:
        fit = studies_data.fit_of(points)
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Pearson r", "n/a" if pd.isna(fit["r"]) else f"{fit['r']:.3f}")
        c2.metric("N (students)", fit["n"])
        c3.metric("p-value", "n/a" if pd.isna(fit["p_value"]) else f"{fit['p_value']:.3g}")
        c4.metric("slope", "n/a" if pd.isna(fit["slope"]) else f"{fit['slope']:.3f}")
        st.caption(
            f"p-value: {fit['p_method']}. Gain = accuracy on the teacher's domain after "
            "minus before the same OPD budget; overlap on the student's own rollouts."
        )
        plot(figures.pilot_figure(points, fit), "studies:pilot")
        df = pd.DataFrame(points)
        st.dataframe(df)
        csv_button(df, "CSV: pilot points", "pilot.csv", "csv:pilot")

# ---------------------------------------------------------------- drift
st.header("Drift: overlap and symmetric KL through training")
groups = sorted({r.group for r in runs if r.group and r.method in ("expert", "copd")})
options = ["(pick runs)", *groups]
choice = st.selectbox("Group", options, index=1 if groups else 0, key="studies:drift_group")
if choice == "(pick runs)":
    by_id = {r.id: r for r in runs}
    picked = st.multiselect(
        "Runs", list(by_id), format_func=lambda i: f"#{i} {by_id[i].name}", key="studies:drift_runs"
    )
    drift_runs = [by_id[i] for i in picked]
else:
    drift_runs = [r for r in runs if r.group == choice and r.method in ("expert", "copd")]
drift_runs = [r for r in drift_runs if len((r.config or {}).get("branches", [])) >= 2]
df = studies_data.drift_series(store, drift_runs)
if df.empty:
    st.info(
        "No overlap / symmetric-KL diagnostics in these runs (expert and CoPD runs log "
        "them at CoPD's cadence)."
    )
else:
    plot(figures.drift_figure(df.to_dict("records")), "studies:drift")
    csv_button(df, "CSV: drift series", "drift.csv", "csv:drift")

# ---------------------------------------------------------------- the study's map
st.header("Study map: CoPD settings against mixed GRPO")
st.caption(
    "`copd study map --db URL` records one group per setting (`study-map-2dom`, "
    "`study-map-3dom`): CoPD one factor at a time around the demo's defaults, with mixed "
    "GRPO and its equal-steps control. Choose on the validation split; docs/RESULTS.md "
    "reports the test split."
)
map_groups = sorted({r.group for r in runs if r.group and r.group.startswith("study-map")})
if not map_groups:
    st.info("No study map yet: run `copd study map --db URL`.")
else:
    from app.dashboard.sweep_view import draw_grid_view

    group = st.selectbox("Map group", map_groups, key="studies:map_group")
    draw_grid_view(url, [r for r in runs if r.group == group and r.status == RunStatus.FINISHED])
