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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.control import samples_cli

if TYPE_CHECKING:
    from app.control.launcher import Launcher
    from storage import Run, RunStore

OVERLAP_KEY = re.compile(r"^pair/[^/]+/overlap_top10$")


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

    p = subparsers.add_parser(
        "tag", help="add (+TAG or TAG) and remove (-TAG) a run's tags; no change: show them",
        usage="copd tag RUN [+TAG | TAG | -TAG ...] [--db URL]",
    )  # fmt: skip
    p.add_argument("run_id", type=int, metavar="RUN")
    # REMAINDER: a removal `-old` reads as an option to argparse; cmd_tag parses the changes
    p.add_argument("changes", nargs=argparse.REMAINDER, help="+TAG or TAG adds, -TAG removes")
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.set_defaults(func=cmd_tag)

    p = subparsers.add_parser("note", help="set (or --append to) a run's notes; no text: show them")
    p.add_argument("run_id", type=int, metavar="RUN")
    p.add_argument("text", nargs="?", default=None, help='the notes ("" clears them)')
    p.add_argument("-a", "--append", metavar="TEXT", help="add TEXT as a new line instead")
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.set_defaults(func=cmd_note)

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
    add_store_args(p)
    p.set_defaults(func=cmd_supervise)

    samples_cli.register(subparsers)

    p = subparsers.add_parser("store", help="back up or check the run store (SQLite)")
    actions = p.add_subparsers(dest="store_cmd", required=True)
    b = actions.add_parser("backup", help="copy the store to OUT (safe while runs write)")
    b.add_argument("out", metavar="OUT", help="the new file to write the copy to")
    b.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    b.set_defaults(func=cmd_store_backup)
    c = actions.add_parser("check", help="PRAGMA integrity_check; exit 1 when damaged")
    c.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    c.set_defaults(func=cmd_store_check)


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


def parse_tag_changes(changes: list[str]) -> tuple[list[str], list[str], str | None]:
    """`+a b -c --db URL` -> (add ["a", "b"], remove ["c"], db "URL"). Tags start with a
    letter or digit (copd.common.tags), so a leading +/- is always the edit's sign. A tag
    named twice takes its last sign, as the edits read left to right (`+x -x`: removed)."""
    signs: dict[str, bool] = {}  # tag -> added
    db = None
    items = iter(changes)
    for item in items:
        if item == "--":
            continue
        if item == "--db":
            db = next(items, None)
        elif item.startswith("--db="):
            db = item.removeprefix("--db=")
        elif item.startswith("-"):
            signs.pop(item[1:], None)
            signs[item[1:]] = False
        else:
            tag = item.removeprefix("+")
            signs.pop(tag, None)
            signs[tag] = True
    add = [t for t, added in signs.items() if added]
    return add, [t for t, added in signs.items() if not added], db


def cmd_tag(args: argparse.Namespace) -> int:
    from storage import RunStore

    add, remove, db = parse_tag_changes(args.changes)
    store = RunStore.from_url(db or args.db)
    run = store.edit_tags(args.run_id, add=add, remove=remove) if add or remove else None
    run = run or store.get_run(args.run_id)
    print(f"run {run.id}: {' '.join(run.tags) if run.tags else '(no tags)'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    from copd.spec import ConfigError
    from storage import RunStore

    if args.text is not None and args.append is not None:
        raise ConfigError("copd note: give the new notes or --append TEXT, not both")
    store = RunStore.from_url(args.db)
    if args.append is not None:
        run = store.set_notes(args.run_id, args.append, append=True)
    elif args.text is not None:
        run = store.set_notes(args.run_id, args.text)
    else:
        run = store.get_run(args.run_id)
    print(run.notes if run.notes else f"run {run.id}: (no notes)")
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
    print(
        f"supervising runs in {launcher.runs_root} ({launcher.capacity()}); Ctrl-C stops "
        "supervising, not the runs",
        file=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        supervise(launcher.store, launcher.runs_root, args.interval, launcher=launcher)
    return 0


def cmd_store_backup(args: argparse.Namespace) -> int:
    from storage.backup import backup_store, store_file

    out = backup_store(args.db, Path(args.out))
    print(f"backed up {store_file(args.db)} to {out} (integrity_check: ok)")
    return 0


def cmd_store_check(args: argparse.Namespace) -> int:
    from storage.backup import check_store, store_file

    path = store_file(args.db)
    problems = check_store(args.db)
    if not problems:
        print(f"ok: {path}")
        return 0
    print(f"damaged: {path} ({len(problems)} problem(s)):", file=sys.stderr)
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    print(
        "restore a copy made with `copd store backup`, or pass --db with a new store file",
        file=sys.stderr,
    )
    return 1


# ---------------------------------------------------------------------- run summaries
def latest_overlap(store: RunStore, run_id: int) -> float | None:
    """Mean over ordered pairs of the latest `pair/*/overlap_top10` values, or None."""
    latest = store.latest_metrics(run_id)
    vals = [p.value for k, p in latest.items() if OVERLAP_KEY.match(k)]
    return sum(vals) / len(vals) if vals else None


def run_summary(store: RunStore, run: Run) -> dict[str, Any]:
    """The row `copd runs` shows for one run (JSON-ready)."""
    from storage import RunStatus

    end = run.ended_at or (datetime.now(timezone.utc) if run.status == RunStatus.RUNNING else None)
    duration = (end - run.started_at).total_seconds() if run.started_at and end else None
    return {
        "id": run.id,
        "name": run.name,
        "method": run.method,
        "group": run.group,
        "status": str(run.status),
        "progress": round(float(run.progress or 0.0), 4),
        "overlap_top10": latest_overlap(store, run.id),
        "started": run.started_at.isoformat(timespec="seconds") if run.started_at else None,
        "duration_s": round(duration, 1) if duration is not None else None,
        "tags": list(run.tags),
        "notes": run.notes,
    }


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of `run_summary` rows."""
    head = ["id", "name", "method", "group", "status", "progress", "overlap", "started", "duration",
            "tags"]  # fmt: skip
    body = []
    for r in rows:
        started = (
            datetime.fromisoformat(r["started"]).astimezone().strftime("%m-%d %H:%M:%S")
            if r["started"]
            else "-"
        )
        ov = r["overlap_top10"]
        ov = ov if ov is None or math.isfinite(ov) else None
        body.append(
            [
                str(r["id"]),
                r["name"],
                r["method"],
                r["group"] or "-",
                r["status"],
                f"{math.floor(100 * r['progress'] + 1e-9)}%",  # rounded down, as the pages
                f"{ov:.3f}" if ov is not None else "-",
                started,
                _hms(r["duration_s"]),
                ",".join(r["tags"]) or "-",
            ]
        )
    if not body:
        return "no runs"
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in [head, *body]
    ]
    return "\n".join(lines)


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
