"""What one Live-view figure costs to build as a run's cycles grow, against the anchor of
adding the same phase bands and cycle lines one shape at a time (plotly's `add_vrect` /
`add_vline`, what `shade` did before), in the same process.

    python bench/bench_figures.py [--cycles 8,32,100] [--repeats 3]

Printed per cycle count: the median seconds of `series_figure` (one panel) and
`signal_figure` (six subplots) with the shapes set in one layout update, the anchor's, and
the ratio. The target is a cost that does not grow with the cycles (within noise), where
the anchor grows with their square.
"""

from __future__ import annotations

import argparse

import _common  # environment, repo on the path; shared timing
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.dashboard import figures
from app.dashboard.figures import base
from app.dashboard.series import Schedule, schedule_cycle_lines, schedule_spans
from copd.common import names as N


def shade_one_at_a_time(fig: go.Figure, schedule: Schedule, x_max: float | None = None):
    """The anchor: each band and line added on its own (each call re-validates the shapes)."""
    for s in schedule_spans(schedule, x_max):
        style = base.PHASE_STYLE.get(s.phase)
        if style is not None and s.x1 > s.x0:
            fig.add_vrect(x0=s.x0, x1=s.x1, fillcolor=style[1], line_width=0, layer="below")
    for xb in schedule_cycle_lines(schedule, x_max):
        fig.add_vline(x=xb, line_dash="dash", line_width=1, line_color="rgba(90,90,90,0.55)")
    return fig


def frames(sched: Schedule) -> tuple[pd.DataFrame, pd.DataFrame]:
    steps = np.arange(0, sched.total + 1, max(1, sched.total // 500))
    overlap = pd.DataFrame(
        {
            "key": "pair/add~rev/overlap_top10",
            "step": steps,
            "value": np.linspace(1, 0.5, len(steps)),
        }
    )
    rows = []
    for kind in ("grad_norm", "cos", "adv_abs", "pos_frac", "log_ratio"):
        for t in (None, "rev"):
            key = N.branch("add", N.signal_key(kind, t))
            rows.append(
                pd.DataFrame({"key": key, "step": steps, "value": np.random.rand(len(steps))})
            )
    return overlap, pd.concat(rows, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", default="8,32,100")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--anchor-max-shapes", type=int, default=400,
        help="skip the anchor above this many shapes (it takes minutes: 32 cycles x 6 "
        "subplots took 150 s here)",
    )  # fmt: skip
    args = ap.parse_args()
    print(_common.machine_line())
    print(_common.load_line())
    print(f"{'cycles':>6} {'figure':>8} {'one update s':>13} {'one at a time s':>16} {'ratio':>7}")
    for n in [int(c) for c in args.cycles.split(",")]:
        sched = Schedule(6, 4, n)
        overlap, signal = frames(sched)
        builders = {
            "series": lambda s, d=overlap: figures.series_figure(d, title="o", schedule=s),
            "signal": lambda s, d=signal: figures.signal_figure(d, "add", schedule=s),
        }
        for name, build in builders.items():
            fast = _common.median_time(lambda b=build, s=sched: b(s), args.repeats)
            n_shapes = len(build(sched).layout.shapes)
            if n_shapes > args.anchor_max_shapes:
                print(
                    f"{n:>6} {name:>8} {fast:>13.3f} {'(skipped)':>16} {'':>7}  {n_shapes} shapes"
                )
                continue
            original = base.shade
            for m in (figures.run, figures.signal):
                m.shade = shade_one_at_a_time
            try:
                slow = _common.median_time(lambda b=build, s=sched: b(s), args.repeats)
            finally:
                for m in (figures.run, figures.signal):
                    m.shade = original
            print(
                f"{n:>6} {name:>8} {fast:>13.3f} {slow:>16.3f} {slow / fast:>6.1f}x  {n_shapes} shapes"
            )
    print(_common.load_line())


if __name__ == "__main__":
    main()
