"""`copd launch|runs|tag|note|cancel|resume|supervise`: the command-line face of
`app.control.launcher` and the run store.

    copd launch demo --set schedule.cycles=2 --group smoke      # prints the run id
    copd launch demo --tag ablation --tag beta --notes "beta=2"   # tags and notes on the run
    copd runs                                                     # table of runs (--json)
    copd runs --where 'opd.beta >= 1 and "ablation" in tags'      # search (copd/common/query.py)
    copd tag 3 +baseline -ablation         copd tag 3             # edit / show a run's tags
    copd note 3 "lr too high"              copd note 3 -a "more"  # replace / append its notes
    copd cancel 3          copd resume 3          copd supervise
    copd store backup copd-backup.db                              # a copy, safe while runs write
    copd store check                                              # exit 1 when the store is damaged

A trainer keeps running after the command that started it exits. A queued run, though, only
starts when a supervisor ticks: the dashboard does so in the background, and so does every
`copd launch` / `copd runs` / `copd resume` call once; `copd supervise` ticks in the
foreground until Ctrl-C. `copd launch` waits (ticking) until its run has started unless
`--no-wait` is given. The dashboard and these commands share one code path, the Launcher.

`copd.cli.build_parser` calls `register(subparsers)` (entry point `copd.commands`); nothing here imports Streamlit.
`copd tag | note` live in labels_cli.py, `copd samples` in samples_cli.py, `copd store` in
store_cli.py (registered from here, in this order), the `copd runs` table in run_table.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.control import labels_cli, samples_cli, store_cli
from app.control.run_table import format_table, json_safe, run_summary

if TYPE_CHECKING:
    from app.control.launcher import Launcher


def register(subparsers: Any) -> None:
    """Add the launcher subcommands to copd's argparse subparsers."""
    from copd.cli import add_label_args, add_trust_flag

    p = subparsers.add_parser("launch", help="queue a training run and start it when possible")
    p.add_argument("config", help="a preset name (see `copd presets`) or a JSON/YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--gpus", type=int, default=0, help="GPUs for this run (0 = CPU)")
    p.add_argument("--group", default=None, help="ablation group to file the run under")
    p.add_argument("--name", default=None, help="run name (default: the config's name)")
    p.add_argument(
        "--no-wait", action="store_true", help="return at once even if the run is still queued"
    )
    p.add_argument(
        "--report-to", action="append", default=[], metavar="NAME",
        help="also send the run to a tracker: tensorboard, mlflow, wandb or trackio",
    )  # fmt: skip
    add_label_args(p)
    add_trust_flag(p)
    add_store_args(p)
    p.set_defaults(func=cmd_launch)

    p = subparsers.add_parser("runs", help="list runs (and start queued ones that fit)")
    p.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    from storage.entities import STATUSES

    p.add_argument("--status", default=None, choices=STATUSES, help="only runs with this status")
    p.add_argument("--group", default=None, help="only runs of this group")
    p.add_argument(
        "--where", default=None, metavar="QUERY",
        help='only runs the query matches, e.g. \'opd.beta >= 1 and "ablation" in tags\' '
        "(fields: id, name, status, method, group, tags, notes, seed and any config field)",
    )  # fmt: skip
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--watch", type=float, default=0.0, metavar="S", help="refresh every S s")
    add_store_args(p)
    p.set_defaults(func=cmd_runs)

    labels_cli.register(subparsers)

    p = subparsers.add_parser("cancel", help="stop a run (SIGTERM, then SIGKILL after --grace)")
    p.add_argument("run_id", type=int)
    p.add_argument("--grace", type=float, default=20.0, help="seconds to wait before SIGKILL")
    add_store_args(p)
    p.set_defaults(func=cmd_cancel)

    p = subparsers.add_parser("resume", help="queue a cancelled/crashed/failed run again")
    p.add_argument("run_id", type=int)
    p.add_argument(
        "--trust-task-code", action="store_true",
        help="resume a run that imports module:factory tasks (asked again at every resume)",
    )  # fmt: skip
    add_store_args(p)
    p.set_defaults(func=cmd_resume)

    p = subparsers.add_parser("supervise", help="start queued runs and watch running ones")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between ticks")
    p.add_argument(
        "--standby",
        action="store_true",
        help="keep a warm trainer for the next CPU run while none is going (`copd dashboard` "
        "asks for it; COPD_STANDBY=0 there turns it off)",
    )
    add_store_args(p)
    p.set_defaults(func=cmd_supervise)

    samples_cli.register(subparsers)
    store_cli.register(subparsers)


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.add_argument("--runs-root", default=None, help="run folders (default: $COPD_HOME/runs)")
    p.add_argument(
        "--max-cpu-runs",
        type=int,
        default=None,
        help="concurrent CPU runs, at least 1 (default: one per 4 cores)",
    )


