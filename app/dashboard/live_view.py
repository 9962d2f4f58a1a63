"""The Live run view's charts for one run (Streamlit), drawn by pages/live.py, whose
auto-refresh reruns the page only when `live_signature` changes. Each chart has a stable
key and a constant uirevision, so zoom survives refreshes; data comes downsampled from the
store, and a figure is rebuilt only when its data moved (`widgets.memo`).

    draw_run(run, url, smoothing="auto", x="step", max_points=500)

A first draw shows the header, the group overlay (or, for a run alone, its overlap and
symmetric KL), rewards and evaluations; the other charts (each pair's overlap and KL,
overlap vs base, reward signal, overlap at k, signal balance, time and system) sit in
sections drawn only while open (`lazy_section`), so a browser draws four charts, not
thirteen, before the page is usable.

Above the run's own charts: its alerts, and when the run belongs to a group (the demo's
CoPD run and independent experts, an ablation set), the group overlay: overlap and
symmetric KL between the branches, one line per method (the paper's Fig. 4a/b). Phase
bands and cycle lines come from the run's schedule (`series.schedule_of`).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.dashboard import figures
from app.dashboard.charts import (
    LINE_CHARTS,
    PRIMARY_CHARTS,
    chart_smoothing,
    select_keys,
)
from app.dashboard.labels_view import labels_line
from app.dashboard.queries import status_label
from app.dashboard.series import (
    Schedule,
    cycle_text,
    describe_nonfinite,
    mean_over_keys,
    nonfinite_points,
    percent,
    progress_of,
    schedule_of,
    with_x,
)
from app.dashboard.signal_data import overlap_k_keys, signal_branches
from app.dashboard.signal_view import draw_overlap_at_k, draw_signal_balance
from app.dashboard.sweep_data import ARM_SEP, run_values, swept_params
from app.dashboard.text import md_escape, md_line
from app.dashboard.widgets import (
    cached_alerts,
    cached_evals,
    cached_keys,
    cached_runs,
    cached_series,
    csv_button,
    data_version,
    group_run_ids,
    lazy_section,
    memo,
    plot,
)
from copd.common import names as N
from copd.spec import has_teachers, method_label
from storage import Run, RunStatus


def _labelled(df: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    d = df[df["key"].isin(labels)]
    return d.assign(label=d["key"].map(labels))


def run_data(
    run: Run, url: str, *, x: str, max_points: int, version: tuple = ()
) -> tuple[dict[str, list[str]], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The run's chart groups, its series (x added), its progress points and evaluations."""
    groups = select_keys(cached_keys(url, (run.id,), version))
    wanted = tuple(k for g in groups.values() for k in g) + (N.PROGRESS,)
    everything = cached_series(url, (run.id,), wanted, max_points, version)
    progress = everything[everything["key"] == N.PROGRESS]
    df = with_x(everything[everything["key"] != N.PROGRESS], x)
    return groups, df, progress, cached_evals(url, (run.id,), version)


def view_run_ids(run: Run, url: str) -> tuple[int, ...]:
    """The runs the Live view of `run` draws: the run and the rest of its group (an
    indexed read of the group, not the list of every run)."""
    return tuple(sorted(set(group_run_ids(url, run.group)) | {run.id}))


def live_signature(run: Run, url: str) -> tuple:
    """What the Live view of `run` is drawn from: its status, progress (whole percent, as
    shown) and error, and the data signature of it and its group (RunStore.data_version).
    pages/live.py reruns the page only when this changes."""
    return (run.status, percent(run.progress), run.error, data_version(url, view_run_ids(run, url)))


