"""Every training method in one table: what the loops, the config's checks, the step
budget, the dashboard, the study tables and the export know about a method.

A new baseline is its loop module (`copd/train/algorithms/<name>.py`, a `train(world,
out_dir)`), one row here, its name in `choices.Method`, and a preset. Everything else
(the dispatch, the branch count check, which policies the world builds, the reported
model every comparison uses, the chart titles, the export tags, the study's row labels)
reads the row. A step-budget rule other than those of `BudgetRule` below is one function
in `copd/train/algorithms/baselines.py` and its name in `BudgetRule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from copd.spec.choices import METHODS

# Which policies the world builds: the branches; one policy named after the method
# instead of them (mixed GRPO); or the branches as experts plus a student named after the
# method (MOPD).
Policies = Literal["branches", "one", "branches+student"]
# The model a run is judged by: the merged branches; each expert on its own domain (one
# row composed from the branches' scores); the method's own policy; the static-OPD student.
Reported = Literal["merged", "own_domain", "policy", "student"]
# The step-budget rule (copd/train/algorithms/baselines.py): CoPD's own schedule, or a
# baseline's budget matched to it.
BudgetRule = Literal["copd", "experts", "mixed", "sequential", "static_opd", "mopd"]


@dataclass(frozen=True)
class MethodInfo:
    name: str  # the config's `method`
    label: str  # how charts, tables and the report name it
    loop: str  # the module of copd/train/algorithms/ whose `train(world, out_dir)` runs it
    policies: Policies
    reported: Reported
    teachers: bool  # a branch learns from a teacher (its pairs are student~teacher)
    min_branches: int  # the fewest branches the method runs with
    budget: BudgetRule
    tags: tuple[str, ...]  # model-card tags: what a Hub search for the technique finds
    summary: str  # one line, for docs and `--help`

    @property
    def merges(self) -> bool:
        """Whether the method's reported model is the branches' parameter average."""
        return self.reported == "merged"


METHOD_TABLE: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo(
            "copd", "CoPD", "copd", "branches", "merged", True, 2, "copd",
            ("grpo", "on-policy-distillation", "model-merging"),
            "the branches co-evolve: own-domain GRPO, mutual OPD, parameter merge",
        ),
        MethodInfo(
            "expert", "independent experts", "expert", "branches", "own_domain",
            False, 1, "experts", ("grpo",),
            "one GRPO expert per domain, each judged on its own domain",
        ),
        MethodInfo(
            "weight_average", "weight average of experts", "expert", "branches",
            "merged", False, 2, "experts", ("grpo", "model-merging"),
            "independent experts, then their parameter average (the paper's merge control)",
        ),
        MethodInfo(
            "mixed", "mixed GRPO", "mixed", "one", "policy", False, 1, "mixed",
            ("grpo",), "one policy, GRPO on every domain's prompts",
        ),
        MethodInfo(
            "sequential", "sequential GRPO", "sequential", "one", "policy", False, 2,
            "sequential", ("grpo",), "one policy, GRPO on each domain in turn",
        ),
        MethodInfo(
            "static_opd", "static OPD", "static_opd", "branches", "student",
            True, 2, "static_opd", ("grpo", "on-policy-distillation"),
            "experts, then one-way OPD of a student from a frozen teacher",
        ),
        MethodInfo(
            "mopd", "MOPD", "mopd", "branches+student", "policy", True, 2, "mopd",
            ("grpo", "on-policy-distillation"),
            "experts, then one student distilled from all of them, routed by domain",
        ),
    )
}  # fmt: skip

if set(METHOD_TABLE) != set(METHODS):  # the config's choices and the table name the same methods
    raise RuntimeError(
        f"copd/spec/methods.py: the table names {sorted(METHOD_TABLE)}, "
        f"choices.Method names {sorted(METHODS)}; add the row or the choice"
    )
for _row in METHOD_TABLE.values():
    for _field, _kind in (("policies", Policies), ("reported", Reported), ("budget", BudgetRule)):
        if getattr(_row, _field) not in get_args(_kind):
            raise RuntimeError(f"copd/spec/methods.py: {_row.name}.{_field} is not one of {_kind}")


def method_info(method: str) -> MethodInfo:
    """The table's row for `method`; ValueError naming the methods there are."""
    if method not in METHOD_TABLE:
        raise ValueError(f"method {method!r}: use one of {sorted(METHOD_TABLE)}")
    return METHOD_TABLE[method]


def method_label(method: str) -> str:
    """How charts and tables name `method` (a name outside the table as itself)."""
    info = METHOD_TABLE.get(method)
    return info.label if info else method


def has_teachers(method: str) -> bool:
    info = METHOD_TABLE.get(method)
    return bool(info and info.teachers)
