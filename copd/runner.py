"""The composition root: config -> world -> algorithm -> results, with or without a run store.

    cfg = load_config("demo", ["schedule.cycles=4"])
    scores = train_run(cfg, Path("runs/demo"))                        # metrics.jsonl + progress
    scores = train_run(cfg, out, db="sqlite:///runs.db")              # + the run store
    run_id, out = new_recorded_run(cfg, store, Path("runs"))          # runs/<id>-<name>/
    scores = evaluate_base(cfg, out, store=store)                     # the "Base" row alone

This is the only module of the engine that touches `storage`: the store's logger and the
run lifecycle (`track_run`) are imported here, lazily, when a store is asked for, so the
engine imports and trains without SQLAlchemy (a GPU box with only torch/transformers/peft).
`copd/cli.py` parses arguments and calls these functions; the experiments call them too.

Run folders (copd/train/folders.py) are never shared; `train_run(..., resume=DIR)`
continues from DIR's last checkpoint and first deletes what was logged after it (store
rows and metrics.jsonl lines), so nothing is logged twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from copd.spec.serialize import CONFIG_SUFFIXES, read_config_file
from copd.tools.preflight import check_run_group as check_run_group
from copd.tools.preflight import check_run_name as check_run_name
from copd.train.folders import hold_run_folder, new_run_dir, truncate_jsonl
from copd.train.folders import slugify as slugify
from copd.train.folders import unique_run_dir as unique_run_dir
from copd.train.logger import Progress


def load_config(
    spec: str, overrides: Sequence[str] = (), validate: bool = True, trusted: bool = False
):
    """A preset name or a JSON/YAML file, with `--set KEY=VALUE` overrides (validated unless
    `validate=False`; the run name is checked either way). Raises ConfigError naming the fix
    when `spec` is neither, or the file does not parse (file, line and column). `trusted`:
    the command got `--trust-task-code`, the only way a run may import a config's
    `module:factory` tasks (`with_trust`)."""
    from copd.spec import ConfigError, RunConfig, apply_overrides, presets

    path = Path(spec)
    if path.suffix in CONFIG_SUFFIXES or path.exists():
        if not path.exists():
            raise ConfigError(f"config: no such file {spec!r}")
        cfg = RunConfig.from_dict(read_config_file(path))
    elif spec in presets.names():
        cfg = presets.get(spec)
    else:
        raise ConfigError(
            f"config: {spec!r} is neither a config file nor a preset; presets: {presets.names()}"
        )
    cfg = with_trust(apply_overrides(cfg, list(overrides)), trusted)
    check_run_name(cfg.name)
    check_run_group(cfg.group)
    return cfg.validate() if validate else cfg


def with_trust(cfg, trusted: bool):
    """`cfg` trusted to import its `module:factory` tasks when the command got
    `--trust-task-code`; a config that asks for trust by itself (a file's or --set's
    `trust_task_code: true`) is refused: a config value alone never runs code."""
    from dataclasses import replace

    from copd.spec import ConfigError

    if trusted:
        return replace(cfg, trust_task_code=True)
    if cfg.trust_task_code:
        raise ConfigError(
            "trust_task_code: a config file or --set never trusts task code by itself; "
            "pass --trust-task-code to the command if you trust the code this config names"
        )
    return cfg


def new_recorded_run(
    cfg, store, root: Path, method: str | None = None, tags: Sequence[str] = (), notes: str = ""
) -> tuple[int, Path]:
    """Record a queued run of `cfg` in `store` (with its tags and notes) and give it a new
    folder under `root`."""
    run = store.create_run(
        cfg.name, method or cfg.method, cfg.to_dict(), seed=cfg.seed, group=cfg.group,
        run_dir_for=lambda rid: str(new_run_dir(root, rid, cfg.name)), tags=tags, notes=notes,
    )  # fmt: skip
    out = Path(run.run_dir)
    return run.id, out


def open_store(db: str):
    """The run store at URL `db` (SQLAlchemy; imported only here)."""
    from storage import RunStore

    return RunStore.from_url(db)


def import_store() -> None:
    """Import the store's modules a recorded run uses (a standby trainer preloads them)."""
    import storage.logger  # noqa: F401
    import storage.tracking  # noqa: F401


