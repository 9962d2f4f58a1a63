"""The paper-layout results table, defined once (pure Python, no torch).

Rows are methods/models, columns each benchmark then Overall, cells mean ± std over seeds,
the best mean of each column in bold (every row that ties for it). `copd reproduce`, the
Compare page and reports all build their tables here, so they agree on two rules:

- **Overall** of a row, for one seed, is the mean over that seed's benchmarks (a model's
  own "overall" score and pass@k columns are ignored); the cell is the mean over seeds.
- **Ties**: every row whose mean equals the column's best (to the printed digits) is bold.

    table = paper_table({"CoPD": [{"add": 0.6, "rev": 0.7}, ...], "Mixed GRPO": [...]})
    print(table.markdown())
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from copd.common.names import BENCH_SUFFIX, VAL_SUFFIX, is_bench_key, is_test_bench
from copd.common.stats import mean_std

OVERALL = "Overall"


def is_benchmark(key: str, split: str = "test") -> bool:
    """A per-domain accuracy column of `split` (not an overall, not pass@k)."""
    if split == "validation":
        return key.endswith(VAL_SUFFIX) and not key.lower().startswith("overall")
    return is_test_bench(key)


@dataclass
class PaperTable:
    """Per row label, per column, the score of each seed (Overall included)."""

    benches: list[str]
    rows: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.benches, OVERALL]

    def cell(self, label: str, col: str) -> tuple[float, float, int]:
        vals = self.rows.get(label, {}).get(col, [])
        m, s = mean_std(vals)
        return m, s, len(vals)

    def seeds(self, label: str) -> int:
        return max((len(v) for v in self.rows.get(label, {}).values()), default=0)

    def best(self, col: str, digits: int = 3) -> set[str]:
        """Row labels holding the best (highest) mean of `col`, ties included."""
        means = {lab: self.cell(lab, col)[0] for lab in self.rows}
        finite = {lab: round(m, digits) for lab, m in means.items() if not math.isnan(m)}
        if not finite:
            return set()
        top = max(finite.values())
        return {lab for lab, m in finite.items() if m == top}

    def text(self, label: str, col: str, digits: int = 3) -> str:
        m, s, _ = self.cell(label, col)
        if math.isnan(m):
            return "—"  # a benchmark this row's runs do not have (2- and 3-domain arms mixed)
        return f"{m:.{digits}f} ± {s:.{digits}f}"

    def markdown(
        self, digits: int = 3, first: str = "method / model", escape=lambda text: text
    ) -> str:
        """The table as markdown, the best cell(s) of each column in bold; `escape` is
        applied to every name (row labels and columns: user text on a page)."""
        cols = self.columns
        best = {c: self.best(c, digits) for c in cols}
        lines = [
            f"| {first} | " + " | ".join(escape(c) for c in cols) + " | seeds |",
            "|---|" + "---:|" * len(cols) + "---:|",
        ]
        for label in self.rows:
            cells = [
                f"**{self.text(label, c, digits)}**"
                if label in best[c]
                else self.text(label, c, digits)
                for c in cols
            ]
            lines.append(f"| {escape(label)} | " + " | ".join(cells) + f" | {self.seeds(label)} |")
        return "\n".join(lines)


def paper_table(
    per_seed: Mapping[str, Sequence[Mapping[str, float]]],
    benches: Sequence[str] | None = None,
    split: str = "test",
) -> PaperTable:
    """Build the table from, per row label, one {benchmark: score} dict per seed.

    `benches` fixes the column order; by default the benchmarks in order of appearance.
    `split="validation"` reads the `<task>@val` scores instead (columns named by task).
    """

    def own_scores(scores: Mapping[str, float]) -> dict[str, float]:
        return {
            k.removesuffix(VAL_SUFFIX): float(v)
            for k, v in scores.items()
            if is_benchmark(k, split)
        }

    order: list[str] = list(benches or [])
    for runs in per_seed.values():
        for scores in runs:
            order += [k for k in own_scores(scores) if k not in order]
    table = PaperTable(order)
    for label, runs in per_seed.items():
        cols: dict[str, list[float]] = {}
        for scores in runs:
            own = own_scores(scores)
            for k, v in own.items():
                cols.setdefault(k, []).append(v)
            if own:
                cols.setdefault(OVERALL, []).append(sum(own.values()) / len(own))
        table.rows[label] = cols
    return table


def benchmark_table(
    per_seed: Mapping[str, Sequence[Mapping[str, float]]], capability: Mapping[str, str]
) -> PaperTable:
    """The configured benchmarks in the paper's layout: per capability (the column group,
    in the order of `capability`: benchmark name -> capability), each benchmark as
    "<capability> · <name>", then the group's average "<capability> · avg"; then Overall,
    the mean over every benchmark. Averages are taken per seed, then over seeds, as the
    domains' Overall is. `per_seed`: per row label, one {"<name>@bench": score} dict per
    seed (other keys are ignored)."""
    groups: dict[str, list[str]] = {}
    for name, cap in capability.items():
        groups.setdefault(cap or "other", []).append(name)
    cols = [
        c
        for cap, names in groups.items()
        for c in (*(f"{cap} · {n}" for n in names), f"{cap} · avg")
    ]
    table = PaperTable(cols)
    for label, runs in per_seed.items():
        cells: dict[str, list[float]] = {}
        for scores in runs:
            own = {
                k.removesuffix(BENCH_SUFFIX): float(v) for k, v in scores.items() if is_bench_key(k)
            }
            if not own:
                continue
            for cap, names in groups.items():
                vals = [own[n] for n in names if n in own]
                for n in names:
                    if n in own:
                        cells.setdefault(f"{cap} · {n}", []).append(own[n])
                if vals:
                    cells.setdefault(f"{cap} · avg", []).append(sum(vals) / len(vals))
            cells.setdefault(OVERALL, []).append(sum(own.values()) / len(own))
        table.rows[label] = cells
    return table
