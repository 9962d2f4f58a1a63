"""Named run configurations: CoPD, every baseline, the ablations and the real-data GPU
presets, as one table.

    copd presets                 # list them
    copd train demo --set schedule.cycles=4

`PRESETS` maps each name to (factory, description); nothing is added to it at import time.
All tiny-model presets share the demo's model, sampling and GRPO settings, so an ablation
set compares like with like. Budgets follow one rule (recorded in each run's results):
every policy makes `schedule.total_steps()` updates per domain it is responsible for;
mixed GRPO gets the experts' budgets combined (as in the paper; copd/train/algorithms/baselines.py),
and so does sequential GRPO, one domain after the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from copd.spec import BranchSpec, RunConfig, TopologyConfig, replace_in
from copd.spec.paper_presets import paper_rg_lora, paper_text_math, paper_vl


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


# The conflict settings (docs/RESULTS.md section 7): two domains over the same letter
# strings with opposite letter maps (copd/tasks/synthetic.py), on a smaller demo base warmed
# up on them (the 128x2 base warmed up on such a pair starts at ~0.9 and leaves RL nothing
# to do).
# - `conflict` (up, down): told apart by the tag that opens the prompt; hidden 64, 1 layer.
# - `cue` (fwd, back): no tag, the direction is cued by the string's first letter (a-e or
#   f-j), which one policy must compute; hidden 48, 1 layer, where it does not learn to.
CONFLICT_FIELDS = dict(
    branches=(BranchSpec("up", "up"), BranchSpec("down", "down")),
    model__demo_tasks=("up", "down"),
    model__demo_hidden=64,
    model__demo_layers=1,
)
CUE_FIELDS = dict(
    branches=(BranchSpec("fwd", "fwd"), BranchSpec("back", "back")),
    model__demo_tasks=("fwd", "back"),
    model__demo_hidden=48,
    model__demo_layers=1,
)


def _pair_presets(
    setting: str, fields: dict, a: str, b: str, blurb: str
) -> dict[str, tuple[Callable[[], RunConfig], str]]:
    """CoPD and every baseline on one two-domain setting (domains a, b): the presets
    `<setting>`, `expert-<setting>`, `mixed-<setting>`, `mixed-steps-<setting>`,
    `static_opd-<setting>` (a->b), `static_opd-<setting>-rev` (b->a), `mopd-<setting>`,
    `weight_average-<setting>`."""

    def copd() -> RunConfig:
        return replace_in(_demo(), name=setting, **fields)

    def as_(name: str, method: str, **more) -> Callable[[], RunConfig]:
        fields = {"merge__enabled": False, **more}  # a baseline merges nothing unless asked
        return lambda: replace_in(copd(), name=name, method=method, **fields)

    def static(direction: str) -> Callable[[], RunConfig]:
        name = f"static-opd-{setting}" + ("-rev" if direction.startswith(b) else "")
        return as_(name, "static_opd", static_direction=direction, opd__native_rl=False)

    return {
        setting: (copd, f"CoPD, 2 branches ({a}, {b}): {blurb}"),
        f"expert-{setting}": (
            as_(f"expert-{setting}", "expert"),
            f"baseline: single-domain experts on {a} and {b} (T updates each)",
        ),
        f"mixed-{setting}": (
            as_(f"mixed-{setting}", "mixed"),
            f"baseline: mixed GRPO on {a} and {b}, 2 x T updates",
        ),
        f"mixed-steps-{setting}": (
            as_(f"mixed-steps-{setting}", "mixed", mixed_steps="per_branch"),
            f"baseline control: mixed GRPO on {a} and {b} with T updates of 2 x prompts",
        ),
        f"static_opd-{setting}": (
            static(f"{a}->{b}"),
            f"baseline: experts, then pure one-way OPD from the frozen {a} expert into {b}",
        ),
        f"static_opd-{setting}-rev": (
            static(f"{b}->{a}"),
            f"baseline: experts, then pure one-way OPD from the frozen {b} expert into {a}",
        ),
        f"mopd-{setting}": (
            as_(f"mopd-{setting}", "mopd", opd__native_rl=False),
            f"baseline: MOPD on {a} and {b} (one student, each prompt routed to its expert)",
        ),
        f"weight_average-{setting}": (
            as_(f"weight-average-{setting}", "weight_average", merge__enabled=True),
            f"control: the {a} and {b} experts' parameter average (the paper's merge baseline)",
        ),
    }


def _demo_as(name: str, method: str | None = None, **fields) -> Callable[[], RunConfig]:
    """A factory: the demo renamed, under `method` (default: CoPD), with `fields` replaced
    (`replace_in` paths, e.g. merge__enabled=False)."""
    return lambda: replace_in(_demo(), name=name, method=method or "copd", **fields)


def _copd3_as(name: str, method: str, **fields) -> Callable[[], RunConfig]:
    return lambda: replace_in(_copd3(), name=name, method=method, **fields)


# setting -> its presets (CoPD and every baseline), each setting's set of SETS too
PAIR_PRESETS = {
    "conflict": _pair_presets(
        "conflict", CONFLICT_FIELDS, "up", "down", "opposite letter maps, one tag apart"
    ),
    "cue": _pair_presets(
        "cue", CUE_FIELDS, "fwd", "back", "opposite letter maps, cued by the first letter"
    ),
}

# name -> (factory, description), in the order `copd presets` lists them.
PRESETS: dict[str, tuple[Callable[[], RunConfig], str]] = {
    # CoPD and its ablations
    "demo": (_demo, "CoPD, 2 branches (add, rev) on the built-in tiny model"),
    "copd-3": (_copd3, "CoPD hub-and-spoke, 3 branches (add hub, rev, sort)"),
    "copd-no-merge": (
        _demo_as("copd-no-merge", merge__enabled=False),
        "ablation: CoPD without the final merge (report each branch)",
    ),
    "copd-one-way": (
        _demo_as("copd-one-way", opd__one_way=True),
        "ablation: one-way OPD (only the first branch teaches)",
    ),
    "copd-no-native-rl": (
        _demo_as("copd-no-native-rl", opd__native_rl=False),
        "ablation: phase II without the native GRPO batch",
    ),
    "copd-snapshot-teacher": (
        _demo_as("copd-snapshot-teacher", opd__teacher="snapshot"),
        "ablation: teachers frozen at the start of each phase II",
    ),
    "copd-ratio-1to1": (
        _demo_as("copd-ratio-1to1", schedule__rl_steps=5, schedule__opd_steps=5),
        "ablation: S_RL:S_OPD = 1:1 (same total steps)",
    ),
    # the paper's baselines (their loops and step budgets: copd/train/algorithms/)
    "expert": (
        _demo_as("expert", "expert", merge__enabled=False),
        "baseline: single-domain experts, GRPO on their own domain only (T updates each)",
    ),
    "weight_average": (
        _demo_as("weight-average", "weight_average", merge__enabled=True),
        "baseline: the single-domain experts, then their parameters averaged",
    ),
    "mixed": (
        _demo_as("mixed", "mixed", merge__enabled=False),
        "baseline: one policy, GRPO on all domains' prompts, K x T updates",
    ),
    "mixed-steps": (
        _demo_as("mixed-steps", "mixed", merge__enabled=False, mixed_steps="per_branch"),
        "baseline control: mixed GRPO with one CoPD branch's optimizer steps (T updates of "
        "K x prompts_per_step prompts): the same rollouts as mixed, K times fewer Adam steps",
    ),
    "sequential": (
        _demo_as("sequential", "sequential", merge__enabled=False),
        "baseline: one policy, GRPO on add for T updates, then on rev for T (sequential "
        "training: what the second domain keeps of the first)",
    ),
    "static_opd": (
        _demo_as(
            "static-opd",
            "static_opd",
            merge__enabled=False,
            static_direction="add->rev",
            opd__native_rl=False,
        ),  # fmt: skip
        "baseline: experts, then pure one-way OPD from the frozen add expert into rev (paper)",
    ),
    "static_opd-rev": (
        _demo_as(
            "static-opd-rev",
            "static_opd",
            merge__enabled=False,
            static_direction="rev->add",
            opd__native_rl=False,
        ),  # fmt: skip
        "baseline: experts, then pure one-way OPD from the frozen rev expert into add (paper)",
    ),
    "static_opd+rl": (
        _demo_as("static-opd-rl", "static_opd", merge__enabled=False, static_direction="add->rev"),
        "variant: static OPD add->rev whose updates also keep rev's native GRPO batch "
        "(CoPD's phase-II form, one-way and frozen)",
    ),
    "mopd": (
        _demo_as("mopd", "mopd", merge__enabled=False, opd__native_rl=False),
        "baseline: experts, then one student distilled from all, each prompt routed to its "
        "domain's expert (opd.native_rl=true adds the outcome-reward GRPO term)",
    ),
    "expert-3": (
        _copd3_as("expert-3", "expert", merge__enabled=False),
        "baseline: 3 single-domain experts (add, rev, sort)",
    ),
    "mixed-3": (
        _copd3_as("mixed-3", "mixed", merge__enabled=False),
        "baseline: mixed GRPO on add, rev and sort, 3 x T updates",
    ),
    "mixed-steps-3": (
        _copd3_as("mixed-steps-3", "mixed", merge__enabled=False, mixed_steps="per_branch"),
        "baseline control: mixed GRPO on add, rev and sort with T updates of 3 x prompts",
    ),
    "sequential-3": (
        _copd3_as("sequential-3", "sequential", merge__enabled=False),
        "baseline: sequential GRPO on add, then rev, then sort, T updates each",
    ),
    "weight_average-3": (
        _copd3_as("weight-average-3", "weight_average", merge__enabled=True),
        "control: the 3 experts' parameter average (add, rev, sort)",
    ),
    "mopd-3": (
        _copd3_as("mopd-3", "mopd", merge__enabled=False, opd__native_rl=False),
        "baseline: MOPD with 3 domain experts (add, rev, sort)",
    ),
    # the conflict settings: opposite letter maps of the same strings (docs/RESULTS.md)
    **{name: p for presets in PAIR_PRESETS.values() for name, p in presets.items()},
    # real models and datasets on GPUs (copd/spec/paper_presets.py)
    "paper-text-math": (
        paper_text_math,
        "GPU: CoPD on two local datasets (math, multiple choice) with a local instruction model",
    ),
    "paper-text-math-lora": (
        lambda: paper_text_math(lora=True),
        "GPU: as paper-text-math with LoRA branches sharing one base on one GPU",
    ),
    "paper-vl-image": (
        paper_vl,
        "GPU: CoPD on a local Qwen-VL model, a text (math) branch and an image branch",
    ),
    "paper-vl-video": (
        lambda: paper_vl(video=True),
        "GPU: CoPD on a local Qwen-VL model, text + image + video branches, the text branch as hub",
    ),
    "paper-rg-lora": (
        paper_rg_lora,
        "GPU: CoPD, LoRA branches, two reasoning-gym domains (arithmetic, leg counting) on a "
        "local instruction model (extra rg)",
    ),
}


# Named ablation sets: `copd sweep --set-name paper-2dom --seeds 0,1,2 --group NAME` queues
# every preset of the set once per seed with identical overrides.
SETS: dict[str, tuple[str, ...]] = {
    "paper-2dom": (
        "demo",
        "expert",
        "weight_average",
        "mixed",
        "sequential",
        "static_opd",
        "static_opd-rev",
        "mopd",
    ),
    "paper-3dom": ("copd-3", "expert-3", "weight_average-3", "mixed-3", "sequential-3", "mopd-3"),
    **{setting: tuple(presets) for setting, presets in PAIR_PRESETS.items()},
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


def names() -> list[str]:
    return list(PRESETS)


def get(name: str) -> RunConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name][0]()


def describe(name: str) -> str:
    return PRESETS[name][1]
