"""`copd export` and `copd export-metrics`: a stored run leaves copd, as a Hub-ready model
folder or as a run in an experiment tracker.

    copd export 3 --out export/copd-demo                  # merged model + model card + results
    copd export 3 --out export/copd-demo --push me/copd-demo   # ... and upload it (only then)
    copd export runs/copd-demo --out export/copd-demo     # a run folder, no store needed
    copd export 4 --out export/lora --full                # a LoRA run: full model, not an adapter
    copd export-metrics 3 --to tensorboard                # back-fill a finished run
    copd export-metrics 3 --to mlflow --out /tmp/m        # written under /tmp/m instead

RUN is a run id of the store (`--db`, default $COPD_DB_URL or ~/.copd) or a run folder.
The folder is written by copd.tools.export (the engine side; the code revision comes from
the store's row). export-metrics feeds the tracker loggers of copd/train/trackers.py from
the store: every metric at its step, every evaluation, the samples and the config, as if
the run had been started with report_to=[NAME]; trackers write where report_to's do
(README, "Where your runs go"), under the run folder unless --out names another.

`copd.cli.build_parser` calls `register(subparsers)` (entry point `copd.commands`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage import Run, RunStore


def register(subparsers: Any) -> None:
    from copd.spec.choices import TRACKERS

    p = subparsers.add_parser(
        "export", help="a run's merged model as a Hub-ready folder (model card, results)"
    )
    p.add_argument("run", help="a run id of the store, or a run folder")
    p.add_argument("--out", required=True, help="the folder to write (new or empty)")
    p.add_argument("--push", metavar="OWNER/NAME", help="also upload to this Hub repository")
    p.add_argument(
        "--public",
        action="store_true",
        help="create the pushed repository public (default private)",
    )
    p.add_argument(
        "--full", action="store_true", help="a LoRA run: the full merged model, not one adapter"
    )
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "export-metrics", help="back-fill a finished run from the store into a tracker"
    )
    p.add_argument("run", type=int, help="the run id")
    p.add_argument("--to", required=True, choices=TRACKERS, help="the tracker")
    p.add_argument(
        "--out", default=None, help="folder for the tracker's files (default: the run's)"
    )
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.set_defaults(func=cmd_export_metrics)


def stored_run(store: RunStore, run_id: int) -> Run:
    from copd.spec import ConfigError

    try:
        return store.get_run(run_id)
    except KeyError:
        raise ConfigError(f"no run {run_id} in {store.url}; `copd runs` lists them") from None


def resolve_run(spec: str, db: str | None) -> tuple[Path, str | None]:
    """(run folder, code revision) of RUN: a folder as it is, or a stored run's."""
    from copd.spec import ConfigError

    if Path(spec).is_dir():
        return Path(spec), None
    if not spec.isdigit():
        raise ConfigError(f"RUN {spec!r} is neither a run folder nor a run id")
    from storage import RunStore

    run = stored_run(RunStore.from_url(db), int(spec))
    if not run.run_dir:
        raise ConfigError(f"run {spec} has no folder recorded; it never started")
    return Path(run.run_dir), run.code_revision


def cmd_export(args: argparse.Namespace) -> int:
    from copd.tools.export import export_run

    run_dir, revision = resolve_run(args.run, args.db)
    out = export_run(
        run_dir, args.out, revision=revision, push=args.push, private=not args.public,
        full=args.full,
    )  # fmt: skip
    print(f"exported {run_dir} -> {out}" + (f" and pushed to {args.push}" if args.push else ""))
    return 0


OUTCOME = {
    "finished": "finished",
    "failed": "failed",
    "crashed": "failed",
    "cancelled": "cancelled",
}


def backfill(store: RunStore, run_id: int, tracker: str, out: Path | None = None) -> int:
    """Send a stored run to `tracker` (module doc); the number of metric values sent.
    ConfigError when the tracker's package is missing or the run is not over."""
    from copd.spec import ConfigError
    from copd.train.trackers import RunInfo, open_tracker

    run = stored_run(store, run_id)
    status = str(getattr(run.status, "value", run.status))
    if status not in OUTCOME:
        raise ConfigError(f"run {run_id} is {status}: export its metrics once it has ended")
    folder = Path(out or run.run_dir or ".")
    folder.mkdir(parents=True, exist_ok=True)
    said: list[str] = []
    info = RunInfo(run.name, run.method, run.group, folder, dict(run.config))
    logger = open_tracker(tracker, info, said.append)
    if logger is None:
        raise ConfigError(said[0] if said else f"{tracker} could not start")
    logger.warn = lambda m: (said.append(m), print(f"warning: {m}", file=sys.stderr))
    keys = store.metric_keys(run_id)
    frame = store.metric_series([run_id], keys, max_points=10**9) if keys else None
    sent = 0
    if frame is not None and len(frame):
        for (step, cycle, phase), g in frame.groupby(["step", "cycle", "phase"], sort=True):
            logger.log_metrics(dict(zip(g["key"], g["value"], strict=True)), step=int(step),
                               cycle=int(cycle), phase=str(phase))  # fmt: skip
            sent += len(g)
    for ev in store.evaluations(run_id).itertuples():
        logger.log_eval(ev.model, ev.benchmark, ev.score, ev.n, step=int(ev.step))
    send_samples(store, run_id, logger)
    logger.outcome = OUTCOME[status]
    logger.close()
    if logger.failed:
        raise ConfigError(said[-1])
    return sent


def send_samples(store: RunStore, run_id: int, logger: Any) -> None:
    """The run's recorded samples, one table per recorded step."""
    from dataclasses import asdict

    for step in sorted({s for s, _ in store.sample_steps(run_id)}):
        rows = [asdict(s) for s in store.samples(run_id, step=step, limit=10**6)]
        logger.log_samples(rows, step=step)


def cmd_export_metrics(args: argparse.Namespace) -> int:
    from storage import RunStore

    store = RunStore.from_url(args.db)
    out = Path(args.out) if args.out else None
    n = backfill(store, args.run, args.to, out)
    print(f"run {args.run}: {n} metric values sent to {args.to}")
    return 0
