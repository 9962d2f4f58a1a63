"""Read models and figures of a grid sweep (pure: no Streamlit, no store), for the Compare
page's grid view (app/dashboard/sweep_view.py).

A sweep (`copd sweep --grid opd.beta=0.5,1 --grid schedule.rl_steps=3,6 --seeds 0,1,2`) is
one store group; the swept parameters are read back from the runs' configs as the fields
that differ across the group (the seed, name and group aside). Runs with the same values of
every swept parameter form one arm (a grid point or a preset); its runs are its seeds.

    params = swept_params(runs)                       # {"opd.beta": [0.5, 1], ...}
    table = score_table(store.evaluations(ids), runs, params, model="merged", split="test")
    band = param_band(table, "opd.beta", "Overall")   # mean ± std over seeds per value
    cells = heatmap_frame(table, "opd.beta", "schedule.rl_steps")
    result, seeds = paired_arms(table, "beta=1 · rl_steps=3", "beta=0.5 · rl_steps=3")

Scores are each run's latest evaluation of one model on one split: test ("<task>") or
validation ("<task>@val", written by the final evaluation). Overall per run is the mean
over its domains (the rule of copd.common.tables), so these numbers match the results table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from app.dashboard.queries import (
    IDENTITY_FIELDS,
    OWN_DOMAIN,
    flatten_config,
    reported_model,
    with_own_domain,
)
from copd.common.names import VAL_SUFFIX
from copd.common.stats import Paired, mean_std, paired
from copd.common.tables import OVERALL, is_benchmark

if TYPE_CHECKING:
    from storage import Run

SPLITS = ("validation", "test")
ARM_SEP = " · "


@dataclass
class GridReport:
    """What the Compare page's grid view showed, for the HTML report: its figures and its
    lines of text (what was swept, what was left out, the paired test)."""

    split: str
    model: str
    bench: str
    figures: list[Any] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def sort_key(v: Any) -> tuple[int, float, str]:
    """Numbers in numeric order first, then everything else by its text."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def show(v: Any) -> str:
    return "—" if v is None else str(v)


def swept_params(runs: list[Run]) -> dict[str, list[Any]]:
    """The config fields (dotted) whose values differ across `runs`, seed/name/group aside,
    each with its distinct values in order. When the runs mix presets (`method` differs),
    fields that follow from the preset alone (one value per method: its budget, its own
    defaults) fold into `method`, so a preset x grid sweep shows `method` and the grid keys."""
    flat = [
        {k: v for k, v in flatten_config(r.config or {}).items() if k not in IDENTITY_FIELDS}
        for r in runs
    ]
    keys = sorted({k for f in flat for k in f})
    out: dict[str, list[Any]] = {}
    for k in keys:
        values = [f.get(k) for f in flat]
        distinct = list({show(v): v for v in values}.values())
        if len(distinct) > 1:
            out[k] = sorted(distinct, key=sort_key)
    if "method" in out:
        for k in [k for k in out if k != "method"]:
            per_method: dict[str, set[str]] = {}
            for f in flat:
                per_method.setdefault(show(f.get("method")), set()).add(show(f.get(k)))
            if all(len(v) == 1 for v in per_method.values()):
                del out[k]
    return out


def short_names(params: list[str]) -> dict[str, str]:
    """`opd.beta` -> `beta`, unless two swept keys share their last part."""
    last = [p.rsplit(".", 1)[-1] for p in params]
    return {p: (s if last.count(s) == 1 else p) for p, s in zip(params, last, strict=True)}


def arm_label(values: dict[str, Any]) -> str:
    """An arm's label from its swept values: `beta=0.5 · rl_steps=3` (the method alone
    when it is the only difference)."""
    names = short_names(list(values))
    return ARM_SEP.join(
        show(v) if p == "method" else f"{names[p]}={show(v)}" for p, v in values.items()
    )


def run_values(runs: list[Run], params: dict[str, list[Any]]) -> pd.DataFrame:
    """One row per run: run_id, seed, arm, and each swept parameter's value."""
    rows = []
    for r in runs:
        flat = flatten_config(r.config or {})
        values = {p: flat.get(p) for p in params}
        rows.append({"run_id": r.id, "seed": r.seed, "arm": arm_label(values), **values})
    return pd.DataFrame(rows, columns=["run_id", "seed", "arm", *params])


REPORTED = "reported model"


