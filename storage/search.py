"""Runs filtered by a query (the language of copd/common/query.py), evaluated in Python.

    runs = filter_runs(store.list_runs(), 'opd.beta >= 1 and "ablation" in tags')
    runs = store.list_runs(where='method == "copd"')          # the same, through the store

A run's record is its flattened config (`opd.beta`, `schedule.cycles`, `branches.task`, ...)
under its own fields (`id`, `name`, `status`, `method`, `group`, `tags`, `notes`, `seed`),
so `name` is the run's name even where the config says otherwise. A bad query raises
QueryError (one line naming the problem and the fix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from copd.common.query import flatten, search
from storage.entities import Run


def run_record(run: Run) -> dict[str, Any]:
    """The fields a query sees for one run."""
    record = flatten(run.config or {})
    record.update(
        id=run.id, name=run.name, status=str(run.status), method=run.method, group=run.group,
        tags=list(run.tags), notes=run.notes, seed=run.seed,
    )  # fmt: skip
    return record


def filter_runs(runs: Sequence[Run], where: str) -> list[Run]:
    """The runs `where` matches, in their order (all of them for an empty query)."""
    return [runs[i] for i in search([run_record(r) for r in runs], where)]
