"""The live view's instruments (Streamlit), drawn below the run's line charts by
app/dashboard/live_view.py: overlap at several k with a note on which k the vocabulary makes
meaningful, and the signal balance of each branch's phase-II update (GRPO term vs each
OPD term). Data come from app/dashboard/signal_data.py, figures from app/dashboard/figures/signal.py.

    draw_overlap_at_k(run, url, x="step", max_points=500, fmt="png")
    draw_signal_balance(run, url, x="step", max_points=500, fmt="png")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st

from app.dashboard.figures import overlap_k_figure, signal_figure
from app.dashboard.series import schedule_of, with_x
from app.dashboard.signal_data import (
    k_caption,
    overlap_k_keys,
    signal_branches,
    signal_keys,
    vocab_size_of,
)
from app.dashboard.text import md_line
from app.dashboard.widgets import cached_keys, cached_series, memo, plot

if TYPE_CHECKING:
    from storage import Run


def draw_overlap_at_k(
    run: Run, url: str, *, x: str, max_points: int, fmt: str, version: tuple = ()
) -> None:
    """The overlap-at-k section, when the run logged more than top-10. `version` (the run's
    RunStore.data_version): while it is unchanged, no series is read and no figure built."""
    _draw(overlap_at_k, run, url, x=x, max_points=max_points, fmt=fmt, version=version)


def draw_signal_balance(
    run: Run, url: str, *, x: str, max_points: int, fmt: str, version: tuple = ()
) -> None:
    """The signal-balance section, when the run logged it (`version` as above)."""
    _draw(signal_balance, run, url, x=x, max_points=max_points, fmt=fmt, version=version)


def _draw(section, run: Run, url: str, *, version: tuple, **kw) -> None:
    keys = cached_keys(url, (run.id,), version)
    section(run, url, keys, schedule=schedule_of(run.config, run.method), version=version, **kw)


def overlap_at_k(
    run: Run, url: str, keys: list[str], *, x: str, max_points: int, fmt: str, schedule: Any,
    version: tuple = (),
) -> None:  # fmt: skip
    """Top-1, top-5, top-10 overlap and overlap mass between branches, side by side."""
    panels = overlap_k_keys(keys, "pair")
    if len(panels) < 2:  # top-10 alone is already drawn above
        return
    vocab = vocab_size_of(run.config)
    wanted = tuple(k for ks in panels.values() for k in ks)

    def build():
        df = with_x(cached_series(url, (run.id,), wanted, max_points, version), x)
        return overlap_k_figure(
            df, panels, schedule=schedule, x=x, vocab=vocab, revision=f"overlapk:{run.id}"
        )

    fig = memo(f"live:{run.id}:overlapk", (version, x, max_points, wanted), build)
    plot(fig, f"live:{run.id}:overlapk", fmt)
    ks = [int(p.split("-")[1]) for p in panels if p.startswith("top-")]
    st.caption(
        k_caption(ks, vocab) + " Overlap mass: the student's probability on the tokens in "
        "both top-k sets, so shared tokens the student barely considers count for little."
    )


def signal_balance(
    run: Run, url: str, keys: list[str], *, x: str, max_points: int, fmt: str, schedule: Any,
    version: tuple = (),
) -> None:  # fmt: skip
    """One figure per branch: gradient norms, cosine, |advantage|, teacher-preferred share,
    log-ratio and clip fractions of the GRPO term and each OPD term."""
    branches = signal_branches(keys)
    if not branches:
        return
    st.subheader("Signal balance")
    st.caption(
        "Per branch, at diagnostics steps of phase II: how much each term of the combined "
        "update moves the weights (gradient norms and their cosine), how large its "
        "advantages are, how often the teacher prefers the student's sampled token, the "
        "mean log-ratio (≈ −KL(student‖teacher)) and the clip fractions."
    )
    wanted = tuple(k for k, (b, _, _) in signal_keys(keys).items() if b in branches)
    sig = (version, x, max_points, wanted)
    df = memo(
        f"live:{run.id}:signal:data", sig,
        lambda: with_x(cached_series(url, (run.id,), wanted, max_points, version), x),
    )  # fmt: skip
    if len(branches) > 1:  # only the open tab's figure is drawn
        tabs = st.tabs([f"branch {md_line(b)}" for b in branches], on_change="rerun",
                       key=f"signal:{run.id}:branch")  # fmt: skip
    else:
        tabs = [st.container()]
    for b, tab in zip(branches, tabs, strict=True):
        if getattr(tab, "open", True) is False:
            continue
        with tab:
            fig = memo(f"live:{run.id}:signal:{b}", sig, lambda b=b: signal_figure(
                df, b, schedule=schedule, x=x, revision=f"signal:{run.id}:{b}"))  # fmt: skip
            plot(fig, f"live:{run.id}:signal:{b}", fmt)
