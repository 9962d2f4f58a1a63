"""The Live view's line charts as a catalogue keyed on metric names (pure: no Streamlit).

    groups = select_keys(run_keys)            # chart -> the run's keys it draws
    for chart in LINE_CHARTS: chart.labels(groups[chart.group])   # key -> legend label

Each chart says which names it draws (a predicate over `copd.common.names.parse`), how each
is labelled in the legend, its axis and its default smoothing. A new chart is one row of
LINE_CHARTS; the names are parsed once, here, never by hand in a page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from copd.common import names as N

TOP_K = N.overlap_key(10)
AUTO = "auto"  # the view's smoothing setting that takes each chart's own default


@dataclass(frozen=True)
class LineChart:
    group: str  # the chart's id (its section, its memo key)
    title: str
    y_title: str
    log_y: bool
    draws: Callable[[N.Name], bool]  # which metric names it draws
    label: Callable[[N.Name], str]  # a name's legend label
    smoothing: float = 0.0  # its EMA weight when the view's smoothing is "auto"

    def labels(self, keys: list[str]) -> dict[str, str]:
        return {k: self.label(N.parse(k)) for k in keys}


def pair_label(n: N.Name) -> str:
    """`add~rev · add's samples`: each ordered pair is measured on its student's samples,
    so a~b and b~a are two measurements."""
    return f"{n.owner} · {n.student}'s samples"


def reward_label(n: N.Name) -> str:
    """`branch/add/reward/mean` -> `add · own batch`; `branch/add/reward_on/rev` -> `add · on rev`."""
    if n.under("branch", "reward_on/"):
        return f"{n.owner} · on {n.key.removeprefix('reward_on/')}"
    return f"{n.owner} · own batch"


def is_reward(n: N.Name) -> bool:
    return n.is_("branch", N.REWARD_MEAN) or n.under("branch", "reward_on/")


# Rewards and the signal share are means over a few sampled groups per step, noisy step to
# step: smoothed by default ("auto"), the raw line faint behind. Diagnostics are measured
# on fixed prompts at phase ends: drawn as measured.
LINE_CHARTS = (
    LineChart("overlap", "Top-10 overlap between branches", "overlap@10", False,
              lambda n: n.is_("pair", TOP_K), pair_label),
    LineChart("overlap_base", "Overlap vs base model", "overlap@10", False,
              lambda n: n.is_("base", TOP_K), lambda n: n.owner),
    LineChart("sym_kl", "Symmetric KL between branches, on each student's samples",
              "KL(p‖q)+KL(q‖p)", True, lambda n: n.is_("pair", N.SYM_KL), pair_label),
    LineChart("reward", "Reward per branch per domain", "mean reward", False, is_reward,
              reward_label, smoothing=0.6),
    # GRPO learns only from groups whose rewards differ; the rest are skipped.
    LineChart("signal", "Prompt groups with a reward signal (rewards not all equal)",
              "share of groups", False, lambda n: n.is_("branch", N.SIGNAL_FRAC),
              lambda n: n.owner, smoothing=0.6),
    # How far each student still is from each teacher, on its own samples of the teacher's
    # prompts (phase II, static OPD, MOPD): the distillation channel's progress.
    LineChart("teacher_kl", "KL(student ‖ teacher) on the student's samples of the teacher's prompts",
              "nats per token", True, lambda n: n.under("branch", N.OPD_REVERSE_KL + "/"),
              lambda n: f"{n.owner} ← {n.key.removeprefix(N.OPD_REVERSE_KL + '/')}",
              smoothing=0.6),
)  # fmt: skip
BY_GROUP = {c.group: c for c in LINE_CHARTS}
# Drawn on every first draw; the other charts wait in sections opened on demand.
PRIMARY_CHARTS = ("overlap", "sym_kl", "reward")
# The Live view's other panels: the names of one scope each ("time/...", "system/...").
PANELS = ("time", "system")


def select_keys(keys: list[str]) -> dict[str, list[str]]:
    """A run's metric keys by the chart (or panel: "time", "system") that draws them."""
    groups: dict[str, list[str]] = {c.group: [] for c in LINE_CHARTS} | {p: [] for p in PANELS}
    for k in keys:
        n = N.parse(k)
        chart = next((c for c in LINE_CHARTS if c.draws(n)), None)
        if chart is not None:
            groups[chart.group].append(k)
        elif n.kind in PANELS:
            groups[n.kind].append(k)
    # A branch's reward on its own domain is logged twice in phase I (`reward/mean` and
    # `reward_on/<own task>`, the same number): draw it once, as the per-domain series.
    parsed = [N.parse(k) for k in groups["reward"]]
    per_domain = {n.owner for n in parsed if n.under("branch", "reward_on/")}
    groups["reward"] = [
        k for k, n in zip(groups["reward"], parsed, strict=True)
        if n.under("branch", "reward_on/") or n.owner not in per_domain
    ]  # fmt: skip
    return groups


def chart_smoothing(smoothing: float | str, group: str) -> float:
    """The EMA weight of chart `group`: the user's value, or with "auto" its default."""
    if smoothing == AUTO:
        chart = BY_GROUP.get(group)
        return chart.smoothing if chart else 0.0
    return float(smoothing)
