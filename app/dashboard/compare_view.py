"""The Compare page's body (Streamlit): pick runs (or an ablation group), overlay metrics
(seeds of one arm as a mean line with a band, each seed's own line on request), the
paper-style results table and a config diff, each with a CSV button, and the whole
selection as one self-contained HTML report. Called by pages/compare.py.

    draw_compare(url, runs)   # everything below the page title

Links: `compare?group=NAME` and `compare?runs=1,2,3` select what they name; the pickers
write the link back (app/dashboard/links.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from app.dashboard import figures
from app.dashboard.bench_data import bench_markdown, benchmark_results
from app.dashboard.labels_view import search_box
from app.dashboard.links import absent_compare, runs_param, url_run_ids
from app.dashboard.queries import (
    OWN_DOMAIN,
    config_diff_frame,
    format_results,
    results_markdown,
    results_table,
    seed_arms,
    settled,
)
from app.dashboard.report import compare_report
from app.dashboard.retention import retention_rows, retention_summary
from app.dashboard.samples_view import most_divergent
from app.dashboard.series import with_x
from app.dashboard.sweep_data import GridReport
from app.dashboard.sweep_view import draw_grid_view
from app.dashboard.text import md_escape, md_line
from app.dashboard.widgets import (
    cached_evals,
    cached_keys,
    cached_series,
    csv_button,
    get_store,
    plot,
    run_label,
)
from copd.common import names as N
from copd.common.names import VAL_SUFFIX
from copd.common.tables import PaperTable
from storage import Run, RunStatus


@dataclass(frozen=True)
class Controls:
    """The chart controls above the overlays."""

    aggregate: bool  # seeds of one arm as mean ± band
    band: str  # "std" or "minmax"
    smoothing: float
    fmt: str  # the 📷 button's image format
    seed_lines: bool = False  # each seed's own thin line under the band


def draw_compare(url: str, runs: list[Run]) -> None:
    """Search, run picker, controls, metric overlays, results table, config diff."""
    chosen = pick_runs(search_box(runs, key="compare:query"))
    if not chosen:
        st.info("Pick at least one run.")
        st.stop()
    ids = tuple(r.id for r in chosen)
    labels = {r.id: f"#{r.id} {r.name}" for r in chosen}
    arms = seed_arms(chosen)
    ctl = controls(has_seeds=len(set(arms.values())) < len(arms))
    figs = metric_overlays(url, ids, labels, arms if ctl.aggregate else None, ctl)
    table, split = results_section(url, ids, chosen, arms if ctl.aggregate else None)
    benches = benchmarks_section(url, ids, chosen, arms if ctl.aggregate else None)
    retention_section(url, ids, chosen, ctl.fmt)  # where the group holds independent experts
    grid = draw_grid_view(url, chosen, ctl.fmt)  # a group whose runs differ in config fields
    diff = config_diff_section(chosen, labels)
    report_button(chosen, figs, table, diff, split=split, grid=grid, benches=benches)


GROUP_SOURCE, PICK_SOURCE = "Ablation group", "Pick runs"


def follow_link(groups: list[str], by_id: dict[int, Run]) -> None:
    """Put the link's `?group=` / `?runs=` into the pickers' state (before they are drawn),
    so a bookmarked or shared view opens on what it names."""
    qp = st.query_params
    group, picked = qp.get("group"), [i for i in url_run_ids(qp.get("runs")) if i in by_id]
    if group in groups:
        st.session_state["compare:source"] = GROUP_SOURCE
        st.session_state["compare:group"] = group
    elif picked:
        st.session_state["compare:source"] = PICK_SOURCE
        st.session_state["compare:runs"] = picked


def _write_link() -> None:
    """The pickers' selection into the URL (one of group= or runs=)."""
    qp = st.query_params
    if st.session_state.get("compare:source") == GROUP_SOURCE:
        group = st.session_state.get("compare:group")
        qp.pop("runs", None)
        if group:
            qp["group"] = str(group)
    else:
        qp.pop("group", None)
        qp["runs"] = runs_param(list(st.session_state.get("compare:runs") or []))