def launcher_from_args(args: argparse.Namespace) -> Launcher:
    from app.control.launcher import Launcher, default_runs_root
    from copd.spec import ConfigError
    from storage import RunStore

    if args.max_cpu_runs is not None and args.max_cpu_runs < 1:
        raise ConfigError(
            f"--max-cpu-runs {args.max_cpu_runs}: give at least 1 (leave it out for the "
            "default, one run per 4 cores)"
        )
    store = RunStore.from_url(args.db)
    root = Path(args.runs_root) if args.runs_root else default_runs_root()
    return Launcher(store, root, max_cpu_runs=args.max_cpu_runs)


def load_config(spec: str, overrides: list[str], trusted: bool = False) -> Any:
    """A RunConfig from a file path or a preset name, with `--set` overrides applied (not yet
    validated: the launcher validates at submit). The engine's one loader."""
    from copd.runner import load_config as load

    return load(spec, overrides, validate=False, trusted=trusted)


def cmd_launch(args: argparse.Namespace) -> int:
    from copd.cli import run_labels, trusted, with_report_to
    from copd.spec import ConfigError
    from storage import RunStatus

    tags, notes = run_labels(args)  # before the config is loaded or checked
    try:
        cfg = load_config(args.config, with_report_to(args, args.overrides), trusted=trusted(args))
        launcher = launcher_from_args(args)
        run = launcher.submit(
            cfg, name=args.name, group=args.group, gpus=args.gpus, tags=tags, notes=notes
        )
    except ConfigError as exc:
        print(f"copd launch: {exc}", file=sys.stderr)
        return 2
    launcher.tick()
    run = launcher.store.get_run(run.id)
    if run.status == RunStatus.QUEUED and not args.no_wait:
        print(
            f"run {run.id} is queued; waiting for a free slot (Ctrl-C leaves it queued)",
            file=sys.stderr,
        )
        try:
            while run.status == RunStatus.QUEUED:
                time.sleep(2.0)
                launcher.tick()
                run = launcher.store.get_run(run.id)
        except KeyboardInterrupt:
            pass
    print(f"run {run.id} {run.status}: {run.run_dir}", file=sys.stderr)
    print(run.id)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    launcher = launcher_from_args(args)
    # A read-only store (a read-only mount, a copy) is listed, not supervised.
    writable = not getattr(getattr(launcher.store, "db", None), "read_only", False)
    while True:
        if writable:
            launcher.tick()
        runs = launcher.store.list_runs(
            status=args.status, group=args.group, limit=args.limit, where=args.where
        )
        rows = [run_summary(launcher.store, r) for r in runs]
        if args.json:
            print(json.dumps(json_safe(rows), indent=2, default=str, allow_nan=False))
        else:
            if args.watch:
                print("\033[2J\033[H", end="")  # clear the terminal between refreshes
            print(format_table(rows))
        if not args.watch:
            return 0
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    launcher = launcher_from_args(args)
    run = launcher.cancel(args.run_id, grace_s=args.grace)
    print(f"run {run.id}: {run.status}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from app.control.launcher import LauncherError
    from copd.cli import trusted

    launcher = launcher_from_args(args)
    try:
        launcher.resume(args.run_id, trust_task_code=trusted(args))
    except LauncherError as exc:
        print(f"copd resume: {exc}", file=sys.stderr)
        return 2
    launcher.tick()
    run = launcher.store.get_run(args.run_id)
    print(f"run {run.id}: {run.status}")
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    from app.control.supervisor import supervise

    launcher = launcher_from_args(args)
    launcher.standby = args.standby
    print(
        f"supervising runs in {launcher.runs_root} ({launcher.capacity()}); Ctrl-C stops "
        "supervising, not the runs",
        file=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        supervise(launcher.store, launcher.runs_root, args.interval, launcher=launcher)
    launcher.stop_standby()  # a warm trainer holding no run ends with us
    return 0