@contextlib.contextmanager
def recorded(
    cfg,
    out: Path,
    method: str,
    *,
    db: str | None = None,
    store=None,
    run_id: int | None = None,
    progress: bool = True,
    truncate_after: int | None = None,
    tags: Sequence[str] = (),
    notes: str = "",
) -> Iterator[tuple[Any, Any]]:
    """The loggers of one run and its lifecycle: metrics.jsonl (+ progress), and with `db`
    or an open `store` the store's logger and `track_run` (running -> finished / failed with
    the traceback / cancelled). Yields (logger, tracker or None); closes the logger.
    `tags` and `notes` go on the run's row (added to those of an existing `run_id`).
    `truncate_after`: a resume from the checkpoint at this step (-1: none); what was logged
    after it is deleted first, from metrics.jsonl and the store, and an event says so.
    One writer per run: the folder's lock, then (an existing run) the store's writer lease
    are taken before anything is truncated or written; a second writer is refused."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # one writer per folder, before anything is touched
    with hold_run_folder(out), _recorded_in(
        cfg, out, method, db=db, store=store, run_id=run_id, progress=progress,
        truncate_after=truncate_after, tags=tags, notes=notes,
    ) as pair:  # fmt: skip
        yield pair


@contextlib.contextmanager
def _recorded_in(
    cfg,
    out: Path,
    method: str,
    *,
    db: str | None,
    store,
    run_id: int | None,
    progress: bool,
    truncate_after: int | None,
    tags: Sequence[str],
    notes: str,
) -> Iterator[tuple[Any, Any]]:
    from copd.train.logger import JsonlLogger, MultiLogger

    heartbeat_s = float(os.environ.get("COPD_HEARTBEAT_S", 5))
    if db or store is not None:
        from storage.tracking import take_lease

        store = store if store is not None else open_store(db)
        if run_id is not None:  # an existing run: its lease first, so a refusal loses nothing
            take_lease(store, run_id, heartbeat_s)
    removed: dict[str, int] = {}
    if truncate_after is not None:
        removed["metrics.jsonl lines"] = truncate_jsonl(out / "metrics.jsonl", truncate_after)
    loggers: list = [JsonlLogger(out / "metrics.jsonl")]
    bar = Progress(cfg.schedule.total_steps()) if progress else None
    if bar is not None:
        loggers.append(bar)
    ctx: Any = contextlib.nullcontext()
    if store is not None:
        from storage.logger import StoreLogger
        from storage.tracking import track_run

        if run_id is None:
            run_id = store.create_run(
                cfg.name, method, cfg.to_dict(), seed=cfg.seed, group=cfg.group,
                run_dir=str(out.resolve()), tags=tags, notes=notes,
            ).id  # fmt: skip
        elif tags or notes:
            store.edit_tags(run_id, add=tags)
            if notes:
                store.set_notes(run_id, notes, append=True)
        if truncate_after is not None:
            removed.update(store.truncate_after(run_id, truncate_after))
        loggers.append(StoreLogger(store, run_id, samples_cap=cfg.diagnostics.samples_cap))
        ctx = track_run(store, run_id, heartbeat_s=heartbeat_s)
    logger = MultiLogger(*loggers)
    if truncate_after is not None:
        what = ", ".join(f"{n} {k}" for k, n in removed.items() if n) or "nothing"
        after = f"after step {truncate_after}" if truncate_after >= 0 else "(no checkpoint)"
        logger.log_event(f"resume: removed what was logged {after}: {what}", step=None)
    sampler = attach_observers(cfg, logger, out, method, truncate_after, echo=bar is None)
    try:
        with ctx as tracker:
            if bar is not None:
                bar.tracker = tracker
            yield logger, tracker
    except BaseException:
        set_outcome(logger, "failed")
        raise
    finally:
        if sampler is not None:
            sampler.stop()  # its last row goes out while every logger is still open
        logger.close()


def attach_observers(cfg, logger, out: Path, method: str, after_step: int | None, echo: bool):
    """Add to the fan-out `logger` the trackers of `cfg.report_to` (copd/train/trackers.py)
    and the system-metrics sampler (copd/train/system_metrics.py, every
    `diagnostics.system_every_s` seconds); return the started sampler, or None. A tracker
    that cannot start gives one warning event (printed too when `echo`: no progress bar
    prints events) and the run goes on without it."""
    from copd.train.system_metrics import SystemSampler
    from copd.train.trackers import open_trackers

    def warn(message: str) -> None:
        logger.log_event(message, level="warning")
        if echo:
            print(f"[warning] {message}", file=sys.stderr, flush=True)

    logger.loggers.extend(open_trackers(cfg, out, warn, method=method))
    if not cfg.diagnostics.system_every_s:
        return None
    sampler = SystemSampler(logger, cfg.diagnostics.system_every_s, after_step=after_step)
    logger.loggers.insert(0, sampler)  # first: a flush emits its row before the others flush
    return sampler.start()


def set_outcome(logger, outcome: str) -> None:
    """How the run ended ("finished", "failed", "cancelled"), for the trackers' records."""
    from copd.train.trackers import set_outcome as tell_trackers

    tell_trackers(logger, outcome)


