"""Drift study (paper Fig. 2c/d and 4a/b): how far do independent experts drift from the
base and from each other, and do CoPD's branches stay close?

    copd drift --db sqlite:///runs.db --group reproduce      # reuse a reproduction's runs
    copd drift --seeds 0,1 --out runs/drift                  # or train expert + CoPD here

Every run logs, at CoPD's cadence, `base/<b>/overlap_top10` and `base/<b>/sym_kl` (branch b
vs the base, on b's own rollouts) and `pair/<s>~<t>/overlap_top10`, `pair/<s>~<t>/sym_kl`
(student s's rollouts, teacher t's distribution). This command collects them for the
2-domain "expert" and "copd" runs (from the store's group, or from runs it trains in this
process, sequentially) and reports per method: overlap at the start (first measurement
after step 0), middle and end, and the symmetric-KL growth factor end / start, as mean ±
std over seeds; plus `<out>/drift.json` and `<out>/drift.png`.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from copd.common import names as N

QUANTITIES = ("overlap_top10", "sym_kl")
METHODS = ("expert", "copd")


def read_jsonl_series(path: str | Path) -> list[tuple[str, int, float]]:
    """(key, step, value) for every diagnostics metric (base/..., pair/...) in metrics.jsonl."""
    out = []
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") != "metric":
            continue
        for k, v in rec["values"].items():
            if N.parse(k).kind in ("base", "pair") and N.parse(k).key in QUANTITIES:
                out.append((k, int(rec["step"]), float(v)))
    return out


def summarise_series(points: Sequence[tuple[str, int, float]]) -> dict[str, dict[str, float]]:
    """Per key: start (first step > 0), mid (the measurement nearest the middle step), end
    (last step), and for sym_kl keys growth = end / start. Pure."""
    by_key: dict[str, dict[int, float]] = {}
    for k, step, v in points:
        by_key.setdefault(k, {})[step] = v
    out = {}
    for k, series in by_key.items():
        steps = sorted(s for s in series if s > 0)
        if not steps:
            continue
        mid_target = steps[-1] / 2
        mid = min(steps, key=lambda s: abs(s - mid_target))
        row = {"start": series[steps[0]], "mid": series[mid], "end": series[steps[-1]]}
        row["at0"] = series.get(0, math.nan)
        if k.endswith("sym_kl"):
            row["growth"] = row["end"] / row["start"] if row["start"] > 0 else math.nan
        out[k] = row
    return out


def group_key(key: str) -> str:
    """`base/add/sym_kl` -> `vs base · sym_kl`; `pair/add~rev/overlap_top10` ->
    `branch vs branch · overlap_top10` (branches pooled: the table averages them)."""
    scope, _, qty = key.partition("/")[2].rpartition("/")
    return f"{'vs base' if key.startswith('base/') else 'branch vs branch'} · {qty}"


def drift_table(runs: dict[str, list[dict[str, dict[str, float]]]]) -> str:
    """Markdown: rows method · comparison · quantity; columns start, mid, end (and growth
    for sym KL); mean ± std over seeds and branches. `runs`: method -> per-run summaries."""
    cols = ("start", "mid", "end", "growth")
    lines = [
        "| method | comparison · quantity | " + " | ".join(cols) + " | n |",
        "|---|---|" + "---:|" * len(cols) + "---:|",
    ]
    for method, summaries in runs.items():
        pooled: dict[str, dict[str, list[float]]] = {}
        for summ in summaries:
            for key, row in summ.items():
                g = pooled.setdefault(group_key(key), {})
                for c, v in row.items():
                    if not math.isnan(v):
                        g.setdefault(c, []).append(v)
        for g in sorted(pooled):
            cells = []
            for c in cols:
                vals = pooled[g].get(c, [])
                if not vals:
                    cells.append("—")
                    continue
                m = statistics.fmean(vals)
                s = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{m:.3f} ± {s:.3f}" if c != "growth" else f"{m:.1f}× ± {s:.1f}")
            n = len(pooled[g].get("end", []))
            lines.append(f"| {method} | {g} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines)


def from_store(db: str, group: str) -> dict[str, list[tuple[str, str, list]]]:
    """method -> [(run label, method, points)] for the group's finished 2-branch expert and
    CoPD runs (the pair topology)."""
    from copd.runner import open_store
    from storage import RunStatus

    store = open_store(db)
    out: dict[str, list] = {}
    for run in store.list_runs(status=RunStatus.FINISHED, group=group):
        branches = (run.config or {}).get("branches", [])
        if run.method not in METHODS or len(branches) != 2:
            continue
        keys = [
            k
            for k in store.metric_keys(run.id)
            if N.parse(k).kind in ("base", "pair") and N.parse(k).key in QUANTITIES
        ]
        df = store.metric_series(run.id, keys, max_points=10_000)
        pts = [(r.key, int(r.step), float(r.value)) for r in df.itertuples()]
        out.setdefault(run.method, []).append((f"#{run.id} {run.name}", run.method, pts))
    return out


def run_drift(
    seeds: Sequence[int] = (0,),
    overrides: Sequence[str] = (),
    out: str | Path = "runs/drift",
    db: str | None = None,
    group: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Collect (or train, then collect) expert and CoPD runs; write drift.json/.png/.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    collected = from_store(db, group) if db and group else {}
    if not all(collected.get(m) for m in METHODS):
        from copd.runner import open_store, train_run
        from experiments.reproduce import ARMS, arm_config

        store = open_store(db) if db else None
        collected = {}
        for arm in (a for a in ARMS if a.key in ("expert", "copd")):
            for seed in seeds:
                cfg = arm_config(arm, seed, overrides, group)
                run_dir = out / "runs" / cfg.name
                log(f"[drift] training {cfg.name}")
                if train_run(cfg, run_dir, store=store) is None:
                    raise KeyboardInterrupt(f"{cfg.name} was stopped")
                pts = read_jsonl_series(run_dir / "metrics.jsonl")
                collected.setdefault(cfg.method, []).append((cfg.name, cfg.method, pts))
    summaries = {m: [summarise_series(p) for _, _, p in runs] for m, runs in collected.items()}
    table = drift_table(summaries)
    payload = {
        "runs": {
            m: [
                {"run": lab, "summary": s}
                for (lab, _, _), s in zip(runs, summaries[m], strict=True)
            ]
            for m, runs in collected.items()
        },  # fmt: skip
        "series": [
            {"run": lab, "method": m, "key": k, "step": st, "value": v}
            for runs in collected.values()
            for lab, m, pts in runs
            for k, st, v in pts
        ],
        "table": table,
    }
    (out / "drift.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / "drift.md").write_text(table + "\n")
    log(table)
    try:
        from app.dashboard.figures import drift_figure  # the dashboard's chart builder

        drift_figure(payload["series"]).write_image(str(out / "drift.png"), width=900, height=420)
        payload["png"] = str(out / "drift.png")
    except Exception as e:  # kaleido/Chromium missing: the JSON and the table remain
        log(f"[drift] no PNG ({type(e).__name__}: {e})")
    return payload


def cmd_drift(args) -> int:
    from copd.spec import parse_seeds

    run_drift(parse_seeds(args.seeds), args.set, args.out, args.db, args.group,
              log=lambda m: print(m, file=sys.stderr))  # fmt: skip
    print((Path(args.out) / "drift.md").read_text())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("drift", help="drift study: overlap and sym KL, experts vs CoPD")
    p.add_argument("--seeds", default="0")
    p.add_argument("--db", help="read (or log) runs in this store")
    p.add_argument("--group", help="reuse the finished expert/copd runs of this group")
    p.add_argument("--out", default="runs/drift")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_drift)
