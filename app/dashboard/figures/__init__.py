"""Every Plotly figure builder of the dashboard, the report and the experiments, in one
place: pure functions of DataFrames or plain records (no Streamlit, no store), so each is
unit-testable and the experiments write their PNGs with the charts the dashboard shows.

    base      palette, layout, log axes, phase bands and cycle lines (`shade`)
    run       a run's curves, evaluations, timing
    system    a run's System panels (process, host, GPUs), each axis from 0 in its unit
    compare   Compare's overlays: a line per run, or per arm a mean with a band
    signal    the Live view's instruments: signal balance, overlap at several k
    sweep     Compare's grid view (score vs a swept field, heatmap, parallel coordinates)
              and the retention of each expert's score per method
    studies   pilot scatter, drift curves, reproduction bars, the study's map and drift

A new chart is a function in one of these modules, re-exported here.

    fig = figures.series_figure(df, title="Top-10 overlap", smoothing=0.6, schedule=sched)
"""

from app.dashboard.figures.base import (
    PALETTE,
    PHASE_STYLE,
    X_TITLES,
    base_layout,
    color,
    hex_rgba,
    log_axis,
    log_range,
    shade,
    shaded,
)
from app.dashboard.figures.compare import compare_figure
from app.dashboard.figures.grid import (
    heatmap_figure,
    parallel_figure,
    param_figure,
    retention_figure,
)
from app.dashboard.figures.run import eval_figure, series_figure, timing_figure, timing_totals
from app.dashboard.figures.signal import overlap_k_figure, signal_figure
from app.dashboard.figures.studies import (
    drift_figure,
    pilot_figure,
    results_figure,
    study_drift_figure,
    study_map_figure,
)
from app.dashboard.figures.system import (
    SYSTEM_AXES,
    provided_system_keys,
    system_figure,
    system_range,
)

__all__ = [
    "PALETTE", "PHASE_STYLE", "SYSTEM_AXES", "X_TITLES", "base_layout",
    "color", "compare_figure", "drift_figure", "eval_figure", "heatmap_figure", "hex_rgba",
    "log_axis", "log_range", "overlap_k_figure", "parallel_figure", "param_figure",
    "retention_figure",
    "pilot_figure", "provided_system_keys", "results_figure", "series_figure", "shade", "shaded",
    "signal_figure", "study_drift_figure", "study_map_figure", "system_figure",
    "system_range", "timing_figure", "timing_totals",
]  # fmt: skip
