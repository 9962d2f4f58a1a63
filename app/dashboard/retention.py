"""The paper's retention claim as numbers: for each domain, how much of the single-domain
expert's score a method's reported model keeps, per method, over seeds.

    per_seed = retention_rows(evals, runs)     # one row per (run, domain): score, expert, base
    summary = retention_summary(per_seed)      # method x domain: mean ± std over seeds, n

A run is paired with the independent-experts run of the same seed (the expert of domain d
scored on d: its reported model, OWN_DOMAIN). `share` = score / expert score; `gain_share`
= (score − base) / (expert − base), the share of the expert's gain over the base model that
the method keeps (the base: step-0 scores, where every model is the base; left out where
the expert gained under 0.01, a ratio of noise). Only finished runs count (`settled`),
the test split, each run's final evaluation. Pure: no Streamlit.
"""

from __future__ import annotations

import pandas as pd

from app.dashboard.queries import latest_evals, reported_model, with_own_domain
from app.dashboard.series import benchmarks_only
from copd.common.stats import mean_std
from copd.spec import OWN_DOMAIN
from storage import Run

MIN_GAIN = 0.01  # an expert gain below this makes gain_share a ratio of noise: left out
COLUMNS = ["run_id", "method", "seed", "domain", "score", "expert", "base", "share", "gain_share"]


def base_scores(evals: pd.DataFrame, runs: list[Run]) -> dict[tuple[int, str], float]:
    """(seed, benchmark) -> the base model's test score: the mean of the step-0
    evaluations of that seed's runs (every model at step 0 is the base)."""
    seed = {r.id: r.seed for r in runs}
    ev = benchmarks_only(evals)
    ev = ev[(ev["step"] == 0) & ev["run_id"].isin(seed)]
    if ev.empty:
        return {}
    ev = ev.assign(seed=ev["run_id"].map(seed))
    return ev.groupby(["seed", "benchmark"])["score"].mean().to_dict()


def retention_rows(evals: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """One row per (non-expert run, domain) that has a same-seed expert: its reported
    model's final test score, the expert's, the base's, and the two shares."""
    if evals.empty:
        return pd.DataFrame(columns=COLUMNS)
    final = with_own_domain(latest_evals(benchmarks_only(evals)), runs)
    by_id = {r.id: r for r in runs}
    reported = {r.id: reported_model(r) for r in runs}  # once per run, not per row
    experts = {r.id for r in runs if reported[r.id] == OWN_DOMAIN}
    expert_score = {
        (by_id[int(rid)].seed, bench): score
        for rid, model, bench, score in final[["run_id", "model", "benchmark", "score"]].itertuples(
            index=False
        )
        if int(rid) in experts and model == OWN_DOMAIN
    }
    base = base_scores(evals, runs)
    rows = []
    for rid, model, bench, score in final[["run_id", "model", "benchmark", "score"]].itertuples(
        index=False
    ):
        run = by_id.get(int(rid))
        if run is None or run.id in experts or model != reported[run.id]:
            continue
        expert = expert_score.get((run.seed, bench))
        if expert is None:
            continue
        b = base.get((run.seed, bench))
        gain = (
            (score - b) / (expert - b) if b is not None and expert - b >= MIN_GAIN else float("nan")
        )
        share = score / expert if expert > 0 else float("nan")
        rows.append([run.id, run.method, run.seed, bench, score, expert, b, share, gain])
    return pd.DataFrame(rows, columns=COLUMNS)


def retention_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """method x domain: mean and std over seeds of `share` and `gain_share`, and n."""
    cols = ["method", "domain", "share", "share std", "gain_share", "gain_share std", "n"]
    out = []
    for (method, domain), g in rows.groupby(["method", "domain"], sort=True):
        s, s_sd = mean_std(g["share"].dropna().tolist())
        gs, gs_sd = mean_std(g["gain_share"].dropna().tolist())
        out.append([method, domain, s, s_sd, gs, gs_sd, len(g)])
    return pd.DataFrame(out, columns=cols)
