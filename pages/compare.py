"""Compare: overlay metrics across runs or an ablation group (seeds of one method become a
mean line with a band), the paper-style results table, and a config diff; CSV everywhere."""

import streamlit as st

from app import charts
from app.queries import (
    config_diff_frame,
    format_results,
    results_markdown,
    results_table,
    seed_arms,
)
from app.series import with_x
from app.widgets import (
    cached_evals,
    cached_keys,
    cached_runs,
    cached_series,
    csv_button,
    db_url,
    empty_state,
    get_store,
    plot,
    run_label,
)

st.title("⚖️ Compare runs")
url = db_url()
runs = cached_runs(url)
if not runs:
    empty_state("No runs yet: launch the demo (or an ablation set) to compare.", key="compare")
    st.stop()

groups = get_store().list_groups()
by_id = {r.id: r for r in runs}
sources = ["Ablation group", "Pick runs"] if groups else ["Pick runs"]
source = st.radio("Compare", sources, horizontal=True, key="compare:source")
if source == "Ablation group":
    group = st.selectbox("Group", groups, key="compare:group")
    chosen = [r for r in runs if r.group == group]
else:
    if not groups:
        st.caption(
            "Tip: **Launch an ablation set** on the Launch page to get several seeds per "
            "method, shown here as mean ± band."
        )
    default = [r.id for r in runs if r.status == "finished"][:2] or [runs[0].id]
    picked = st.multiselect(
        "Runs", list(by_id), default=default, format_func=lambda i: run_label(by_id[i]),
        key="compare:runs",
    )  # fmt: skip
    chosen = [by_id[i] for i in picked]
if not chosen:
    st.info("Pick at least one run.")
    st.stop()

ids = tuple(r.id for r in chosen)
labels = {r.id: f"#{r.id} {r.name}" for r in chosen}
arms = seed_arms(chosen)
has_seeds = len(set(arms.values())) < len(arms)

c1, c2, c3, c4 = st.columns([1, 1, 1, 1])
aggregate = c1.toggle(
    "Mean ± band over seeds", value=has_seeds, disabled=not has_seeds,
    key=f"compare:agg:{has_seeds}",  # a fresh default when a picked group gains seeds
    help="runs with equal config apart from the seed form one arm",
)  # fmt: skip
band = c2.radio("band", ["std", "min–max"], horizontal=True, key="compare:band")
smoothing = c3.slider("Smoothing (EMA)", 0.0, 0.99, 0.0, 0.01, key="compare:smooth")
fmt = c4.selectbox("image", ["png", "svg"], key="compare:fmt", help="format of the 📷 button")

# ---------------------------------------------------------------- metric overlays
keys = cached_keys(url, ids)
preferred = [
    k
    for k in keys
    if k in ("pair/add~rev/overlap_top10", "branch/add/reward/mean")
    or (k.startswith("pair/") and k.endswith("overlap_top10"))
]
metrics = st.multiselect(
    "Metrics", keys, default=list(dict.fromkeys(preferred))[:2], key="compare:metrics"
)
for key in metrics:
    df = with_x(cached_series(url, ids, (key,), 500), "step")
    fig = charts.compare_figure(
        df, labels, title=key, arms=arms if aggregate else None,
        band="std" if band == "std" else "minmax", smoothing=smoothing,
        revision=f"compare:{key}",
    )  # fmt: skip
    plot(fig, f"compare:{key}", fmt)
    csv_button(df.drop(columns=["x"]), f"CSV: {key}", key.replace("/", "_") + ".csv", f"csv:{key}")

# ---------------------------------------------------------------- results table
st.subheader("Results (latest evaluation of each run)")
evals = cached_evals(url, ids)
table = results_table(evals, chosen, arms if aggregate else None)
if table.empty:
    st.info("No evaluations recorded for these runs yet (they are written every few cycles).")
else:
    st.caption(
        "Rows: method · model (each branch and the merged model). Columns: each benchmark "
        "(domain), then Overall = mean over benchmarks. Best per column in bold."
        + (" Cells: mean ± std over seeds." if aggregate else "")
    )
    st.markdown(results_markdown(table))
    csv_button(format_results(table), "CSV: results table", "results.csv", "csv:results")
    csv_button(evals, "CSV: all evaluations", "evaluations.csv", "csv:evals")

# ---------------------------------------------------------------- config diff
st.subheader("Config differences")
if len(chosen) < 2:
    st.caption("Pick two or more runs to see how their configs differ.")
else:
    diff = config_diff_frame(chosen, labels)
    if diff.empty:
        st.caption("The configs are identical.")
    else:
        st.dataframe(diff)
        csv_button(diff, "CSV: config diff", "config_diff.csv", "csv:diff")
