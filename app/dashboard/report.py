"""A Compare selection as one self-contained HTML file that opens offline in a browser.

    html = compare_report(runs, figures, table, diff, title="Group demo-1")

What it holds: every overlay figure with its data (Plotly's `to_html`; plotly.js is
inlined once, in the first figure, so nothing is fetched), the paper-layout results table
(`app.dashboard.queries.results_table`, best cell of each column in bold, as `results_markdown`
marks it) on the split it names, the grid view of a sweep with its paired test, the config
differences, the most divergent recorded samples, and for each run its method, seed,
status and the code revision it ran. Pure: no Streamlit, no store.
"""

from __future__ import annotations

import html as _html
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.dashboard.queries import best_rows, format_results, status_label
from app.dashboard.tokens import samples_html
from copd.common.tables import PaperTable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from app.dashboard.sweep_data import GridReport
    from storage import Run, Sample

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
td.best { font-weight: bold; }
code { font-size: 0.85rem; }
.figure { margin-bottom: 1.5rem; }
"""


def _esc(v: Any) -> str:
    """User text as HTML: escaped, its line breaks kept (`<br>`), nothing for None."""
    return _html.escape("" if v is None else str(v)).replace("\n", "<br>")


def _cell(v: Any) -> str:
    """A table cell: "—" for a value that is absent (None, NaN), else the escaped text."""
    return "—" if v is None or (isinstance(v, float) and v != v) else _esc(v)


def _table(df: pd.DataFrame, index: bool = True) -> str:
    """`df` as an HTML table, each cell through `_cell` (pandas' `to_html` writes a line
    break as a literal backslash-n and an absent value as "None")."""
    head = ([f"<th>{_esc(df.index.name or '')}</th>"] if index else []) + [
        f"<th>{_esc(c)}</th>" for c in df.columns
    ]
    rows = []
    for label, row in df.iterrows():
        cells = ([f"<th>{_esc(label)}</th>"] if index else []) + [
            f"<td>{_cell(v)}</td>" for v in row.tolist()
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{''.join(head)}</tr>{''.join(rows)}</table>"


def results_html(table: pd.DataFrame, digits: int = 3) -> str:
    """The results table (mean ± std cells when there are seeds), best per column bold."""
    if table.empty:
        return "<p>No evaluations recorded for these runs.</p>"
    text = format_results(table, digits)
    best = best_rows(table, digits)
    head = "".join(f"<th>{_esc(c)}</th>" for c in ["model", *text.columns])
    rows = []
    for row in text.index:
        cells = [f"<td>{_esc(row)}</td>"]
        for c in text.columns:
            cls = ' class="best"' if row in best.get(c, ()) else ""
            cells.append(f"<td{cls}>{_esc(text.at[row, c])}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def bench_html(table: PaperTable, digits: int = 3) -> str:
    """The configured benchmarks' table (columns grouped by capability), best bold."""
    cols = table.columns
    best = {c: table.best(c, digits) for c in cols}
    head = "".join(f"<th>{_esc(c)}</th>" for c in ["method · model", *cols, "seeds"])
    rows = []
    for label in table.rows:
        cells = [f"<td>{_esc(label)}</td>"]
        for c in cols:
            cls = ' class="best"' if label in best[c] else ""
            cells.append(f"<td{cls}>{_esc(table.text(label, c, digits))}</td>")
        cells.append(f"<td>{table.seeds(label)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def frame_html(df: pd.DataFrame) -> str:
    return _table(df) if not df.empty else "<p>(none)</p>"


def runs_html(runs: list[Run]) -> str:
    """One row per run: id, name, method, group, tags, seed, status, code revision, notes
    (all user text is HTML-escaped)."""
    rows = [
        {
            "id": r.id,
            "name": r.name,
            "method": r.method,
            "group": r.group or "",
            "tags": ", ".join(r.tags),
            "seed": r.seed,
            "status": status_label(r.status),
            "code revision": r.code_revision or "(not recorded)",
            "notes": r.notes,
        }
        for r in runs
    ]
    return _table(pd.DataFrame(rows), index=False)


def compare_report(
    runs: list[Run],
    figures: list[Any],
    table: pd.DataFrame,
    diff: pd.DataFrame,
    *,
    title: str,
    notes: str = "",
    split: str = "test",
    grid: GridReport | None = None,
    samples: Sequence[Sample] = (),
    benchmarks: PaperTable | None = None,
) -> str:
    """The whole report as one HTML document (UTF-8 text): the results table says its
    `split`; with `grid`, the Compare page's grid view (its figures, what it left out and
    the paired test) follows it; `samples`: the most divergent recorded completions, token
    by token (app/dashboard/tokens.py); `benchmarks`: the configured benchmarks' table."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p>copd report, {stamp}. {_esc(notes)}</p>",
        "<h2>Runs</h2>",
        runs_html(runs),
        "<h2>Metrics</h2>",
    ]
    if not figures:
        parts.append("<p>No metrics were selected.</p>")
    every = [*figures, *(grid.figures if grid else [])]  # plotly.js inlined in the first
    divs = [
        '<div class="figure">'
        + fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        + "</div>"
        for i, fig in enumerate(every)
    ]
    parts += divs[: len(figures)]
    parts += [
        f"<h2>Results: {_esc(split)} split, latest evaluation of each run</h2>",
        f"<p>Scores on the {_esc(split)} split. Rows: method · model (independent experts "
        "also as each expert on its own domain). Columns: each benchmark, then Overall = "
        "the mean over benchmarks. Best per column in bold.</p>",
        results_html(table),
    ]
    if benchmarks is not None:
        parts += [
            "<h2>Benchmarks: columns grouped by capability</h2>",
            "<p>The configured benchmarks, apart from the training domains: the group's "
            "average after its benchmarks, then Overall = mean over every benchmark.</p>",
            bench_html(benchmarks),
        ]
    if grid is not None:
        parts.append("<h2>Grid sweep: final score per swept parameter</h2>")
        parts += [f"<p>{_esc(line)}</p>" for line in grid.lines]
        parts += divs[len(figures) :]
    if samples:
        parts += ["<h2>The most divergent samples</h2>", samples_html(list(samples))]
    parts += [
        "<h2>Config differences</h2>",
        frame_html(diff) if len(runs) > 1 else "<p>One run: nothing to compare.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
