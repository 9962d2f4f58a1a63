"""Command line: `copd train|eval|merge|presets|dashboard` (+ `launch|runs|cancel|resume|
supervise` from the launcher).

    copd train demo --set schedule.cycles=4 --out runs/demo      # progress bar, results table
    copd train demo --db sqlite:///runs.db                        # also log to the run store
    copd train runs/demo/config.json --resume runs/demo           # continue from a checkpoint
    copd eval runs/demo/merged --tasks add,rev
    copd merge runs/a/merged runs/b/merged --out merged
    copd presets
    copd dashboard --port 8501

`--db` is the one place where the engine meets the run store (the store's logger and the
run lifecycle are imported only then); the engine itself never imports storage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_config(spec: str, overrides: list[str]):
    """A preset name or a JSON/YAML file, with `--set` overrides, validated."""
    from copd import presets
    from copd.config import RunConfig, apply_overrides

    cfg = (
        RunConfig.from_file(spec)
        if Path(spec).suffix in (".json", ".yaml", ".yml")
        else presets.get(spec)
    )
    return apply_overrides(cfg, overrides).validate()


class _Progress:
    """A tqdm bar driven by the `run/progress` metric (a Logger)."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr)
        self.tracker = None  # the run store's tracker, when --db: its heartbeat carries progress

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        if "run/progress" in metrics:
            if self.tracker is not None:
                self.tracker.progress = metrics["run/progress"]
            if metrics["run/progress"] > 0:  # a baseline's loop may be longer than the schedule
                self.bar.total = max(self.bar.total, round(step / metrics["run/progress"]))
            self.bar.n = step
            rewards = [v for k, v in metrics.items() if k.endswith("/reward/mean")]
            post = {"cycle": cycle, "phase": phase}
            if rewards:
                post["reward"] = f"{sum(rewards) / len(rewards):.3f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.refresh()

    def log_eval(self, *a, **k):
        pass

    def log_event(self, message, *, level="info", step=None):
        self.bar.write(f"[{level}] {message}")

    def log_checkpoint(self, path, *, step):
        pass

    def flush(self):
        pass

    def close(self):
        self.bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from copd.results import results_table

    if args.resume:
        cfg_path = Path(args.resume) / "config.json"
        cfg = load_config(str(cfg_path) if cfg_path.exists() else args.config, args.set)
    else:
        cfg = load_config(args.config, args.set)
    out = Path(args.out or args.resume or f"runs/{cfg.name}")
    scores = train_run(cfg, out, db=args.db, run_id=args.run_id, resume=args.resume)
    if scores is None:
        print(
            f"stopped; resume with: copd train {out / 'config.json'} --resume {out}",
            file=sys.stderr,
        )
        return 3
    print(results_table(scores))
    print(f"\nresults: {out / 'results.json'}")
    return 0


def train_run(
    cfg,
    out: Path,
    db: str | None = None,
    run_id: int | None = None,
    resume: str | None = None,
    store=None,
) -> dict[str, dict[str, float]] | None:
    """Train one validated config in this process: metrics.jsonl and a progress bar, and
    with `db` (or an open `store`) the run store's logger and lifecycle. Returns the final
    scores, or None when a stop was requested (the run is then checkpointed, cancelled)."""
    from copd import checkpoint
    from copd.algorithms import run
    from copd.engine import TrainingCancelled, World
    from copd.logger import JsonlLogger, MultiLogger

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").exists() or not resume:
        cfg.to_json(out / "config.json")
    loggers = [JsonlLogger(out / "metrics.jsonl"), _Progress(cfg.schedule.total_steps())]
    tracker = None
    if db or store is not None:
        from storage import RunStore
        from storage.logger import StoreLogger
        from storage.tracking import track_run

        store = store if store is not None else RunStore.from_url(db)
        run_id = (
            run_id
            or store.create_run(
                cfg.name,
                cfg.method,
                cfg.to_dict(),
                seed=cfg.seed,
                group=cfg.group,
                run_dir=str(out),
            ).id
        )
        loggers.append(StoreLogger(store, run_id))
        tracker = track_run(store, run_id, heartbeat_s=float(os.environ.get("COPD_HEARTBEAT_S", 5)))
    logger = MultiLogger(*loggers)
    scores = None
    ctx = tracker if tracker is not None else _nullctx()
    with ctx as tr:
        loggers[1].tracker = tr
        world = World.build(cfg, logger)
        previous = signal.signal(signal.SIGTERM, lambda *_: setattr(world, "stop_requested", True))
        if resume and (ck := checkpoint.latest(resume)):
            checkpoint.restore(world, ck)
            logger.log_event(f"resumed from {ck} at step {world.step}", step=world.step)
        try:
            scores = run(world, out)
        except TrainingCancelled as e:
            logger.log_event(str(e), level="warning", step=world.step)
            if tr is not None:
                tr.cancelled = True
        finally:
            signal.signal(signal.SIGTERM, previous)
            logger.close()
    return scores