def draw_run(
    run: Run, url: str, *, smoothing: float | str, x: str, max_points: int, fmt: str
) -> None:
    """Header, NaN warning and every chart of one run. The run's data signature is read
    first (RunStore.data_version: a few index reads); while it is unchanged the series are
    not read again and no figure is rebuilt (`memo`)."""
    rid = run.id
    version = data_version(url, (rid,))
    groups, df, progress, evals = memo(
        f"live:{rid}:data", (version, x, max_points),
        lambda: run_data(run, url, x=x, max_points=max_points, version=version),
    )  # fmt: skip
    sig = (version, x, max_points, smoothing)  # what every figure below is drawn from
    sched = schedule_of(run.config, run.method)
    run_header(run, df, progress, sched)
    run_alerts(url, run.id, version)
    overlaid = group_overlay(run, url, x=x, smoothing=smoothing, max_points=max_points, fmt=fmt)
    if df.empty:
        st.info(
            "No metrics logged yet. The trainer writes its first points after the first "
            "step; this view refreshes by itself."
        )
        return
    kw = dict(x=x, smoothing=smoothing, fmt=fmt, schedule=sched, method=run.method, sig=sig)
    # in a group, the overlay above already draws this run's overlap and KL (its pairs'
    # mean): the per-pair charts wait in a section
    primary = ("reward",) if overlaid else PRIMARY_CHARTS
    line_charts(df, groups, rid, only=primary, **kw)
    if len(evals):
        fig = memo(f"live:{rid}:eval", sig,
                   lambda: figures.eval_figure(evals, revision=f"eval:{rid}"))  # fmt: skip
        plot(fig, f"live:{rid}:eval", fmt)
    # The rest is drawn when its section is open: a browser draws each chart in turn, and
    # a first draw of every chart of a run took seconds (docs/PERFORMANCE.md P7).
    keys = cached_keys(url, (rid,), version)
    more = [c.group for c in LINE_CHARTS if c.group not in primary and groups[c.group]]
    if more or len(overlap_k_keys(keys, "pair")) > 1:
        pairs = "each pair's overlap and KL, " if overlaid else ""
        label = f"More charts: {pairs}overlap vs base, reward signal, overlap at k"
        with lazy_section(label, "more") as box:
            if box.open:
                line_charts(df, groups, rid, only=tuple(more), **kw)
                draw_overlap_at_k(run, url, x=x, max_points=max_points, fmt=fmt, version=version)
    if signal_branches(keys):
        with lazy_section("Signal balance: the terms of each update", "signal") as box:
            if box.open:
                draw_signal_balance(run, url, x=x, max_points=max_points, fmt=fmt, version=version)
    if groups["time"] or figures.provided_system_keys(df):
        with lazy_section("Time and system: where a step goes, memory, GPU", "system") as box:
            if box.open:
                time_and_system(df, groups, rid, x=x, fmt=fmt, sig=sig)
    downloads(df, evals, rid)


def time_and_system(
    df: pd.DataFrame, groups: dict[str, list[str]], rid: int, *, x: str, fmt: str, sig: object
) -> None:
    """Where a step's time goes, and the sampled system metrics, side by side."""
    left, right = st.columns(2)
    with left:
        if groups["time"]:
            fig = memo(f"live:{rid}:time", sig,
                       lambda: figures.timing_figure(df, revision=f"time:{rid}"))  # fmt: skip
            plot(fig, f"live:{rid}:time", fmt)
    with right:
        if figures.provided_system_keys(df):
            fig = memo(f"live:{rid}:system", sig,
                       lambda: figures.system_figure(df, x=x, revision=f"sys:{rid}"))  # fmt: skip
            plot(fig, f"live:{rid}:system", fmt)


