"""Read models for the dashboard pages: RunStore -> pandas tables (no Streamlit here).

    frame = runs_frame(store)                      # the Runs page table
    arms = seed_arms(runs)                         # run_id -> method label for seed groups
    table = results_table(store.evaluations(ids), runs, arms)   # the paper's layout
    diff = config_diff_frame(runs)                 # only the config keys that differ

Statuses get a text marker so a crashed run reads as crashed even without colour.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from app.dashboard.series import whole_percent
from app.dashboard.text import md_line
from copd.common import names as N
from copd.common.names import VAL_SUFFIX
from copd.common.tables import is_benchmark, paper_table
from copd.spec import OWN_DOMAIN, config_diff, reported_model_of
from storage.entities import RunStatus

if TYPE_CHECKING:
    from storage import Run, RunStore

# A symbol the common text fonts carry (no emoji font needed: a browser without one showed
# empty boxes), then the status in words.
STATUS_MARKERS = {
    RunStatus.QUEUED: "○ queued",
    RunStatus.RUNNING: "● running",
    RunStatus.FINISHED: "✓ finished",
    RunStatus.FAILED: "✗ failed",
    RunStatus.CANCELLED: "■ cancelled",
    RunStatus.CRASHED: "✕ crashed",
}
REWARD_KEY = N.REWARD_MEAN
OVERLAP_KEY = N.overlap_key(10)
# Fields that never make two runs different arms of an ablation.
IDENTITY_FIELDS = ("seed", "name", "group")


def status_label(status: str) -> str:
    return STATUS_MARKERS.get(status, str(status))


def format_duration(seconds: float | None) -> str:
    """`3725` -> `1h 02m`, `95` -> `1m 35s`, None -> ``."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = int(max(seconds, 0))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def run_duration(run: Run, now: datetime | None = None) -> float | None:
    """Seconds from start to end (or to now while running); None before it starts."""
    start = _utc(run.started_at)
    if start is None:
        return None
    end = _utc(run.ended_at) or (now or datetime.now(timezone.utc))
    return (end - start).total_seconds()


def mean_latest(latest: dict[str, Any], kind: str, key: str) -> float | None:
    """Mean of the latest values of the names of scope `kind` whose key (after the owner)
    is `key` (finite ones); None if none."""
    vals = [
        float(p.value)
        for k, p in latest.items()
        if N.parse(k).is_(kind, key) and math.isfinite(float(p.value))
    ]
    return float(np.mean(vals)) if vals else None


def runs_frame(store: RunStore, runs: list[Run] | None = None) -> pd.DataFrame:
    """One row per run (newest first) for the Runs table and the home page."""
    runs = store.list_runs() if runs is None else runs
    rows = []
    # one query for every run (not one per run), of the two kinds of key the table shows
    latest_of = store.latest_metrics_of((r.id for r in runs), ("/" + REWARD_KEY, "/" + OVERLAP_KEY))
    for r in runs:
        latest = latest_of[r.id]
        rows.append(
            {
                "id": r.id,
                "status": status_label(r.status),
                "name": r.name,
                "method": r.method,
                "group": r.group or "",
                "tags": ", ".join(r.tags),  # text cells: never rendered as markdown
                "seed": r.seed,
                "progress": whole_percent(r.progress),  # as every page shows it
                "started": _utc(r.started_at),
                "duration": format_duration(run_duration(r)),
                "latest reward": mean_latest(latest, "branch", REWARD_KEY),
                "latest overlap": mean_latest(latest, "pair", OVERLAP_KEY),
                "notes": " ".join(r.notes.split())[:120],  # one line: the table is a list
            }
        )
    cols = [
        "id",
        "status",
        "name",
        "method",
        "group",
        "tags",
        "seed",
        "progress",
        "started",
        "duration",
        "latest reward",
        "latest overlap",
        "notes",
    ]
    return pd.DataFrame(rows, columns=cols)