class _nullctx:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def cmd_presets(args: argparse.Namespace) -> int:
    from copd import presets

    for name in presets.names():
        print(f"{name:<24} {presets.describe(name)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Greedy held-out accuracy of a model directory on built-in or plugged-in tasks."""
    import torch

    from copd.models import PolicyView, load_policy
    from copd.rollout import sample_rollouts
    from copd.tasks import get_task

    model, tok = load_policy(args.model)
    scores = {}
    for spec in args.tasks.split(","):
        task = get_task(spec)
        ex = task.eval_examples(args.n)
        with torch.inference_mode(), PolicyView(model).use() as m:
            b = sample_rollouts(
                m,
                tok,
                ex,
                group_size=1,
                temperature=1.0,
                max_new_tokens=args.max_new_tokens,
                greedy=True,
            )
        scores[task.name] = sum(
            task.reward(e, t) for e, t in zip(b.examples, b.texts, strict=True)
        ) / len(ex)
    scores["overall"] = sum(scores.values()) / len(scores)
    print(json.dumps(scores, indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Average (or weight) several model directories of one architecture into one."""
    from copd import merge as M
    from copd.models import load_policy

    models = [load_policy(p) for p in args.models]
    base_sd = load_policy(args.base)[0].state_dict() if args.base else None
    weights = tuple(float(w) for w in args.weights.split(",")) if args.weights else ()
    sd = M.merge(args.method, base_sd, [m.state_dict() for m, _ in models], weights=weights)
    model, tok = models[0]
    model.load_state_dict(sd)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    print(f"merged {len(models)} models -> {args.out}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start the Streamlit app on 127.0.0.1 (never on a public interface by default)."""
    env = dict(os.environ)
    if args.db:
        env["COPD_DB_URL"] = args.db
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    argv = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"),
        "--server.address", args.host, "--server.port", str(args.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",  # no "Deploy" button: this is a local tool
    ]  # fmt: skip
    print(f"copd dashboard on http://{args.host}:{args.port}", file=sys.stderr)
    return subprocess.call(argv, env=env)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="copd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train CoPD or a baseline from a preset or config file")
    t.add_argument("config", help="preset name (see `copd presets`) or a .json/.yaml config")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set grpo.group_size=8",
    )
    t.add_argument("--out", help="output folder (default runs/<name>)")
    t.add_argument(
        "--db", help="also log to this run store URL (sqlite:///... or postgresql://...)"
    )
    t.add_argument("--run-id", type=int, help="the store's run id (set by the launcher)")
    t.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint"
    )
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="held-out accuracy of a model directory")
    e.add_argument("model")
    e.add_argument("--tasks", default="add,rev")
    e.add_argument("--n", type=int, default=128)
    e.add_argument("--max-new-tokens", type=int, default=8)
    e.set_defaults(func=cmd_eval)

    m = sub.add_parser("merge", help="merge model directories by parameter averaging")
    m.add_argument("models", nargs="+")
    m.add_argument("--out", required=True)
    m.add_argument(
        "--method", default="average", choices=["average", "weighted", "task_arithmetic", "ties"]
    )
    m.add_argument("--base", help="base model directory (task arithmetic / TIES)")
    m.add_argument("--weights", help="comma-separated weights for `weighted`")
    m.set_defaults(func=cmd_merge)

    ps = sub.add_parser("presets", help="list the presets")
    ps.set_defaults(func=cmd_presets)

    d = sub.add_parser("dashboard", help="start the Streamlit dashboard on 127.0.0.1")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    d.set_defaults(func=cmd_dashboard)

    from copd import reproduce, studies  # `copd reproduce|pilot|drift` (paper findings)

    reproduce.add_parser(sub)
    studies.add_parsers(sub)

    try:  # launcher subcommands (launch, runs, cancel, resume, supervise)
        from app.cli_commands import register
    except ImportError:
        register = None
    if register is not None:
        register(sub)
        from app.sweep import register as register_sweep  # `copd sweep` (ablation sets)

        register_sweep(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError) as e:
        from copd.config import ConfigError

        if isinstance(e, (ConfigError, KeyError)):
            print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
            return 2
        raise
