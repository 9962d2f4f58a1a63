"""The paper's baselines' step budgets: how many updates each stage and each policy makes.

    copd train expert            # single-domain experts (GRPO on their own domain only)
    copd train weight_average    # the same experts, then averaged parameters
    copd train mixed             # one policy, GRPO on all domains, the experts' budgets summed
    copd train sequential        # one policy, GRPO on each domain in turn, the same budget
    copd train static_opd        # experts, then one-way OPD from a frozen teacher expert
    copd train mopd              # experts, then one student distilled from all, routed by domain

Each loop is its own module (the method table's `loop`, copd/spec/methods.py), readable top
to bottom over the engine's primitives and the shared loop pieces (loop.py); their presets
are rows of the table in copd/spec/presets.py. This module is plain rules over the config
(no torch).

Budget rules (recorded in results.json under "budget" and logged as an event at start):
  T = schedule.total_steps() (CoPD's updates per branch), S = cycles x opd_steps (CoPD's
  phase-II updates per branch), K = number of domains.
  - expert, weight_average: each expert makes T GRPO updates.
  - mixed: the one policy makes K x T GRPO updates (the experts' budgets combined, as in
    the paper's Mixed RLVR); with `mixed_steps="per_branch"` T updates of K x
    prompts_per_step prompts (the same rollouts, one CoPD branch's optimizer steps: Adam
    moves weights by about lr per step whatever the batch).
  - sequential: the one policy makes T GRPO updates on each domain in turn, in the
    config's branch order (one stage per domain, named after its branch): K x T in all,
    mixed GRPO's budget, each of `prompts_per_step` prompts.
  - static_opd: experts make T each; then the student makes S OPD updates from the frozen
    teacher (the number of OPD updates CoPD makes per branch); pure OPD as in the paper,
    or with the student's native GRPO batch in each update when `opd.native_rl`.
  - mopd: experts make T each; then the student makes K x S OPD updates on mixed prompts
    (CoPD's phase-II updates of all K branches together: one student absorbs K teachers).

Global steps run over all stages (experts first), so `run/progress` and checkpoints are
continuous; a checkpoint records the stage of the next step, and a resumed run skips the
stages it already finished.
"""

from __future__ import annotations

from dataclasses import dataclass

from copd.spec import ConfigError, RunConfig, method_info


@dataclass(frozen=True)
class Budget:
    """How many updates each stage and each policy makes, and the rule that fixed them."""

    rule: str
    stages: tuple[tuple[str, int], ...]  # (stage name, steps), run in order
    updates_per_policy: dict[str, int]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.stages)

    def start_of(self, stage: str) -> int:
        """Global step at which `stage` begins."""
        start = 0
        for name, n in self.stages:
            if name == stage:
                return start
            start += n
        raise KeyError(f"stage {stage!r} is not one of {[s for s, _ in self.stages]}")

    def stage_at(self, step: int) -> str:
        """The stage global `step` (0-indexed) belongs to; "done" past the end."""
        start = 0
        for name, n in self.stages:
            if step < start + n:
                return name
            start += n
        return "done"

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "stages": [{"name": s, "steps": n} for s, n in self.stages],
            "updates_per_policy": dict(self.updates_per_policy),
            "total_steps": self.total,
        }


def budget_for(cfg: RunConfig) -> Budget:
    """The step budget of a baseline run: the rule its row of the method table names
    (copd/spec/methods.py), as in the module docstring."""
    rule = method_info(cfg.method).budget
    if rule not in BUDGET_RULES:
        raise ConfigError(f"method: {cfg.method!r} is not a baseline")
    sc = cfg.schedule
    T, S, K = sc.total_steps(), sc.cycles * sc.opd_steps, len(cfg.branches)
    return BUDGET_RULES[rule](cfg, T, S, K)


def experts_budget(cfg: RunConfig, T: int, S: int, K: int) -> Budget:
    return Budget(
        f"each expert: T = cycles x (rl_steps + opd_steps) = {T} GRPO updates "
        "(CoPD's updates per branch)",
        (("experts", T),),
        {n: T for n in cfg.branch_names},
    )


def mixed_budget(cfg: RunConfig, T: int, S: int, K: int) -> Budget:
    if cfg.mixed_steps == "per_branch":
        n = cfg.grpo.prompts_per_step
        return Budget(
            f"one policy: T = {T} GRPO updates of K x {n} = {K * n} prompts (one CoPD "
            "branch's optimizer steps; the experts' combined rollouts)",
            (("mixed", T),),
            {cfg.method: T},
        )
    return Budget(
        f"one policy: K x T = {K} x {T} = {K * T} GRPO updates (the experts' combined budget)",
        (("mixed", K * T),),
        {cfg.method: K * T},
    )


def sequential_budget(cfg: RunConfig, T: int, S: int, K: int) -> Budget:
    order = " -> ".join(cfg.branch_names)
    return Budget(
        f"one policy: T = {T} GRPO updates on each domain in turn ({order}), K x T = "
        f"{K} x {T} = {K * T} in all (mixed GRPO's combined budget)",
        tuple((name, T) for name in cfg.branch_names),
        {cfg.method: K * T},
    )


def static_opd_budget(cfg: RunConfig, T: int, S: int, K: int) -> Budget:
    teacher, student = cfg.static_pair()
    return Budget(
        f"experts: T = {T} GRPO updates each; then S = cycles x opd_steps = {S} "
        f"{'native-GRPO + OPD' if cfg.opd.native_rl else 'pure OPD'} updates of "
        f"{student} from frozen {teacher} (CoPD's phase-II updates per branch)",
        (("experts", T), ("distill", S)),
        {**{n: T for n in cfg.branch_names}, student: T + S},
    )


def mopd_budget(cfg: RunConfig, T: int, S: int, K: int) -> Budget:
    return Budget(
        f"experts: T = {T} GRPO updates each; then K x S = {K} x {S} = {K * S} OPD "
        "updates of one student (CoPD's phase-II updates of all branches together)",
        (("experts", T), ("distill", K * S)),
        {**{n: T for n in cfg.branch_names}, cfg.method: K * S},
    )


# The method table's budget rules (copd/spec/methods.py) -> the budget of a run. CoPD's own
# budget is its schedule.
BUDGET_RULES = {
    "experts": experts_budget,
    "mixed": mixed_budget,
    "sequential": sequential_budget,
    "static_opd": static_opd_budget,
    "mopd": mopd_budget,
}
