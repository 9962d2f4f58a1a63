"""Named run configurations: CoPD, every baseline and the ablations.

    copd presets                 # list them
    copd train demo --set schedule.cycles=4

All presets share the demo's model, sampling and GRPO settings, so an ablation set
compares like with like. Budgets follow one rule (recorded in each run's results):
every policy makes `schedule.total_steps()` updates per domain it is responsible for;
mixed GRPO gets the experts' budgets combined (as in the paper).
"""

from __future__ import annotations

from dataclasses import replace

from copd.config import BranchSpec, RunConfig, TopologyConfig, replace_in

_DESCRIPTIONS: dict[str, str] = {}


def _demo() -> RunConfig:
    """CoPD on the built-in tiny model: 2 branches (add, rev), 8 cycles of 6 RL + 4 OPD."""
    return RunConfig(name="copd-demo", method="copd")


def _copd3() -> RunConfig:
    return replace(
        _demo(),
        name="copd-3",
        branches=(BranchSpec("add", "add"), BranchSpec("rev", "rev"), BranchSpec("sort", "sort")),
        topology=TopologyConfig(kind="hub", hub="add"),
    )


_PRESETS = {
    "demo": (_demo, "CoPD, 2 branches (add, rev) on the built-in tiny model"),
    "copd-3": (_copd3, "CoPD hub-and-spoke, 3 branches (add hub, rev, sort)"),
    "copd-no-merge": (
        lambda: replace_in(_demo(), name="copd-no-merge", merge__enabled=False),
        "ablation: CoPD without the final merge (report each branch)",
    ),
    "copd-one-way": (
        lambda: replace_in(_demo(), name="copd-one-way", opd__one_way=True),
        "ablation: one-way OPD (only the first branch teaches)",
    ),
    "copd-no-native-rl": (
        lambda: replace_in(_demo(), name="copd-no-native-rl", opd__native_rl=False),
        "ablation: phase II without the native GRPO batch",
    ),
    "copd-snapshot-teacher": (
        lambda: replace_in(_demo(), name="copd-snapshot-teacher", opd__teacher="snapshot"),
        "ablation: teachers frozen at the start of each phase II",
    ),
    "copd-ratio-1to1": (
        lambda: replace_in(
            _demo(), name="copd-ratio-1to1", schedule__rl_steps=5, schedule__opd_steps=5
        ),
        "ablation: S_RL:S_OPD = 1:1 (same total steps)",
    ),
}


# Named ablation sets: `copd sweep --set-name paper-2dom --seeds 0,1,2 --group NAME` queues
# every preset of the set once per seed with identical overrides.
SETS: dict[str, tuple[str, ...]] = {
    "paper-2dom": ("demo", "expert", "weight_average", "mixed", "static_opd", "static_opd-rev"),
    "paper-3dom": ("copd-3", "expert-3", "mixed-3", "mopd-3"),
    "copd-ablations": (
        "demo",
        "copd-no-merge",
        "copd-one-way",
        "copd-no-native-rl",
        "copd-snapshot-teacher",
        "copd-ratio-1to1",
    ),
}


def sets() -> dict[str, tuple[str, ...]]:
    """The named preset sets (ablation sets), by name."""
    return dict(SETS)


def register(name: str, factory, description: str) -> None:
    """Add a preset (baseline modules register theirs on import)."""
    _PRESETS[name] = (factory, description)


def names() -> list[str]:
    _load_baselines()
    return list(_PRESETS)


def get(name: str) -> RunConfig:
    _load_baselines()
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(_PRESETS)}")
    return _PRESETS[name][0]()


def describe(name: str) -> str:
    _load_baselines()
    return _PRESETS[name][1]


def _load_baselines() -> None:
    import importlib.util

    if importlib.util.find_spec("copd.algorithms.baselines") is not None:
        import copd.algorithms.baselines  # noqa: F401  (registers the baseline presets)
    import copd.paper_presets  # noqa: F401  (registers the real-data GPU presets)
