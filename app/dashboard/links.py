"""Bookmarkable views: the pages' selections as URL query parameters (st.query_params).

    live?run=12                 the Live run view on run 12
    compare?group=demo-1        Compare an ablation group
    compare?runs=3,5,8          Compare runs picked one by one

A link that names something absent (`live?run=abc`, `live?run=999`, `compare?group=nope`)
gets a warning naming what it asked for, and the page shows nothing else (`absent_*`).
"""

from __future__ import annotations

from storage import Run, RunStatus


def url_run_id(value: str | None) -> int | None:
    """`"12"` -> 12; anything else -> None."""
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None


def url_run_ids(value: str | None) -> list[int]:
    """`"3,5,8"` -> [3, 5, 8] (order kept, repeats and non-numbers dropped)."""
    out: list[int] = []
    for part in (value or "").split(","):
        rid = url_run_id(part) if part.strip() else None
        if rid is not None and rid not in out:
            out.append(rid)
    return out


def runs_param(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids)


def absent_run(value: str | None, ids: list[int]) -> str | None:
    """The warning for a `?run=` that names no run of the store, or None (no link, or a
    run that is there)."""
    if value is None:
        return None
    rid = url_run_id(value)
    if rid is None:
        return (
            f"The link asks for run {value!r}, which is not a run id (run ids are numbers, "
            "as in live?run=12); nothing is shown. Pick a run on the Runs page."
        )
    if rid in ids:
        return None
    return (
        f"The link asks for run #{rid}, which is not in this store; nothing is shown. Pick a "
        "run on the Runs page."
    )


def absent_compare(group: str | None, runs: str | None, groups: list[str], ids: list[int]):
    """The warning for a `?group=` / `?runs=` naming a group or runs the store lacks, or
    None."""
    if group is not None and group not in groups:
        known = ", ".join(groups[:8]) if groups else "none yet"
        return (
            f"The link asks for group {group!r}, which is not in this store (groups: "
            f"{known}); nothing is shown."
        )
    if runs is None or group is not None:
        return None
    asked = [p.strip() for p in runs.split(",") if p.strip()]
    missing = [p for p in asked if url_run_id(p) not in ids]
    if not asked or missing:
        what = ", ".join(f"#{p}" if url_run_id(p) is not None else repr(p) for p in missing)
        return (
            f"The link asks for runs {runs!r}: {what or 'no run id'} "
            f"{'is' if len(missing) == 1 else 'are'} not in this store; nothing is shown."
        )
    return None


def default_live_run(runs: list[Run]) -> int:
    """The run the Live view opens when nothing names one: the newest running CoPD run
    (the demo's, not the experts' baseline launched after it), else the newest running
    run, else the newest CoPD run, else the newest. `runs`: newest first."""
    running = [r for r in runs if r.status == RunStatus.RUNNING]
    for pool in (running, runs):
        copd = [r for r in pool if r.method == "copd"]
        if copd or pool:
            return (copd or pool)[0].id
    raise ValueError("no runs")