def pick_runs(runs: list[Run]) -> list[Run]:
    """The runs of an ablation group, or runs picked one by one; follows and writes the
    link (`?group=NAME` / `?runs=1,2,3`)."""
    groups = get_store().list_groups()
    by_id = {r.id: r for r in runs}
    absent = absent_compare(
        st.query_params.get("group"), st.query_params.get("runs"), groups, list(by_id)
    )
    if absent and "compare:source" not in st.session_state:  # a link, not the pickers' own
        st.warning(md_escape(absent))
        st.stop()
    follow_link(groups, by_id)
    sources = [GROUP_SOURCE, PICK_SOURCE] if groups else [PICK_SOURCE]
    if st.session_state.get("compare:source") not in sources:
        st.session_state.pop("compare:source", None)
    source = st.radio(
        "Compare", sources, horizontal=True, key="compare:source", on_change=_write_link
    )
    if source == GROUP_SOURCE:
        if st.session_state.get("compare:group") not in groups:
            st.session_state.pop("compare:group", None)
        group = st.selectbox("Group", groups, key="compare:group", on_change=_write_link)
        _write_link()
        return [r for r in runs if r.group == group]
    if not groups:
        st.caption(
            "Tip: **Launch an ablation set** on the Launch page to get several seeds per "
            "method, shown here as mean ± band."
        )
    if "compare:runs" not in st.session_state:
        default = [r.id for r in runs if r.status == RunStatus.FINISHED][:2] or [runs[0].id]
        st.session_state["compare:runs"] = default
    st.session_state["compare:runs"] = [i for i in st.session_state["compare:runs"] if i in by_id]
    picked = st.multiselect(
        "Runs", list(by_id), format_func=lambda i: run_label(by_id[i]),
        key="compare:runs", on_change=_write_link,
    )  # fmt: skip
    _write_link()
    return [by_id[i] for i in picked]


def controls(*, has_seeds: bool) -> Controls:
    """Aggregation over seeds (offered only when some arm has several), band, smoothing,
    image format."""
    c1, c2, c3, c4, c5 = st.columns([3, 3, 2, 2.4, 1.4])  # the toggles' labels show whole
    aggregate = c1.toggle(
        "Mean ± band over seeds", value=has_seeds, disabled=not has_seeds,
        key=f"compare:agg:{has_seeds}",  # a fresh default when a picked group gains seeds
        help="runs with equal config apart from the seed form one arm",
    )  # fmt: skip
    seed_lines = c2.toggle(
        "Each seed's line", value=False, disabled=not (has_seeds and aggregate),
        key="compare:seedlines", help="draw every seed's own thin line under the band",
    )  # fmt: skip
    band = c3.radio("band", ["std", "min–max"], horizontal=True, key="compare:band")
    smoothing = c4.slider("Smoothing (EMA)", 0.0, 0.99, 0.0, 0.01, key="compare:smooth")
    fmt = c5.selectbox("image", ["png", "svg"], key="compare:fmt", help="format of the 📷 button")
    return Controls(
        aggregate, "std" if band == "std" else "minmax", smoothing, fmt, seed_lines and aggregate
    )


def metric_overlays(
    url: str,
    ids: tuple[int, ...],
    labels: dict[int, str],
    arms: dict[int, str] | None,
    ctl: Controls,
) -> list[Any]:
    """A metric picker (overlap and reward first) and one overlay chart + CSV per metric;
    returns the figures (for the report)."""
    keys = cached_keys(url, ids)
    top10 = N.overlap_key(10)
    preferred = [
        k
        for k in keys
        if k in (N.pair("add", "rev", top10), N.branch("add", N.REWARD_MEAN))
        or N.parse(k).is_("pair", top10)
    ]
    metrics = st.multiselect(
        "Metrics", keys, default=list(dict.fromkeys(preferred))[:2], key="compare:metrics"
    )
    out = []
    for key in metrics:
        df = with_x(cached_series(url, ids, (key,), 500), "step")
        fig = figures.compare_figure(
            df, labels, title=key, arms=arms, band=ctl.band, smoothing=ctl.smoothing,
            revision=f"compare:{key}", seed_lines=ctl.seed_lines, log_y=key.endswith("/sym_kl"),
        )  # fmt: skip
        plot(fig, f"compare:{key}", ctl.fmt)
        out.append(fig)
        name = key.replace("/", "_") + ".csv"
        csv_button(df.drop(columns=["x"]), f"CSV: {key}", name, f"csv:{key}")
    return out


def results_section(
    url: str, ids: tuple[int, ...], chosen: list[Run], arms: dict[int, str] | None
) -> tuple[pd.DataFrame, str]:
    """The results table from each run's latest evaluation (mean ± std with `arms`), on
    the split it says (test, or the final evaluation's validation scores); returns the
    table and its split."""
    evals = cached_evals(url, ids)
    has_val = bool(len(evals)) and evals["benchmark"].astype(str).str.endswith(VAL_SUFFIX).any()
    split = "test"
    if has_val:
        split = st.radio(
            "results split", ["test", "validation"], horizontal=True, key="compare:split",
            help="the held-out test split, or the validation split of the final evaluation",
        )  # fmt: skip
    st.subheader(f"Results: {split} split, final evaluation of each finished run")
    finished, unfinished = settled(chosen, evals)
    if unfinished:
        st.caption(
            md_line(
                "Unfinished, left out of the table, its means and bands (a run's result is "
                "its final evaluation): " + "; ".join(unfinished) + "."
            )
        )
    kept = evals[evals["run_id"].isin([r.id for r in finished])] if len(evals) else evals
    table = results_table(kept, finished, arms, split=split)
    if table.empty:
        st.info(
            f"No {split} evaluations recorded for these runs yet (they are written every few "
            "cycles; validation scores come with a run's final evaluation)."
        )
        return table, split
    st.caption(
        f"Scores on the {split} split. Rows: method · model (each branch, the merged model, "
        f"and for independent experts the {OWN_DOMAIN}: each expert on its own domain, "
        "their reported model). Columns: each benchmark (domain), then Overall = mean over "
        "benchmarks. Best per column in bold." + (" Cells: mean ± std over seeds." if arms else "")
    )
    st.markdown(results_markdown(table))
    csv_button(format_results(table), "CSV: results table", "results.csv", "csv:results")
    csv_button(evals, "CSV: all evaluations", "evaluations.csv", "csv:evals")
    return table, split


