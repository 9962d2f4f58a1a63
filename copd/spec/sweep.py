"""Ablation sets and grid sweeps as configs, built once (pure; no torch, no store).

    runs = sweep_configs(["demo"], seeds=[0, 1, 2], group="beta",
                         grid=parse_grid(["opd.beta=0.5,1,2", "schedule.rl_steps=3,6"]))
    len(runs)   # 1 preset x 3 x 2 grid points x 3 seeds = 18, each validated

Every run of a set shares the seeds and the overrides; each preset keeps its own method,
so budgets follow the recorded rules (copd/train/algorithms/baselines.py). A grid point is a set
of `--set` overrides; the swept values stay readable from each run's config (the Compare
page finds the swept keys as the fields that differ across the group). Every config is
validated before anything is queued: an error names the preset, the grid point and the
field, and nothing of the set is recorded. `copd sweep` (app/control/sweep_cli.py), the Launch page and
`copd reproduce` all build their configs here.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from copd.spec import ConfigError, RunConfig, apply_overrides
from copd.spec import presets as P

RESERVED = ("seed", "group", "name", "method")  # set per run by the sweep itself


@dataclass(frozen=True)
class SweepRun:
    """One run of a set: the preset, the grid point (KEY -> raw value), the seed, the config."""

    preset: str
    seed: int
    cfg: RunConfig
    point: dict[str, str] = field(default_factory=dict)


def _split_values(raw: str) -> list[str]:
    """`0.5,1,2` -> ["0.5", "1", "2"]; commas inside [...] / {...} / quotes stay."""
    out, depth, cur, quote = [], 0, "", None
    for ch in raw:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return [v for v in out if v != ""]


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """`--grid KEY=V1,V2,...` items -> {KEY: [V1, V2, ...]} in the order given."""
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: write KEY=V1,V2,..., e.g. opd.beta=0.5,1,2")
        key, raw = (s.strip() for s in item.split("=", 1))
        values = _split_values(raw)
        if not values:
            raise ConfigError(f"--grid {key}: give at least one value, e.g. {key}=1,2")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {key}: {values} repeats a value")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list every value in one --grid")
        grid[key] = values
    return grid


def grid_points(grid: Mapping[str, Sequence[str]] | None) -> list[dict[str, str]]:
    """The cartesian product of a grid, first key slowest; [{}] for no grid."""
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_tag(point: Mapping[str, str]) -> str:
    """A short, name-safe tag of a grid point: `beta0.5-rl_steps3`."""
    parts = [f"{k.rsplit('.', 1)[-1]}{v}" for k, v in point.items()]
    return re.sub(r"[^A-Za-z0-9_.+-]", "", "-".join(parts))


def _check_reserved(keys: Sequence[str], flag: str) -> None:
    for key in keys:
        if key in RESERVED:
            raise ConfigError(f"{flag} {key}: a sweep sets {key} per run; use --seeds/--group")


def run_config(
    preset: str,
    seed: int,
    group: str | None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> RunConfig:
    """One validated config: the preset, form `values` (dotted path -> typed value), then
    `--set` overrides, then seed / group / name (default `<preset name>-s<seed>`)."""
    known = P.names()
    if preset not in known:
        raise ConfigError(f"presets: unknown preset {preset!r}; available: {known}")
    data = P.get(preset).to_dict()
    for path, value in (values or {}).items():
        node = data
        parts = path.split(".")
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise ConfigError(f"{path}: unknown field")
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"{path}: unknown field")
        node[parts[-1]] = copy.deepcopy(value)
    cfg = apply_overrides(RunConfig.from_dict(data), list(overrides))
    data = {**cfg.to_dict(), "seed": seed, "group": group, "name": name or f"{cfg.name}-s{seed}"}
    return RunConfig.from_dict(data).validate()


def sweep_configs(
    presets: Sequence[str],
    seeds: Sequence[int],
    group: str,
    overrides: Sequence[str] = (),
    grid: Mapping[str, Sequence[str]] | None = None,
    values: Mapping[str, Any] | None = None,
) -> list[SweepRun]:
    """presets x grid points x seeds, each validated (preset-major, then grid point, then
    seed); raises ConfigError naming the preset / point before anything is recorded."""
    if not presets:
        raise ConfigError("presets: name at least one preset or use --set-name")
    if not seeds:
        raise ConfigError("seeds: give at least one seed, e.g. --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: {list(seeds)} repeats a seed; give each seed once")
    if not group or not group.strip():
        raise ConfigError("group: name the set, e.g. --group paper-2dom-a")
    _check_reserved([o.split("=", 1)[0].strip() for o in overrides], "--set")
    _check_reserved(list(grid or {}), "--grid")
    out = []
    for preset in dict.fromkeys(presets):
        for point in grid_points(grid):
            point_over = [f"{k}={v}" for k, v in point.items()]
            tag = point_tag(point)
            for seed in seeds:
                stem = P.get(preset).name if preset in P.names() else preset
                name = f"{stem}-{tag}-s{seed}" if tag else f"{stem}-s{seed}"
                try:
                    cfg = run_config(
                        preset, seed, group.strip(), [*overrides, *point_over], values, name
                    )
                except ConfigError as e:
                    where = f"preset {preset}" + (f", grid point {point}" if point else "")
                    raise ConfigError(f"{where}: {e}") from None
                out.append(SweepRun(preset, seed, cfg, dict(point)))
    return out
