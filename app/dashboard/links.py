"""Bookmarkable views: the pages' selections as URL query parameters (st.query_params).

    live?run=12                 the Live run view on run 12
    compare?group=demo-1        Compare an ablation group
    compare?runs=3,5,8          Compare runs picked one by one

Parsing is forgiving: a malformed value selects nothing (the page's default applies).
"""

from __future__ import annotations


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
