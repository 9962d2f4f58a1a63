"""What a set of runs will cost before it is launched (Streamlit-free): how many runs a grid
sweep queues and about how long they take on this machine, timed from the store's finished
runs of the same kind.

    text = sweep_preview(runs, grid, seeds, past=store.list_runs(status="finished"))
    # "12 runs (1 preset × 6 grid points (beta 2 × rl_steps 3) × 2 seeds), about 24 min
    #  on this machine, one after another (from 3 finished runs of this kind: 1.9 s per step)"

A run's kind: its method, model (path and demo size) and number of branches. Seconds per
step are the median over finished runs of that kind of (first start to end) / steps;
without one, a stated estimate of DEFAULT_STEP_S per step.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.dashboard.queries import format_duration, run_duration
from app.dashboard.text import plural

if TYPE_CHECKING:
    from copd.spec.sweep import SweepRun
    from storage import Run

# The demo model's step on this project's reference 2-core CPU (both phases, diagnostics
# and evaluations included), used when the store has no finished run of the kind to time.
DEFAULT_STEP_S = 2.0


def run_kind(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """Method, model path, demo size and branch count: what sets a step's cost."""
    model = config.get("model") or {}
    return (
        config.get("method"),
        model.get("path"),
        model.get("demo_hidden"),
        model.get("demo_layers"),
        len(config.get("branches") or ()),
    )


def total_steps(config: Mapping[str, Any]) -> int:
    """The schedule's steps: cycles x (rl_steps + opd_steps)."""
    sc = config.get("schedule") or {}
    try:
        return int(sc["cycles"]) * (int(sc["rl_steps"]) + int(sc["opd_steps"]))
    except (KeyError, TypeError, ValueError):
        return 0


def step_seconds(past: Sequence[Run]) -> dict[tuple[Any, ...], list[float]]:
    """Kind -> seconds per step of each finished run of that kind."""
    out: dict[tuple[Any, ...], list[float]] = {}
    for r in past:
        steps, seconds = total_steps(r.config or {}), run_duration(r)
        if str(r.status) == "finished" and steps and seconds and seconds > 0:
            out.setdefault(run_kind(r.config or {}), []).append(seconds / steps)
    return out


def sweep_preview(
    runs: Sequence[SweepRun],
    grid: Mapping[str, Sequence[str]],
    seeds: Sequence[int],
    past: Sequence[Run] = (),
) -> str:
    """`N runs (presets × grid points × seeds), about T on this machine, ...`."""
    presets = len({r.preset for r in runs})
    points = 1
    for values in grid.values():
        points *= len(values)
    fields = " × ".join(f"{k.rsplit('.', 1)[-1]} {len(v)}" for k, v in grid.items())
    shape = [plural(presets, "preset")]
    if grid:
        shape.append(plural(points, "grid point") + (f" ({fields})" if len(grid) > 1 else ""))
    shape.append(plural(len(seeds), "seed"))
    timed = step_seconds(past)
    total, measured, used = 0.0, 0, set()
    for r in runs:
        cfg = r.cfg.to_dict()
        per = timed.get(run_kind(cfg))
        if per:
            measured += 1
            used.add(run_kind(cfg))
        total += (statistics.median(per) if per else DEFAULT_STEP_S) * total_steps(cfg)
    if measured == len(runs) and runs:
        n_past = sum(len(timed[k]) for k in used)
        basis = f"timed from {plural(n_past, 'finished run')} of the same kind"
    elif measured:
        basis = (
            f"{measured} of them timed from finished runs of the same kind, the rest at "
            f"~{DEFAULT_STEP_S:g} s per step"
        )
    else:
        basis = (
            f"no finished run of this kind to time yet: ~{DEFAULT_STEP_S:g} s per step "
            "assumed, the demo model's on a 2-core CPU"
        )
    return (
        f"{plural(len(runs), 'run')} ({' × '.join(shape)}), about "
        f"{format_duration(total) or '0s'} on this machine if run one after another ({basis})."
    )
