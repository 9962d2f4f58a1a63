"""The Compare page's body (Streamlit): pick runs (or an ablation group), overlay metrics
(seeds of one arm as a mean line with a band), the paper-style results table and a config
diff, each with a CSV button. Called by pages/compare.py.

    draw_compare(url, runs)   # everything below the page title
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    cached_series,
    csv_button,
    get_store,
    plot,
    run_label,
)


@dataclass(frozen=True)
class Controls:
    """The chart controls above the overlays."""

    aggregate: bool  # seeds of one arm as mean ± band
    band: str  # "std" or "minmax"
    smoothing: float
    fmt: str  # the 📷 button's image format


def draw_compare(url: str, runs: list[Any]) -> None:
    """Run picker, controls, metric overlays, results table, config diff."""
    chosen = pick_runs(runs)
    if not chosen:
        st.info("Pick at least one run.")
        st.stop()
    ids = tuple(r.id for r in chosen)
    labels = {r.id: f"#{r.id} {r.name}" for r in chosen}
    arms = seed_arms(chosen)
    ctl = controls(has_seeds=len(set(arms.values())) < len(arms))
    metric_overlays(url, ids, labels, arms if ctl.aggregate else None, ctl)
    results_section(url, ids, chosen, arms if ctl.aggregate else None)
    config_diff_section(chosen, labels)


def pick_runs(runs: list[Any]) -> list[Any]:
    """The runs of an ablation group, or runs picked one by one."""
    groups = get_store().list_groups()
    by_id = {r.id: r for r in runs}
    sources = ["Ablation group", "Pick runs"] if groups else ["Pick runs"]
    source = st.radio("Compare", sources, horizontal=True, key="compare:source")
    if source == "Ablation group":
        group = st.selectbox("Group", groups, key="compare:group")
        return [r for r in runs if r.group == group]
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
    return [by_id[i] for i in picked]


def controls(*, has_seeds: bool) -> Controls:
    """Aggregation over seeds (offered only when some arm has several), band, smoothing,
    image format."""
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1])
    aggregate = c1.toggle(
        "Mean ± band over seeds", value=has_seeds, disabled=not has_seeds,
        key=f"compare:agg:{has_seeds}",  # a fresh default when a picked group gains seeds
        help="runs with equal config apart from the seed form one arm",
    )  # fmt: skip
    band = c2.radio("band", ["std", "min–max"], horizontal=True, key="compare:band")
    smoothing = c3.slider("Smoothing (EMA)", 0.0, 0.99, 0.0, 0.01, key="compare:smooth")
    fmt = c4.selectbox("image", ["png", "svg"], key="compare:fmt", help="format of the 📷 button")
    return Controls(aggregate, "std" if band == "std" else "minmax", smoothing, fmt)


def metric_overlays(
    url: str,
    ids: tuple[int, ...],
    labels: dict[int, str],
    arms: dict[int, str] | None,
    ctl: Controls,
) -> None:
    """A metric picker (overlap and reward first) and one overlay chart + CSV per metric."""
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
            df, labels, title=key, arms=arms, band=ctl.band, smoothing=ctl.smoothing,
            revision=f"compare:{key}",
        )  # fmt: skip
        plot(fig, f"compare:{key}", ctl.fmt)
        name = key.replace("/", "_") + ".csv"
        csv_button(df.drop(columns=["x"]), f"CSV: {key}", name, f"csv:{key}")


def results_section(
    url: str, ids: tuple[int, ...], chosen: list[Any], arms: dict[int, str] | None
) -> None:
    """The results table from each run's latest evaluation (mean ± std with `arms`)."""
    st.subheader("Results (latest evaluation of each run)")
    evals = cached_evals(url, ids)
    table = results_table(evals, chosen, arms)
    if table.empty:
        st.info("No evaluations recorded for these runs yet (they are written every few cycles).")
        return
    st.caption(
        "Rows: method · model (each branch and the merged model). Columns: each benchmark "
        "(domain), then Overall = mean over benchmarks. Best per column in bold."
        + (" Cells: mean ± std over seeds." if arms else "")
    )
    st.markdown(results_markdown(table))
    csv_button(format_results(table), "CSV: results table", "results.csv", "csv:results")
    csv_button(evals, "CSV: all evaluations", "evaluations.csv", "csv:evals")


def config_diff_section(chosen: list[Any], labels: dict[int, str]) -> None:
    """The config fields in which the chosen runs differ."""
    st.subheader("Config differences")
    if len(chosen) < 2:
        st.caption("Pick two or more runs to see how their configs differ.")
        return
    diff = config_diff_frame(chosen, labels)
    if diff.empty:
        st.caption("The configs are identical.")
    else:
        st.dataframe(diff)
        csv_button(diff, "CSV: config diff", "config_diff.csv", "csv:diff")
