"""Ablation sets and grid sweeps: queue one run per (preset, grid point, seed), all in one
group, with identical overrides.

    copd sweep demo expert mixed --seeds 0,1,2 --group abl-1 --set schedule.cycles=4
    copd sweep --set-name paper-2dom --seeds 0,1,2 --group paper-2dom-a
    copd sweep demo --grid opd.beta=0.5,1,2,4 --grid schedule.rl_steps=3,6 --seeds 0-4 --group beta
    copd sweep --set-name copd-ablations --seeds 0 --group quick --no-start

The configs come from `copd.spec.sweep.sweep_configs` (one implementation for the CLI, the
Launch page and `copd reproduce`): every configuration is validated before the first run is
queued, so a bad override or grid value queues nothing, and queueing is all or nothing.
The runs start as slots free up (the dashboard's supervisor, `copd supervise`, or the one
tick this command does unless `--no-start`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from copd.spec import ConfigError, parse_seeds
from copd.spec import presets as P
from copd.spec.sweep import SweepRun, grid_points, parse_grid, sweep_configs

if TYPE_CHECKING:
    from app.control.launcher import Launcher
    from storage import Run, RunStore


def launch_sweep(
    store: RunStore, launcher: Launcher, runs: Sequence[SweepRun], gpus: int = 0,
    tags: Sequence[str] = (), notes: str = "",
) -> list[Run]:  # fmt: skip
    """Queue every run of a validated set in its group, each with `tags` and `notes`
    (nothing is started here). All or nothing: if queueing fails part way, the runs already
    queued are removed."""
    queued: list[Run] = []
    try:
        for r in runs:
            run = launcher.submit(
                r.cfg, name=r.cfg.name, group=r.cfg.group, seed=r.seed, gpus=gpus, tags=tags,
                notes=notes,
            )  # fmt: skip
            point = ", ".join(f"{k}={v}" for k, v in r.point.items()) or "none"
            store.log_event(
                run.id, f"sweep {r.cfg.group}: preset {r.preset}, grid point {point}, seed {r.seed}"
            )
            queued.append(run)
    except Exception:
        for run in queued:
            launcher.delete(run.id)
        raise
    return [store.get_run(r.id) for r in queued]


# ---------------------------------------------------------------------- CLI
def register(subparsers: Any) -> None:
    """Add `copd sweep` to copd's argparse subparsers."""
    from app.control.cli_commands import add_store_args
    from copd.cli import add_label_args, add_trust_flag

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
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep a field over values (repeatable: the cartesian product), e.g. opd.beta=0.5,1,2",
    )
    p.add_argument("--no-start", action="store_true", help="only queue; start nothing now")
    add_label_args(p)
    add_trust_flag(p)
    add_store_args(p)
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from app.control.cli_commands import launcher_from_args
    from copd.cli import run_labels, trusted
    from copd.runner import with_trust

    tags, notes = run_labels(args)
    names = list(args.presets)
    if args.set_name:
        names += [n for n in P.sets()[args.set_name] if n not in names]
    try:
        seeds = parse_seeds(args.seeds)
        grid = parse_grid(args.grid)
        runs = sweep_configs(names, seeds, args.group, args.overrides, grid)  # before any store
        runs = [replace(r, cfg=with_trust(r.cfg, trusted(args))) for r in runs]
        launcher = launcher_from_args(args)
        runs = launch_sweep(launcher.store, launcher, runs, tags=tags, notes=notes)
    except ConfigError as exc:
        print(f"copd sweep: {exc}", file=sys.stderr)
        return 2
    if not args.no_start:
        launcher.tick()
    print(
        f"group {args.group}: queued {len(runs)} runs ({len(names)} presets x "
        f"{len(grid_points(grid))} grid points x {len(seeds)} seeds)",
        file=sys.stderr,
    )
    for run in runs:
        print(f"{run.id}\t{run.name}\t{run.method}\tseed={run.seed}")
    return 0
