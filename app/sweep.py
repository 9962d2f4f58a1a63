"""Ablation sets: queue one run per (preset, seed), all in one group, with identical overrides.

    copd sweep demo expert mixed --seeds 0,1,2 --group abl-1 --set schedule.cycles=4
    copd sweep --set-name paper-2dom --seeds 0,1,2 --group paper-2dom-a
    copd sweep --set-name copd-ablations --seeds 0 --group quick --no-start

Every run of a set shares the seeds and the overrides, and each preset keeps its own
method, so the budgets follow the same recorded rule (copd/algorithms/baselines.py) and
the Compare page can put the runs of a group side by side. Every configuration is
validated before the first run is queued, so a bad override queues nothing. The runs
start as slots free up (the dashboard's supervisor, `copd supervise`, or the one tick
this command does unless `--no-start`).

`launch_sweep` is the queueing path (used by the CLI and importable without Streamlit).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from copd import presets as P
from copd.config import ConfigError, RunConfig, apply_overrides, parse_seeds

RESERVED = ("seed", "group", "name", "method")  # set per run by the sweep itself


def sweep_configs(
    presets: Sequence[str], seeds: Sequence[int], group: str, overrides: Sequence[str]
) -> list[RunConfig]:
    """One validated config per (preset, seed), in preset-major order; raises ConfigError
    naming the preset and the field before anything is queued."""
    if not presets:
        raise ConfigError("presets: name at least one preset or use --set-name")
    if not seeds:
        raise ConfigError("seeds: give at least one seed, e.g. --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: {list(seeds)} repeats a seed; give each seed once")
    if not group:
        raise ConfigError("group: name the ablation set, e.g. --group paper-2dom-a")
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in RESERVED:
            raise ConfigError(
                f"--set {key}: a sweep sets {key} per run; use --seeds/--group instead"
            )
    known = P.names()
    out = []
    for preset in presets:
        if preset not in known:
            raise ConfigError(f"presets: unknown preset {preset!r}; available: {known}")
        try:
            base = apply_overrides(P.get(preset), list(overrides))
        except ConfigError as e:
            raise ConfigError(f"preset {preset}: {e}") from None
        for seed in seeds:
            cfg = RunConfig.from_dict(
                {**base.to_dict(), "seed": seed, "group": group, "name": f"{base.name}-s{seed}"}
            )
            try:
                out.append(cfg.validate())
            except ConfigError as e:
                raise ConfigError(f"preset {preset}: {e}") from None
    return out


def launch_sweep(
    store: Any,
    launcher: Any,
    presets: list[str],
    seeds: list[int],
    group: str,
    overrides: list[str],
) -> list[Any]:
    """Queue len(presets) x len(seeds) runs in `group` (nothing is started here). All or
    nothing: if queueing fails part way, the runs already queued are removed."""
    cfgs = sweep_configs(presets, seeds, group, overrides)
    preset_of = [p for p in presets for _ in seeds]
    runs: list[Any] = []
    try:
        for preset, cfg in zip(preset_of, cfgs, strict=True):
            run = launcher.submit(cfg, name=cfg.name, group=group, seed=cfg.seed)
            store.log_event(
                run.id,
                f"sweep {group}: preset {preset}, seed {cfg.seed}, "
                f"overrides {list(overrides) or 'none'}",
            )
            runs.append(run)
    except Exception:
        for run in runs:
            launcher.delete(run.id)
        raise
    return [store.get_run(r.id) for r in runs]


# ---------------------------------------------------------------------- CLI
def register(subparsers: Any) -> None:
    """Add `copd sweep` to copd's argparse subparsers."""
    from app.cli_commands import _common

    p = subparsers.add_parser(
        "sweep", help="queue an ablation set: every preset x every seed, one group"
    )
    p.add_argument("presets", nargs="*", help="preset names (see `copd presets`)")
    p.add_argument(
        "--set-name",
        choices=sorted(P.sets()),
        help="a named set of presets (e.g. paper-2dom), added to the listed presets",
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds or a range, e.g. 0,1,2")
    p.add_argument("--group", required=True, help="the group every run is filed under")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override applied to every run, e.g. --set schedule.cycles=4",
    )
    p.add_argument("--no-start", action="store_true", help="only queue; start nothing now")
    _common(p)
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from app.cli_commands import _launcher

    names = list(args.presets)
    if args.set_name:
        names += [n for n in P.sets()[args.set_name] if n not in names]
    try:
        seeds = parse_seeds(args.seeds)
        sweep_configs(names, seeds, args.group, args.overrides)  # fail before opening a store
        launcher = _launcher(args)
        runs = launch_sweep(launcher.store, launcher, names, seeds, args.group, args.overrides)
    except ConfigError as exc:
        print(f"copd sweep: {exc}", file=sys.stderr)
        return 2
    if not args.no_start:
        launcher.tick()
    print(
        f"group {args.group}: queued {len(runs)} runs ({len(names)} presets x {len(seeds)} seeds)",
        file=sys.stderr,
    )
    for run in runs:
        print(f"{run.id}\t{run.name}\t{run.method}\tseed={run.seed}")
    return 0