def reported_evals(evals: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """`evals` plus, per run, its reported model (queries.reported_model: the merged model,
    mixed GRPO's or MOPD's one policy, the static-OPD student, each expert on its own
    domain) as REPORTED, so a group of methods compares each by what it reports."""
    ev = with_own_domain(evals, runs)
    if ev.empty:
        return ev
    reported = {r.id: reported_model(r) for r in runs}
    pick = ev["model"].astype(str) == ev["run_id"].map(reported)
    return pd.concat([ev, ev[pick].assign(model=REPORTED)], ignore_index=True)


def eval_models(evals: pd.DataFrame) -> list[str]:
    """Models with evaluations: each run's reported model first, then the merged model (a
    CoPD run's final product)."""
    if evals.empty:
        return []
    order = {REPORTED: -1, "merged": 0, OWN_DOMAIN: 0, "base": 2}
    return sorted(evals["model"].astype(str).unique(), key=lambda m: (order.get(m, 1), m))


def left_out(runs: list[Run], table: pd.DataFrame, model: str, split: str) -> list[str]:
    """The runs a score table lacks, each with why: `#2 expert: no reported model ...`."""
    have = set(table["run_id"]) if len(table) else set()
    why = (
        f"no {split} evaluation of its {model}"
        if model != "merged"
        else f"no merged model on the {split} split (experts are not merged)"
    )
    return [f"#{r.id} {r.method}: {why}" for r in runs if r.id not in have]


def final_scores(evals: pd.DataFrame, model: str, split: str = "test") -> pd.DataFrame:
    """Each run's latest evaluation of `model` on `split`: columns run_id, bench, score, one
    row per domain plus one `Overall` (mean over the run's domains)."""
    cols = ["run_id", "bench", "score"]
    if evals.empty:
        return pd.DataFrame(columns=cols)
    ev = evals[(evals["model"] == model) & evals["benchmark"].map(lambda b: is_benchmark(b, split))]
    if ev.empty:
        return pd.DataFrame(columns=cols)
    ev = ev[ev["step"] == ev.groupby("run_id")["step"].transform("max")]
    ev = ev.assign(bench=ev["benchmark"].str.removesuffix(VAL_SUFFIX))
    per = ev.groupby(["run_id", "bench"], as_index=False)["score"].mean()
    overall = per.groupby("run_id", as_index=False)["score"].mean().assign(bench=OVERALL)
    return pd.concat([per, overall[cols]], ignore_index=True)[cols]


def score_table(
    evals: pd.DataFrame,
    runs: list[Run],
    params: dict[str, list[Any]],
    *,
    model: str,
    split: str = "test",
) -> pd.DataFrame:
    """Long table: run_id, seed, arm, each swept parameter, bench, score (runs without an
    evaluation of `model` on `split` are left out)."""
    return run_values(runs, params).merge(final_scores(evals, model, split), on="run_id")


def benches(table: pd.DataFrame) -> list[str]:
    """The domains of a score table, then Overall."""
    found = sorted(b for b in table["bench"].unique() if b != OVERALL) if len(table) else []
    return [*found, OVERALL] if found else []


def param_band(table: pd.DataFrame, param: str, bench: str = OVERALL) -> pd.DataFrame:
    """Mean ± std over seeds of `bench` per value of `param`, one line per combination of
    the other swept parameters: columns line, value, mean, std, n."""
    cols = ["line", "value", "mean", "std", "n"]
    t = table[table["bench"] == bench]
    if t.empty:
        return pd.DataFrame(columns=cols)
    others = [c for c in t.columns if c not in ("run_id", "seed", "arm", "bench", "score", param)]
    names = short_names(others)
    line = t[others].apply(lambda r: _line(r, names), axis=1) if others else ""
    keyed = t.assign(_line=line, _v=t[param].map(show))
    rows = []
    for (ln, _), g in keyed.groupby(["_line", "_v"], sort=False):
        m, s = mean_std(g["score"].tolist())
        rows.append({"line": ln, "value": g[param].iloc[0], "mean": m, "std": s, "n": len(g)})
    out = pd.DataFrame(rows, columns=cols)
    order = out["value"].map(sort_key)
    return (
        out.assign(_o=order).sort_values(["line", "_o"]).drop(columns="_o").reset_index(drop=True)
    )


def _line(row: pd.Series, names: dict[str, str]) -> str:
    return ARM_SEP.join(f"{names[p]}={show(v)}" for p, v in row.items())


def heatmap_frame(
    table: pd.DataFrame, p_row: str, p_col: str, bench: str = OVERALL
) -> pd.DataFrame:
    """Mean `bench` score over every run (seeds, and any third parameter) in each cell of
    two swept parameters: rows = values of `p_row`, columns = values of `p_col`."""
    t = table[table["bench"] == bench]
    rows = sorted({show(v): v for v in t[p_row]}.values(), key=sort_key)
    cols = sorted({show(v): v for v in t[p_col]}.values(), key=sort_key)
    out = pd.DataFrame(np.nan, index=[show(v) for v in rows], columns=[show(v) for v in cols])
    for (r, c), g in t.groupby([t[p_row].map(show), t[p_col].map(show)]):
        out.loc[r, c] = float(g["score"].mean())
    out.index.name, out.columns.name = p_row, p_col
    return out


def arm_seeds(table: pd.DataFrame, arm: str, bench: str = OVERALL) -> dict[int, float]:
    """seed -> score of one arm (the mean if a seed appears twice)."""
    t = table[(table["arm"] == arm) & (table["bench"] == bench)]
    return {int(s): float(g["score"].mean()) for s, g in t.groupby("seed")}


def paired_arms(
    table: pd.DataFrame, arm_a: str, arm_b: str, bench: str = OVERALL
) -> tuple[Paired, list[int]]:
    """Arm A against arm B on the seeds both have (copd.common.stats.paired: mean difference A - B,
    95% CI, paired sign-flip permutation p), and those seeds."""
    a, b = arm_seeds(table, arm_a, bench), arm_seeds(table, arm_b, bench)
    seeds = sorted(set(a) & set(b))
    return paired([a[s] for s in seeds], [b[s] for s in seeds]), seeds