def benchmarks_section(
    url: str, ids: tuple[int, ...], chosen: list[Run], arms: dict[int, str] | None
) -> PaperTable | None:
    """The configured benchmarks (apart from the training domains) in the paper's layout,
    from each finished run's final evaluation; nothing where no run has one."""
    evals = cached_evals(url, ids)
    finished, _ = settled(chosen, evals)
    table = benchmark_results(evals, finished, arms)
    if table is None:
        return None
    st.subheader("Benchmarks: columns grouped by capability, final evaluation")
    st.caption(
        "The runs' configured benchmarks (config `benchmarks`), scored apart from the "
        "training domains: each benchmark under its capability, the group's average, then "
        "Overall = mean over every benchmark (per seed, then over seeds). Best per column "
        "in bold." + (" Cells: mean ± std over seeds." if arms else "")
    )
    st.markdown(bench_markdown(table))
    return table


def retention_section(url: str, ids: tuple[int, ...], chosen: list[Run], fmt: str) -> None:
    """The paper's claim, per domain: how much of that domain's expert each method's
    reported model keeps (same seed, final test scores, finished runs only); shown where
    the chosen runs include independent experts and another method."""
    evals = cached_evals(url, ids)
    finished, _ = settled(chosen, evals)
    rows = retention_rows(evals, finished)
    if rows.empty:
        return
    st.subheader("Retention: each domain's expert score kept, per method")
    summary = retention_summary(rows)
    what = st.radio(
        "retention of", ["share", "gain_share"], horizontal=True, key="compare:retention",
        format_func={"share": "the expert's score", "gain_share": "the expert's gain over the base"}.get,
    )  # fmt: skip
    if what == "gain_share" and summary["gain_share"].isna().all():
        st.caption("No step-0 (base) evaluations in these runs: the gain cannot be computed.")
        return
    plot(figures.retention_figure(summary, what), f"compare:retention:{what}", fmt)
    st.caption(
        "Each bar: mean over seeds (±std) of the reported model's final test score on the "
        "domain divided by the same seed's independent expert of that domain"
        + (" (gain: minus the base's step-0 score, both)" if what == "gain_share" else "")
        + ". 1 = the expert's level."
    )
    csv_button(rows, "CSV: retention per run and domain", "retention.csv", "csv:retention")


def config_diff_section(chosen: list[Run], labels: dict[int, str]) -> pd.DataFrame:
    """The config fields in which the chosen runs differ."""
    st.subheader("Config differences")
    if len(chosen) < 2:
        st.caption("Pick two or more runs to see how their configs differ.")
        return pd.DataFrame()
    diff = config_diff_frame(chosen, labels)
    if diff.empty:
        st.caption("The configs are identical.")
    else:
        st.dataframe(diff)
        csv_button(diff, "CSV: config diff", "config_diff.csv", "csv:diff")
    return diff


def report_button(
    chosen: list[Run],
    figs: list[Any],
    table: pd.DataFrame,
    diff: pd.DataFrame,
    *,
    split: str = "test",
    grid: GridReport | None = None,
    benches: PaperTable | None = None,
) -> None:
    """Download the selection as one self-contained HTML file (opens offline)."""
    st.subheader("Report")
    groups = sorted({r.group for r in chosen if r.group})
    title = (
        f"Group {groups[0]}" if len(groups) == 1 else f"Runs {runs_param([r.id for r in chosen])}"
    )
    st.download_button(
        "Download report (HTML)",
        # built when clicked (plotly.js is inlined: ~5 MB), not on every rerun
        lambda: compare_report(
            chosen,
            figs,
            table,
            diff,
            title=f"copd: {title}",
            split=split,
            grid=grid,
            samples=most_divergent([r.id for r in chosen]),
            benchmarks=benches,
        ).encode(),
        file_name=f"copd-report-{title.split()[-1].replace(',', '-')}.html",
        mime="text/html",
        key="compare:report",
        help="the figures with their data, the results table (with its split), the grid view "
        "and its paired test, the config differences and each run's code revision, in one "
        "file that opens offline",
    )