def run_header(
    run: Run, df: pd.DataFrame, progress: pd.DataFrame, sched: Schedule | None = None
) -> None:
    """Status, progress (from the logged steps), last step and cycle, a progress bar that
    follows the steps; the run's error; a list of NaN/inf points."""
    total = sched.total if sched is not None else None
    prog = progress_of(run.progress, progress, total)
    last = max(prog.step, int(df["step"].max()) if len(df) else 0)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("status", status_label(run.status))
    c2.metric("progress", percent(prog.fraction))
    c3.metric("last step", f"{last}" + (f" / {prog.total}" if prog.total else ""))
    c4.metric("cycle", cycle_text(last, sched), help="1-based, of the schedule's cycles")
    if labels := labels_line(run):
        st.text(labels)  # user text: plain, never markdown
    text = f"step {last} of {prog.total}" if prog.total else f"step {last}"
    st.progress(prog.fraction, text=f"{text} · {percent(prog.fraction)}")
    if run.status in (RunStatus.FAILED, RunStatus.CRASHED) and run.error:
        st.error(f"{run.status}: {md_line(run.error.splitlines()[0])}")
    bad = nonfinite_points(df)
    if len(bad):
        st.warning(
            "Non-finite values (marked ✕ on the charts):\n\n"
            + "\n".join(f"- {md_escape(line)}" for line in describe_nonfinite(bad))
        )


def alert_line(message: str, step: int | None) -> str:
    """An alert as one markdown line, its step added where the message does not name it
    ("... at step 10", not "... at step 10 (step 10)")."""
    said = step is None or f"step {step}" in message
    return md_line(message) + ("" if said else f" (step {step})")


def run_alerts(url: str, run_id: int, version: tuple = ()) -> None:
    """The run's recorded alerts (rules in app/control/alerts.py), newest last."""
    alerts = cached_alerts(url, run_id, version)
    if alerts:
        st.warning(
            f"{len(alerts)} alert(s):\n\n"  # st.warning draws its own icon
            + "\n".join(f"- {alert_line(a.message, a.step)}" for a in alerts)
        )


def group_overlay(
    run: Run, url: str, *, x: str, smoothing: float | str, max_points: int, fmt: str
) -> bool:
    """The run's group, overlaid: branch-vs-branch overlap and symmetric KL, one line per
    run (the mean over its ordered pairs), labelled by method; CoPD's phases shaded.
    Whether it drew a chart."""
    if not run.group:
        return False
    peers = sorted((r for r in cached_runs(url) if r.group == run.group), key=lambda r: r.id)
    if len(peers) < 2:
        return False
    ids = tuple(sorted(r.id for r in peers))
    version = data_version(url, ids)
    keys = cached_keys(url, ids, version)
    drawn = select_keys(list(keys))  # the catalogue's pair charts, for every run of the group
    overlap, sym_kl = tuple(drawn["overlap"]), tuple(drawn["sym_kl"])
    methods = list(dict.fromkeys(method_label(r.method) for r in peers))
    st.subheader(f"Group {md_line(run.group)}: " + " vs ".join(methods))
    st.caption(
        " · ".join(
            f"#{r.id} {method_label(r.method)} {status_label(r.status)} {percent(r.progress)}"
            for r in peers
        )
        + ". Each line: the mean over the run's ordered branch pairs."
    )
    if not overlap and not sym_kl:
        st.info("No branch-pair diagnostics yet; they are measured every few steps.")
        return False
    labels = overlay_labels(peers)
    sched = next((schedule_of(r.config, r.method) for r in peers if r.method == "copd"), None)
    df = memo(
        f"live:group:{run.group}:data", (version, ids, x, max_points),
        lambda: with_x(cached_series(url, ids, overlap + sym_kl, max_points, version), x),
    )  # fmt: skip
    sig = (version, ids, x, max_points, smoothing, tuple(labels.items()))
    left, right = st.columns(2)
    drew = False
    for col, metric_keys, title, y_title, log_y, name in (
        (
            left,
            overlap,
            "Top-10 overlap by method (mean of a~b, b~a)",
            "overlap@10",
            False,
            "overlap",
        ),
        (
            right,
            sym_kl,
            "Symmetric KL by method (mean of a~b, b~a)",
            "KL(p‖q)+KL(q‖p)",
            True,
            "sym_kl",
        ),
    ):
        d = mean_over_keys(df[df["key"].isin(metric_keys)])
        if d.empty:
            continue
        d = d.assign(label=d["run_id"].map(labels), key=name)

        def build(d=d, title=title, y_title=y_title, log_y=log_y, name=name):
            return figures.series_figure(
                d, title=title, y_title=y_title, x=x,  # the methods: in the subheader
                smoothing=chart_smoothing(smoothing, name), log_y=log_y, schedule=sched,
                revision=f"group:{run.group}:{name}",
            )  # fmt: skip

        fig = memo(f"live:group:{run.group}:{name}", sig, build)
        with col:
            plot(fig, f"live:group:{run.group}:{name}", fmt)
        drew = True
    return drew


