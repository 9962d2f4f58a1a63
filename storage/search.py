"""Runs filtered by a query (the language of copd/common/query.py), evaluated in Python.

    runs = filter_runs(store.list_runs(), 'opd.beta >= 1 and "ablation" in tags')
    runs = store.list_runs(where='method == "copd"')          # the same, through the store

A run's record is its flattened config (`opd.beta`, `schedule.cycles`, `branches.task`, ...)
under its own fields (`id`, `name`, `status`, `method`, `group`, `tags`, `notes`, `seed`),
so `name` is the run's name even where the config says otherwise. A bad query raises
QueryError (one line naming the problem and the fix).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from copd.common.query import MISSING, flatten, lookup, search
from storage.entities import Run


class RunFields(Mapping[str, Any]):
    """The fields a query sees for one run, resolved when asked (a query reads a few of a
    config's ~100 fields; flattening every run's config first took 10x longer)."""

    __slots__ = ("own", "config")

    def __init__(self, run: Run):
        self.config = run.config or {}
        self.own = {"id": run.id, "name": run.name, "status": str(run.status),
                    "method": run.method, "group": run.group, "tags": list(run.tags),
                    "notes": run.notes, "seed": run.seed}  # fmt: skip

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.own:
            return self.own[name]
        value = lookup(self.config, name)
        return default if value is MISSING else value

    def __getitem__(self, name: str) -> Any:
        value = self.get(name, MISSING)
        if value is MISSING:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name, MISSING) is not MISSING

    def __iter__(self) -> Iterator[str]:  # every field (a did-you-mean reads them)
        return iter({**flatten(self.config), **self.own})

    def __len__(self) -> int:
        return sum(1 for _ in self)


def run_record(run: Run) -> dict[str, Any]:
    """Every field a query can read for one run, as a plain dict."""
    return dict(RunFields(run))


def filter_runs(runs: Sequence[Run], where: str) -> list[Run]:
    """The runs `where` matches, in their order (all of them for an empty query)."""
    return [runs[i] for i in search([RunFields(r) for r in runs], where)]
