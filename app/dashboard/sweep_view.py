"""The Compare page's grid-sweep view (Streamlit): for a store group whose runs differ in
some config fields (a `copd sweep --grid` set, or presets of an ablation set), the final
score against each swept parameter with a band over seeds, a heatmap of two parameters,
and a paired comparison of any two arms over their common seeds. Data and figures come
from app/dashboard/sweep_data.py.

    draw_grid_view(url, chosen)   # nothing unless the runs are one group with >= 2 arms
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import streamlit as st

from app.dashboard.figures import heatmap_figure, parallel_figure, param_figure
from app.dashboard.queries import settled
from app.dashboard.sweep_data import (
    GridReport,
    benches,
    eval_models,
    heatmap_frame,
    left_out,
    paired_arms,
    param_band,
    reported_evals,
    score_table,
    sort_key,
    swept_params,
)
from app.dashboard.text import md_line, plural
from app.dashboard.widgets import cached_evals, csv_button, plot
from copd.common.names import VAL_SUFFIX
from copd.common.tables import OVERALL

if TYPE_CHECKING:
    from storage import Run


def draw_grid_view(url: str, chosen: list[Run], fmt: str = "png") -> GridReport | None:
    """The grid view of one group's runs (the whole section, or nothing when the runs are
    not one group or do not differ in any config field); returns what it showed, for the
    report."""
    groups = {r.group for r in chosen}
    if len(chosen) < 2 or len(groups) != 1 or not next(iter(groups)):
        return None
    params = swept_params(chosen)
    if not params:
        return None
    st.subheader("Grid sweep: final score per swept parameter")
    swept = "Swept (config fields that differ across the group): " + "; ".join(
        f"{p} ∈ {{{', '.join(str(v) for v in vs)}}}" for p, vs in params.items()
    )
    st.caption(md_line(swept))
    evals = reported_evals(cached_evals(url, tuple(r.id for r in chosen)), chosen)
    models = eval_models(evals)
    if not models:
        st.info("No evaluations recorded for this group yet.")
        return None
    has_val = bool(len(evals)) and evals["benchmark"].astype(str).str.endswith(VAL_SUFFIX).any()
    c1, c2, c3 = st.columns(3)
    split = c1.radio(
        "split", ["validation", "test"], index=0 if has_val else 1, horizontal=True,
        key="compare:sweep:split",
        help="choose settings on validation (`<task>@val`, scored by the final evaluation); "
        "report the held-out test split",
    )  # fmt: skip
    model = c2.selectbox("model", models, key="compare:sweep:model")
    finished, unfinished = settled(chosen, evals)
    table = score_table(evals, finished, params, model=model, split=split)
    if table.empty:
        st.info(
            f"No {split} scores of {md_line(model)} yet (validation scores come with a run's final "
            "evaluation)."
        )
        return None
    missing = unfinished + left_out(finished, table, model, split)
    options = benches(table)
    bench = c3.selectbox("score", options, index=options.index(OVERALL), key="compare:sweep:bench")
    report = GridReport(split, model, bench, lines=[swept, f"{split} split, model: {model}."])
    if missing:
        report.lines.append("Left out of this view: " + "; ".join(missing) + ".")
        st.caption(md_line(report.lines[-1]))
    cols = st.columns(min(2, len(params)))
    for i, p in enumerate(params):
        with cols[i % len(cols)]:
            fig = param_figure(param_band(table, p, bench), p, bench, split)
            plot(fig, f"compare:sweep:vs:{p}", fmt)
            report.figures.append(fig)
    if len(params) >= 2:
        report.figures.append(heatmap(table, list(params), bench, split, fmt))
        fig = parallel_figure(table, list(params), bench)
        plot(fig, "compare:sweep:parcoords", fmt)
        report.figures.append(fig)
    report.lines += paired_section(table, list(params), bench, split)
    csv_button(table, "CSV: final scores per run", "sweep_scores.csv", "csv:sweep")
    return report


def heatmap(table: Any, params: list[str], bench: str, split: str, fmt: str) -> Any:
    """Mean score per cell of two chosen parameters (averaged over seeds and the rest)."""
    st.markdown("**Two parameters at once**")
    c1, c2 = st.columns(2)
    p_row = c1.selectbox("rows", params, index=0, key="compare:sweep:row")
    p_col = c2.selectbox(
        "columns", [p for p in params if p != p_row], index=0, key=f"compare:sweep:col:{p_row}"
    )
    cells = heatmap_frame(table, p_row, p_col, bench)
    fig = heatmap_figure(cells, bench, split)
    plot(fig, "compare:sweep:heatmap", fmt)
    st.dataframe(cells, key="compare:sweep:cells")
    return fig


def arm_order(table: Any, params: list[str]) -> list[str]:
    """Arms in grid order (first parameter slowest, values in numeric order)."""
    first = table.drop_duplicates("arm")
    keyed = [(tuple(sort_key(row[p]) for p in params), row["arm"]) for _, row in first.iterrows()]
    return [arm for _, arm in sorted(keyed)]


def paired_section(table: Any, params: list[str], bench: str, split: str) -> list[str]:
    """Arm A vs arm B over the seeds both ran: mean difference, 95% CI, permutation p;
    returns the result as lines of text (for the report)."""
    arms = arm_order(table, params)
    if len(arms) < 2:
        return []
    st.markdown("**Paired comparison of two arms (same seeds)**")
    c1, c2 = st.columns(2)
    a = c1.selectbox("arm A", arms, index=len(arms) - 1, key="compare:sweep:a")
    b = c2.selectbox("arm B", arms, index=0, key="compare:sweep:b")
    result, seeds = paired_arms(table, a, b, bench)
    if result.n == 0:
        st.info("The two arms share no seed: nothing to pair.")
        return [f"Paired comparison: {a} and {b} share no seed."]
    m1, m2, m3, m4 = st.columns([1, 2, 1, 1])  # the interval needs room to show whole
    m1.metric(f"mean {md_line(bench)} A − B", f"{result.diff:+.4f}")
    ci = "n/a" if math.isnan(result.ci_low) else f"[{result.ci_low:+.4f}, {result.ci_high:+.4f}]"
    m2.metric("95% CI", ci)
    p = "n/a" if math.isnan(result.p_value) else f"{result.p_value:.3g}"
    m3.metric("p (paired permutation)", p)
    m4.metric("seeds", result.n)
    note = (
        f"{split} split. A = {a} (mean {result.mean_a:.4f}), B = {b} (mean "
        f"{result.mean_b:.4f}), seeds {seeds}. CI: Student t over the per-seed differences; "
        f"p: {result.p_method} test of mean(A − B) = 0."
        + (
            f" With {plural(result.n, 'seed')} no p below {2 / 2**result.n:.3g} is possible."
            if result.n <= 16
            else ""
        )
    )
    st.caption(md_line(note))
    return [
        f"Paired comparison on {bench}: mean A − B = {result.diff:+.4f}, 95% CI {ci}, p = {p}, "
        f"{plural(result.n, 'seed')}.",
        note,
    ]