def train_run(
    cfg,
    out: Path,
    db: str | None = None,
    run_id: int | None = None,
    resume: str | None = None,
    store=None,
    tags: Sequence[str] = (),
    notes: str = "",
) -> dict[str, dict[str, float]] | None:
    """Train one validated config in this process: metrics.jsonl and progress, and with `db`
    (or an open `store`) the run store's logger and lifecycle, `tags` and `notes` on its row.
    Returns the final scores, or None when a stop was requested (the run is then
    checkpointed and marked cancelled)."""
    from copd.tools.preflight import check_model_fits
    from copd.train import checkpoint
    from copd.train.algorithms import run
    from copd.train.guard import NonFiniteWeights, diverged
    from copd.train.world import TrainingCancelled, World

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").exists() or not resume:
        cfg.to_json(out / "config.json")
    ck = checkpoint.latest(resume) if resume else None
    truncate = None if not resume else (checkpoint.step_of(ck) if ck else -1)
    with recorded(
        cfg, out, cfg.method, db=db, store=store, run_id=run_id, truncate_after=truncate,
        tags=tags, notes=notes,
    ) as (logger, tr):  # fmt: skip
        world = World.build(cfg, logger)
        previous = signal.signal(
            signal.SIGTERM, lambda *_: setattr(world.state, "stop_requested", True)
        )
        try:
            if ck is not None:
                checkpoint.restore(world, ck)
                logger.log_event(
                    f"resumed from {ck} at step {world.state.step}", step=world.state.step
                )
            elif resume:
                logger.log_event(
                    f"resume: no checkpoint in {Path(resume) / 'checkpoints'}; starting "
                    "clean from step 0",
                    level="warning",
                    step=0,
                )
            check_model_fits(world)
            return run(world, out)
        except NonFiniteWeights as e:
            if str(e).startswith("step "):
                raise
            # Raised deep in sampling (diagnostics or the next rollout): name the step.
            raise diverged(world, str(e)) from e
        except TrainingCancelled as e:
            logger.log_event(str(e), level="warning", step=world.state.step)
            set_outcome(logger, "cancelled")
            if tr is not None:
                tr.cancelled = True
            return None
        finally:
            signal.signal(signal.SIGTERM, previous)


def evaluate_base(cfg, out: Path, store=None, db: str | None = None) -> dict[str, dict[str, float]]:
    """Held-out scores of the base model alone (row "Base"), recorded as a run of method
    "base" when a store is given."""
    from copd.train.evaluate import evaluate
    from copd.train.results import write_results
    from copd.train.world import World

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.to_json(out / "config.json")
    with recorded(cfg, out, "base", db=db, store=store, progress=False) as (logger, _):
        world = World.build(cfg, logger)
        scores = {"base": evaluate(world, {"base": world.base}, step=0)["base"]}
        write_results(scores, out, extra={"method": "base"})
    return scores


def harness_eval(
    target: str,
    tasks: Sequence[str],
    *,
    db: str | None = None,
    include_path: str | None = None,
    limit: int | None = None,
    model: str = "merged",
) -> tuple[Path, dict[str, float]]:
    """lm-evaluation-harness scores (copd/tools/harness.py) of a run's merged model (`target`:
    a run id with `db`, a run folder, or any model folder), written to
    `<run folder>/harness.json` and, with `db`, stored as evaluations of the run at its final
    step, with the harness's version and each task's config as events. `model`: a branch
    of the run instead of its merged model (copd/tools/branch_export.py). Returns (the
    model folder, the scores)."""
    from copd.errors import ConfigError
    from copd.tools.harness import run_lm_eval

    store = open_store(db) if db else None
    try:
        run = None
        if target.isdigit():
            if store is None:
                raise ConfigError(
                    f"copd eval {target}: a run id needs --db URL (or pass its folder)"
                )
            run = store.get_run(int(target))
            run_dir = Path(run.run_dir or "")
        else:
            run_dir = Path(target).expanduser().resolve()
            if store is not None:
                run = next(
                    (r for r in store.list_runs() if r.run_dir and Path(r.run_dir) == run_dir), None
                )
        folder = run_dir / "merged" if (run_dir / "merged" / "config.json").is_file() else run_dir
        if model != "merged":
            from copd.tools.branch_export import export_branch

            folder = export_branch(run_dir, model)
        res = run_lm_eval(folder, tasks, include_path=include_path, limit=limit)
        results = run_dir / "results.json"
        step = int(json.loads(results.read_text()).get("steps", 0)) if results.is_file() else 0
        model = model if model != "merged" else "merged" if folder != run_dir else folder.name
        payload = {"harness": "lm-eval", "version": res.version, "model": model, "step": step,
                   "scores": res.scores, "n": res.n, "configs": res.configs}  # fmt: skip
        (run_dir / "harness.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        if store is not None and run is not None:
            from storage.entities import Evaluation

            store.log_evals(run.id, [Evaluation(model, b, s, res.n.get(b, 0), step)
                                     for b, s in res.scores.items()])  # fmt: skip
            for task, config in res.configs.items():
                store.log_event(run.id, f"lm-eval {res.version} task {task}: "
                                + json.dumps(config, default=str)[:4000], step=step)  # fmt: skip
        return folder, res.scores
    finally:
        if store is not None:
            store.close()
