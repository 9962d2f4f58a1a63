"""The configured benchmarks (a run config's `benchmarks`) as Compare and the report lay
them out: the paper's table, columns grouped by capability with an average per group and
an overall average (`copd.common.tables.benchmark_table`), from each finished run's final
evaluation.

    caps = capabilities(runs)                            # name -> capability, config order
    table = benchmark_results(evals, finished, arms)     # PaperTable, or None without any
"""

from __future__ import annotations

import pandas as pd

from app.dashboard.queries import latest_evals
from app.dashboard.text import md_line
from copd.common.names import BENCH_SUFFIX, is_bench_key
from copd.common.tables import PaperTable, benchmark_table
from storage import Run

HARNESS = "lm-eval"  # the capability column of lm-evaluation-harness scores ("task:metric")


def capabilities(runs: list[Run], names: list[str] = ()) -> dict[str, str]:
    """Benchmark name -> its capability, over the runs' configs in order (the first run
    that names a benchmark says its capability); other `names` with scores: the harness's
    (`task:metric`) under HARNESS, the rest under "other"."""
    out: dict[str, str] = {}
    for r in runs:
        for b in (r.config or {}).get("benchmarks", []) or []:
            out.setdefault(str(b.get("name")), str(b.get("capability") or ""))
    for n in names:
        out.setdefault(n, HARNESS if ":" in n else "other")
    return out


def benchmark_results(
    evals: pd.DataFrame, runs: list[Run], arms: dict[int, str] | None = None
) -> PaperTable | None:
    """Rows "<method or arm> · <model>" (every branch, the merged model, the method's own
    policy), one dict of `<name>@bench` scores per run from its latest evaluation; None
    when no run has a benchmark score."""
    if evals.empty:
        return None
    ev = evals[evals["benchmark"].astype(str).map(is_bench_key)]
    ev = latest_evals(ev[ev["run_id"].isin([r.id for r in runs])])
    if ev.empty:
        return None
    label = arms or {r.id: f"{r.method} #{r.id}" for r in runs}
    per_seed: dict[str, list[dict[str, float]]] = {}
    for (rid, model), g in ev.groupby(["run_id", "model"], sort=False):
        row = f"{label.get(rid, rid)} · {model}"
        per_seed.setdefault(row, []).append(dict(zip(g["benchmark"], g["score"], strict=True)))
    names = sorted({str(b).removesuffix(BENCH_SUFFIX) for b in ev["benchmark"]})
    return benchmark_table(dict(sorted(per_seed.items())), capabilities(runs, names))


def bench_markdown(table: PaperTable, digits: int = 3) -> str:
    """`table` as markdown, every name (benchmark, capability, row) escaped as user text."""
    return table.markdown(digits, first="method · model", escape=md_line)
