"""What `copd runs` shows: one JSON-ready summary row per run (status, progress, the latest
mean top-10 overlap, duration, tags, notes) and the fixed-width table of them."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage import Run, RunStore

OVERLAP_KEY = re.compile(r"^pair/[^/]+/overlap_top10$")


def latest_overlap(store: RunStore, run_id: int) -> float | None:
    """Mean over ordered pairs of the latest `pair/*/overlap_top10` values, or None."""
    latest = store.latest_metrics(run_id)
    vals = [p.value for k, p in latest.items() if OVERLAP_KEY.match(k)]
    return sum(vals) / len(vals) if vals else None


def run_summary(store: RunStore, run: Run) -> dict[str, Any]:
    """The row `copd runs` shows for one run (JSON-ready)."""
    from storage import RunStatus

    end = run.ended_at or (datetime.now(timezone.utc) if run.status == RunStatus.RUNNING else None)
    duration = (end - run.started_at).total_seconds() if run.started_at and end else None
    return {
        "id": run.id,
        "name": run.name,
        "method": run.method,
        "group": run.group,
        "status": str(run.status),
        "progress": round(float(run.progress or 0.0), 4),
        "overlap_top10": latest_overlap(store, run.id),
        "started": run.started_at.isoformat(timespec="seconds") if run.started_at else None,
        "duration_s": round(duration, 1) if duration is not None else None,
        "tags": list(run.tags),
        "notes": run.notes,
    }


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of `run_summary` rows."""
    head = ["id", "name", "method", "group", "status", "progress", "overlap", "started", "duration",
            "tags"]  # fmt: skip
    body = []
    for r in rows:
        started = (
            datetime.fromisoformat(r["started"]).astimezone().strftime("%m-%d %H:%M:%S")
            if r["started"]
            else "-"
        )
        ov = r["overlap_top10"]
        ov = ov if ov is None or math.isfinite(ov) else None
        body.append(
            [
                str(r["id"]),
                r["name"],
                r["method"],
                r["group"] or "-",
                r["status"],
                f"{math.floor(100 * r['progress'] + 1e-9)}%",  # rounded down, as the pages
                f"{ov:.3f}" if ov is not None else "-",
                started,
                _hms(r["duration_s"]),
                ",".join(r["tags"]) or "-",
            ]
        )
    if not body:
        return "no runs"
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in [head, *body]
    ]
    return "\n".join(lines)


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