def status_counts(runs: list[Run]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        out[str(r.status)] = out.get(str(r.status), 0) + 1
    return out


def flatten_config(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> `dotted.key -> leaf` (lists kept as JSON text for display)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten_config(v, key + "."))
        elif isinstance(v, (list, tuple, dict)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def flat_configs(runs: list[Run]) -> dict[int, dict[str, Any]]:
    """Each run's config flattened once (`dotted.key -> leaf`), by run id."""
    return {r.id: flatten_config(r.config or {}) for r in runs}


def offered_fields(flat: dict[int, dict[str, Any]]) -> list[str]:
    """Every config field of `flat` (flat_configs), those whose value differs between runs
    first (the identity fields name, group and seed not among them): what a researcher adds
    as Runs-table columns first."""
    values: dict[str, set[str]] = {}
    for config in flat.values():
        for k, v in config.items():
            values.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
    varying = sorted(
        k for k, vs in values.items() if len(vs) > 1 and k not in ("name", "group", "seed")
    )
    return varying + sorted(set(values) - set(varying))


def with_config_columns(
    frame: pd.DataFrame, flat: dict[int, dict[str, Any]], fields: list[str]
) -> pd.DataFrame:
    """`frame` (one row per run, column `id`) with a column per config field of `flat`
    (flat_configs), placed after `seed`; a run without the field gets an empty cell.
    Numbers stay numbers, so the table sorts them as numbers."""
    out = frame.copy()
    at = list(out.columns).index("seed") + 1 if "seed" in out.columns else len(out.columns)
    for i, f in enumerate(fields):
        if f in out.columns:
            continue
        out.insert(at + i, f, [flat.get(int(rid), {}).get(f) for rid in out["id"]])
    return out


def config_diff_frame(runs: list[Run], labels: dict[int, str] | None = None) -> pd.DataFrame:
    """Rows = config keys that differ between any two of `runs`, columns = runs."""
    if len(runs) < 2:
        return pd.DataFrame()
    flat = [flatten_config(r.config or {}) for r in runs]
    keys: set[str] = set()
    for other in flat[1:]:
        keys |= set(config_diff(flat[0], other))
    labels = labels or {}
    data = {
        labels.get(r.id, f"#{r.id} {r.name}"): [_show(f.get(k)) for k in sorted(keys)]
        for r, f in zip(runs, flat, strict=True)
    }
    return pd.DataFrame(data, index=sorted(keys))


def _show(v: Any) -> str:
    return "—" if v is None else str(v)


def seed_arms(runs: list[Run]) -> dict[int, str]:
    """run_id -> arm label, where an arm is a set of runs with equal config apart from the
    seed (and name/group). Labelled by method; a method with several arms gets `#2`, `#3`."""
    arms: dict[str, list[int]] = {}
    method_of: dict[str, str] = {}
    for r in runs:
        cfg = {k: v for k, v in (r.config or {}).items() if k not in IDENTITY_FIELDS}
        sig = json.dumps(cfg, sort_keys=True, default=str) + "|" + r.method
        arms.setdefault(sig, []).append(r.id)
        method_of[sig] = r.method
    # A method with several arms (static OPD in both directions, 2- and 3-domain experts):
    # name each arm by its runs' shared name without the seed suffix (`static_opd-rev-s0`
    # -> `static_opd-rev`), else number them.
    name_of = {r.id: re.sub(r"-s\d+$", "", r.name) for r in runs}
    per_method: dict[str, int] = {}
    stems_of: dict[str, list[str]] = {}
    for sig, ids in arms.items():
        per_method[method_of[sig]] = per_method.get(method_of[sig], 0) + 1
        stems_of.setdefault(method_of[sig], []).append(name_of[ids[0]])
    out: dict[int, str] = {}
    seen: dict[str, int] = {}
    for sig, ids in arms.items():
        m = method_of[sig]
        seen[m] = seen.get(m, 0) + 1
        stems = {name_of[rid] for rid in ids}
        if per_method[m] == 1:
            label = m
        elif len(stems) == 1 and stems_of[m].count(next(iter(stems))) == 1:
            label = stems.pop()
        else:
            label = f"{m} #{seen[m]}"
        for rid in ids:
            out[rid] = label
    return out


def latest_evals(evals: pd.DataFrame) -> pd.DataFrame:
    """Rows of each run's latest evaluation step only."""
    if evals.empty:
        return evals
    last = evals.groupby("run_id")["step"].transform("max")
    return evals[evals["step"] == last]


def reported_model(run: Run) -> str:
    """The model `run` is judged by (RunConfig.reported_model: one rule for the results
    table, the grid, the paired comparison, the report and the Studies page)."""
    return reported_model_of(run.config, run.method)


def own_domain_rows(evals: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """For each run whose branches are never merged (independent experts), its branches'
    scores on their own domain as one model, OWN_DOMAIN: benchmark `add` scored by the
    branch whose task is `add` (and `add@val` likewise). Empty when no run qualifies."""
    tasks = {
        r.id: {str(b.get("task")): str(b.get("name")) for b in (r.config or {}).get("branches", [])}
        for r in runs
        if reported_model(r) == OWN_DOMAIN
    }
    if evals.empty or not tasks:
        return evals.iloc[0:0]
    ev = evals[evals["run_id"].isin(tasks)]
    task = ev["benchmark"].astype(str).str.removesuffix(VAL_SUFFIX)
    owner = [tasks[rid].get(t) for rid, t in zip(ev["run_id"], task, strict=True)]
    mine = ev[ev["model"].astype(str) == pd.Series(owner, index=ev.index, dtype=object)]
    return mine.assign(model=OWN_DOMAIN)


def with_own_domain(evals: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """`evals` plus the OWN_DOMAIN rows of the unmerged runs."""
    extra = own_domain_rows(evals, runs)
    return pd.concat([evals, extra], ignore_index=True) if len(extra) else evals


def settled(runs: list[Run], evals: pd.DataFrame) -> tuple[list[Run], list[str]]:
    """The runs whose result exists (finished: their final evaluation), and a line for
    each other one: `#7 mixed: cancelled, last evaluated at step 0`. A run's scores before
    its end are not its result (a cancelled run's step-0 scores are the base model's):
    they stay out of tables, means, bands and paired tests."""
    last = evals.groupby("run_id")["step"].max().to_dict() if len(evals) else {}
    kept, left = [], []
    for r in runs:
        if r.status == "finished":
            kept.append(r)
            continue
        seen = f"last evaluated at step {last[r.id]}" if r.id in last else "no evaluation yet"
        left.append(f"#{r.id} {r.method}: {r.status}, {seen}")
    return kept, left


def results_table(
    evals: pd.DataFrame,
    runs: list[Run],
    arms: dict[int, str] | None = None,
    split: str = "test",
) -> pd.DataFrame:
    """The paper's table: rows "<method> · <model>", columns each benchmark then Overall.

    Uses each run's latest evaluation step. With `arms`, runs of one arm (seeds) are
    averaged: cells hold the mean, and a parallel `<col> std` column the std across seeds.
    Returns a frame indexed by row label; columns `<bench>`, ..., `Overall` (+ `... std`).
    The numbers come from `copd.common.tables.paper_table`, the one implementation of the layout
    (Overall per seed = mean over that seed's benchmarks). `split="validation"` shows the
    validation scores of the final evaluation (`<task>@val`) instead of the test split.
    """
    from app.dashboard.series import benchmarks_only

    ev = latest_evals(benchmarks_only(evals, split))
    if ev.empty:
        return pd.DataFrame()
    ev = with_own_domain(ev, runs)  # the experts' reported model, beside their branches
    method = {r.id: r.method for r in runs}
    arm = arms or {r.id: f"{r.method} #{r.id}" for r in runs}
    ev = ev[ev["run_id"].isin(arm)].copy()
    ev["row"] = ev["run_id"].map(arm).fillna(ev["run_id"].map(method)) + " · " + ev["model"]
    per_run = ev.pivot_table(
        index=["row", "run_id"], columns="benchmark", values="score", aggfunc="mean"
    )
    per_seed: dict[str, list[dict[str, float]]] = {}
    for (row, _), scores in per_run.iterrows():
        per_seed.setdefault(row, []).append(scores.dropna().to_dict())
    benches = sorted(c.removesuffix(VAL_SUFFIX) for c in per_run.columns if is_benchmark(c, split))
    table = paper_table(per_seed, benches, split=split)
    cols = table.columns
    order = sorted(table.rows, key=_row_order)
    mean = pd.DataFrame(
        [[table.cell(r, c)[0] for c in cols] for r in order], index=order, columns=cols
    )
    if arms:
        for c in cols:
            mean[f"{c} std"] = [table.cell(r, c)[1] for r in order]
        mean["seeds"] = [table.seeds(r) for r in order]
    mean.index.name = "row"
    return mean


def _row_order(label: str) -> tuple[str, int, str]:
    method, _, model = label.partition(" · ")
    return (method, {"merged": 1, OWN_DOMAIN: 1, "base": 2}.get(model, 0), model)


def format_results(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Cells as text: `0.812 ± 0.010` when a std column exists, else `0.812`."""
    if table.empty:
        return table
    value_cols = [c for c in table.columns if not c.endswith(" std") and c != "seeds"]
    out = pd.DataFrame(index=table.index)
    for c in value_cols:
        if f"{c} std" in table:
            out[c] = [
                "—" if pd.isna(m) else f"{m:.{digits}f} ± {s:.{digits}f}"
                for m, s in zip(table[c], table[f"{c} std"], strict=True)
            ]
        else:  # "—": a benchmark the row's run does not have (2- and 3-domain arms mixed)
            out[c] = ["—" if pd.isna(m) else f"{m:.{digits}f}" for m in table[c]]
    if "seeds" in table:
        out["seeds"] = table["seeds"].astype(int)
    return out


def best_rows(table: pd.DataFrame, digits: int = 3) -> dict[str, set[str]]:
    """Column -> the row labels holding the best (highest) mean, ties included (the rule
    of `copd.common.tables.PaperTable.best`)."""
    cols = [c for c in table.columns if not c.endswith(" std") and c != "seeds"]
    out = {}
    for c in cols:
        vals = table[c].dropna().round(digits)
        if not vals.empty:
            out[c] = {str(r) for r in vals.index[vals == vals.max()]}
    return out


def results_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """The results table as markdown with the best cell(s) of each column in bold."""
    if table.empty:
        return ""
    text = format_results(table, digits)
    best = best_rows(table, digits)
    head = ["model", *(md_line(c) for c in text.columns)]  # names are user text: escaped
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in text.index:
        cells = [md_line(row)]
        for c in text.columns:
            v = str(text.at[row, c])  # a formatted number or "—"
            cells.append(f"**{v}**" if row in best.get(c, ()) else v)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