def overlay_labels(runs: list[Run]) -> dict[int, str]:
    """run id -> legend label, by what differs between the runs (their config diff, as the
    Compare page's grid view reads it): the method's name, then the other swept values
    (`CoPD · beta=0.5`), then the seed where an arm has several; `#id` only for runs
    that would still read alike."""
    params = swept_params(runs)
    values = run_values(runs, {p: v for p, v in params.items() if p != "method"})
    swept = dict(zip(values["run_id"], values["arm"], strict=True))
    labels = {r.id: ARM_SEP.join(x for x in (method_label(r.method), swept[r.id]) if x)
              for r in runs}  # fmt: skip
    for label in set(labels.values()):
        same = [r for r in runs if labels[r.id] == label]
        if len(same) > 1:
            seeds = [r.seed for r in same]
            for r in same:
                tail = f"seed {r.seed}" + ("" if seeds.count(r.seed) == 1 else f" #{r.id}")
                labels[r.id] = f"{label}{ARM_SEP}{tail}"
    return labels


def overlap_title(method: str) -> str:
    """The run's own overlap chart title: the pair is `student~teacher` only where a branch
    has a teacher; experts and the other baselines have none."""
    pairs = "student~teacher" if has_teachers(method) else "branch~branch, no teacher"
    return f"Top-10 overlap between branches ({pairs})"


def line_charts(
    df: pd.DataFrame,
    groups: dict[str, list[str]],
    rid: int,
    *,
    x: str,
    smoothing: float | str,
    fmt: str,
    schedule: Schedule | None = None,
    method: str = "copd",
    sig: object = None,
    only: tuple[str, ...] | None = None,
) -> None:
    """The line charts of the catalogue (app/dashboard/charts.py) whose group has keys (of
    `only`, when given), in its order; phases shaded from `schedule` (none for a
    baseline); the overlap title by the run's `method`. With `sig`, a figure is rebuilt only when `sig` changes (`memo`)."""
    for chart in LINE_CHARTS:
        group = chart.group
        if only is not None and group not in only:
            continue
        title = overlap_title(method) if group == "overlap" else chart.title
        if groups[group]:

            def build(chart=chart, title=title):
                return figures.series_figure(
                    _labelled(df, chart.labels(groups[chart.group])),
                    title=title,
                    y_title=chart.y_title,
                    x=x,
                    smoothing=chart_smoothing(smoothing, chart.group),
                    log_y=chart.log_y,
                    schedule=schedule,
                    revision=f"{chart.group}:{rid}",
                )

            fig = build() if sig is None else memo(f"live:{rid}:{group}", (sig, method), build)
            plot(fig, f"live:{rid}:{group}", fmt)


def downloads(df: pd.DataFrame, evals: pd.DataFrame, rid: int) -> None:
    """CSV buttons for the series and (when there are any) the evaluations."""
    d1, d2 = st.columns(2)
    with d1:
        csv_button(
            df.drop(columns=["x"]),
            "Download series (CSV)",
            f"run{rid}-series.csv",
            f"live:{rid}:csv",
        )
    with d2:
        if len(evals):
            csv_button(
                evals, "Download evaluations (CSV)", f"run{rid}-evals.csv", f"live:{rid}:evcsv"
            )
