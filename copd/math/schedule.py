"""Pure schedule logic: which cycle and phase a global step belongs to, who teaches whom.

A CoPD run is N cycles of `rl_steps` phase-I (GRPO) steps then `opd_steps` phase-II steps
(native GRPO + cross-branch OPD in one update). Steps are 0-indexed and global.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from copd.spec import ScheduleConfig


@dataclass(frozen=True)
class Position:
    step: int
    cycle: int  # 0-indexed
    phase: str  # "rl" | "opd"
    index: int  # step within the phase
    phase_len: int
    cycle_len: int  # rl_steps + opd_steps

    @property
    def phase_start(self) -> bool:
        return self.index == 0

    @property
    def phase_end(self) -> bool:
        return self.index == self.phase_len - 1

    @property
    def cycle_end(self) -> bool:
        """The last step of the cycle: the end of phase II, or of phase I when a cycle has
        no phase-II steps (opd_steps=0)."""
        offset = 0 if self.phase == "rl" else self.cycle_len - self.phase_len
        return offset + self.index == self.cycle_len - 1


def position(step: int, sc: ScheduleConfig) -> Position:
    """Where global `step` falls in the cycle schedule."""
    per_cycle = sc.rl_steps + sc.opd_steps
    if not 0 <= step < sc.cycles * per_cycle:
        raise ValueError(f"step {step} is outside the schedule of {sc.cycles * per_cycle} steps")
    cycle, r = divmod(step, per_cycle)
    if r < sc.rl_steps:
        return Position(step, cycle, "rl", r, sc.rl_steps, per_cycle)
    return Position(step, cycle, "opd", r - sc.rl_steps, sc.opd_steps, per_cycle)


def is_cycle_end(step: int, sc: ScheduleConfig) -> bool:
    """Whether global `step` is the last of its cycle (also past the schedule's end)."""
    return (step + 1) % (sc.rl_steps + sc.opd_steps) == 0


def teachers_of(
    student: str, names: Sequence[str], kind: str, hub: str, one_way: bool = False
) -> list[str]:
    """The peers that score `student`'s cross-branch rollouts in phase II.

    pair/full: every other branch. hub: the hub learns from every spoke, a spoke only from
    the hub. one_way (ablation): only the hub teaches, and nobody teaches the hub.
    """
    others = [n for n in names if n != student]
    if one_way:
        return [] if student == hub else [hub]
    if kind in ("pair", "full"):
        return others
    if kind == "hub":
        return others if student == hub else [hub]
    raise ValueError(f"topology.kind {kind!r}: use pair, hub or full")
