"""Command line: `copd train|check|eval|merge|presets|base|doctor|plan` (+ the commands other
packages register: `dashboard|launch|runs|cancel|resume|supervise|sweep` from app/,
`reproduce|pilot|drift` from the experiments).

    copd train demo --set schedule.cycles=4 --out runs/demo      # progress, results table
    copd train demo --db sqlite:///runs.db                        # also log to the run store
    copd train runs/demo/config.json --resume runs/demo           # continue from a checkpoint
    copd check demo --set model.path=/models/qwen                 # fail early, nothing trained
    copd eval runs/demo/merged --tasks add,rev
    copd merge runs/a/merged runs/b/merged --out merged
    copd presets
    copd base                                     # the shipped demo base model and its scores
    copd dashboard --port 8501

This module only parses arguments: training goes through `copd.runner` (the composition
root, the one engine module that touches the run store). Commands of the packages above
the engine arrive through the `copd.commands` entry point group (`name = "module:register"`,
`register(subparsers)`), so the engine never imports them and runs where they are absent.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import sys
from pathlib import Path
from typing import Any

TRUST_HELP = (
    "allow tasks given as module:factory (they import and run code named by the config); "
    "off, only the built-in domains, rg: and dataset load"
)


def add_trust_flag(p: argparse.ArgumentParser) -> None:
    """`--trust-task-code` on a command that loads a config (train, check, launch, sweep)."""
    p.add_argument("--trust-task-code", action="store_true", help=TRUST_HELP)


def trusted(args: argparse.Namespace) -> bool:
    """Whether the command got `--trust-task-code` (the only way to trust task code)."""
    return bool(getattr(args, "trust_task_code", False))


def with_report_to(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """`overrides` plus `report_to=[...]` when the command got `--report-to` (repeated or
    comma-separated names; validated with the config, did-you-mean included)."""
    names = [n.strip() for v in getattr(args, "report_to", None) or [] for n in v.split(",")]
    names = [n for n in names if n]
    return [*overrides, f"report_to={json.dumps(names)}"] if names else overrides


def holds_a_run(out: Path) -> bool:
    """Whether the folder holds a run's work: a logged training step or a checkpoint. A
    start that failed before step 1 (a bad task option, a model that did not load) leaves
    only config.json and events; the same --out may then be used again."""
    if any((out / "checkpoints").glob("step-*")):
        return True
    try:
        with open(out / "metrics.jsonl") as f:
            return any(line.startswith('{"type": "metric"') for line in f)
    except FileNotFoundError:
        return False


def cmd_train(args: argparse.Namespace) -> int:
    from copd.runner import load_config, new_recorded_run, open_store, train_run, unique_run_dir
    from copd.spec import ConfigError
    from copd.train.results import results_table

    tags, notes = run_labels(args)  # before anything loads
    if args.resume:
        cfg_path = Path(args.resume) / "config.json"
        spec = str(cfg_path) if cfg_path.exists() else args.config
        cfg = load_config(spec, with_report_to(args, args.set), trusted=trusted(args))
    else:
        cfg = load_config(args.config, with_report_to(args, args.set), trusted=trusted(args))
    store, run_id = None, args.run_id
    if args.db and not (args.out or args.resume) and run_id is None:
        # A recorded run gets a folder of its own, runs/<id>-<name>: parallel runs of one
        # config never share metrics.jsonl, results.json or checkpoints.
        store = open_store(args.db)
        run_id, out = new_recorded_run(cfg, store, Path("runs"), tags=tags, notes=notes)
        tags, notes = (), ""  # on the new row already
    elif args.out or args.resume:
        out = Path(args.out or args.resume)
        if not args.resume and run_id is None and holds_a_run(out):
            raise ConfigError(
                f"--out {out} already holds a run (metrics.jsonl); pass a new folder to --out, "
                f"or continue that run with --resume {out}"
            )
        if not args.resume:  # what a failed start left (events only) is not carried over
            (out / "metrics.jsonl").unlink(missing_ok=True)
    else:  # a folder of its own, as a recorded run gets: parallel runs never share one
        out = unique_run_dir(Path("runs"), cfg.name)
        print(f"run folder: {out}", file=sys.stderr)
    scores = train_run(
        cfg, out, db=None if store else args.db, run_id=run_id, resume=args.resume, store=store,
        tags=tags, notes=notes,
    )  # fmt: skip
    if scores is None:
        print(
            f"stopped; resume with: copd train {out / 'config.json'} --resume {out}",
            file=sys.stderr,
        )
        return 3
    print(results_table(scores))
    print(f"\nresults: {out / 'results.json'}")
    return 0


def add_label_args(p: argparse.ArgumentParser) -> None:
    """`--tag` (repeatable) and `--notes` on a command that records runs (train, launch,
    sweep)."""
    p.add_argument(
        "--tag", dest="tags", action="append", default=[], metavar="TAG",
        help="tag the run (repeat for several), e.g. --tag ablation; find it with "
        "copd runs --where '\"ablation\" in tags'",
    )  # fmt: skip
    p.add_argument("--notes", default="", help="free-text notes on the run (copd note edits them)")


def run_labels(args: argparse.Namespace) -> tuple[tuple[str, ...], str]:
    """The checked --tag values and --notes (copd.common.tags: TagError names the fix),
    before anything is loaded or recorded. Tags and notes live in the run store, so
    `copd train` takes them only with --db."""
    from copd.common.tags import TagError, check_notes, check_tags

    tags, notes = check_tags(args.tags), check_notes(args.notes)
    if (tags or notes) and args.cmd == "train" and not args.db:
        raise TagError(
            "--tag and --notes are kept in the run store: add --db URL (e.g. --db "
            "sqlite:///runs.db), or queue the run with copd launch"
        )
    return tags, notes


def cmd_check(args: argparse.Namespace) -> int:
    """Check a config before training (copd/tools/preflight.py): tasks and dataset rows, the
    model's config and tokenizer (no weights); exit 2 with the message on a problem."""
    from copd.runner import load_config
    from copd.tools.preflight import check_config

    cfg = load_config(args.config, args.set, validate=False, trusted=trusted(args))
    print(check_config(cfg))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from copd.spec import presets

    for name in presets.names():
        print(f"{name:<24} {presets.describe(name)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Greedy held-out accuracy of a model directory on built-in or plugged-in tasks; with
    --harness, lm-evaluation-harness scores of a run's model (copd.runner.harness_eval)."""
    if args.harness:
        from copd.runner import harness_eval

        tasks = [t for t in args.tasks.split(",") if t]
        kw = dict(db=args.db, include_path=args.include_path, limit=args.limit, model=args.branch)
        folder, scores = harness_eval(args.model, tasks, **kw)
        print(json.dumps({"model": str(folder), "scores": scores}, indent=2))
        return 0
    import torch

    from copd.policy.decoding import Decoding
    from copd.policy.models import PolicyView, load_policy
    from copd.policy.rollout import accuracy
    from copd.tasks import get_task

    model, tok = load_policy(args.model)
    greedy = Decoding(max_new_tokens=args.max_new_tokens, greedy=True)
    scores = {}
    for spec in args.tasks.split(","):
        task = get_task(spec, trust_task_code=args.trust_task_code)
        ex = task.eval_examples(args.n)
        with torch.inference_mode(), PolicyView(model).use() as m:
            scores[task.name] = accuracy(m, tok, task, ex, greedy)
    scores["overall"] = sum(scores.values()) / len(scores)
    print(json.dumps(scores, indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Average (or weight) several model directories of one architecture into one."""
    from copd.math import merge as M
    from copd.policy.models import load_policy

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


def cmd_base(args: argparse.Namespace) -> int:
    """The demo's base model: the shipped one (path, settings, greedy scores), or rebuilt."""
    from copd.builders import demo_base, tiny

    if args.ship:
        demo_base.ship_demo_base(args.ship, log=lambda m: print(m, file=sys.stderr))
        return 0
    if args.rebuild:
        path = demo_base.demo_base_model(rebuild=True, log=lambda m: print(m, file=sys.stderr))
        model, tok = tiny.load(path)
        print(
            json.dumps({"path": str(path), "scores": demo_base.greedy_scores(model, tok)}, indent=2)
        )
        print(f"use it with: --set model.path={path}", file=sys.stderr)
        return 0
    shipped = demo_base.shipped_demo_base()
    if shipped is None:
        print("no shipped demo base in this installation; `copd base --rebuild` builds one")
        return 1
    scores = json.loads((shipped / "scores.json").read_text())
    print(json.dumps({"path": str(shipped), **scores}, indent=2))
    return 0


def add_eval_parser(sub: Any) -> None:
    """`copd eval`: copd's own accuracy of a model folder, or the harness's of a run."""
    e = sub.add_parser(
        "eval", help="held-out accuracy of a model directory; --harness lm-eval: a run's scores"
    )
    e.add_argument("model", help="a model folder; with --harness also a run id or run folder")
    e.add_argument("--tasks", default="add,rev", help="copd tasks, or with --harness its tasks")
    e.add_argument(
        "--harness", choices=["lm-eval"],
        help="score with lm-evaluation-harness (extra `harness`); with --db, stored as the run's "
        "evaluations (Compare shows them beside copd's benchmarks)",
    )  # fmt: skip
    e.add_argument("--include-path", help="a folder of lm-eval task YAMLs (local data files)")
    e.add_argument("--limit", type=int, help="lm-eval: examples per task at most")
    e.add_argument("--branch", default="merged", help="lm-eval: score this branch of the run")
    e.add_argument("--db", help="run store URL: record the harness scores on the run")
    e.add_argument("--n", type=int, default=128)
    e.add_argument("--max-new-tokens", type=int, default=8)
    add_trust_flag(e)
    e.set_defaults(func=cmd_eval)


def build_parser(commands: bool = True) -> argparse.ArgumentParser:
    """copd's parser: the engine's commands, and with `commands` those registered by
    entry point (the launcher, sweeps, experiments, export: their imports cost ~0.6 s, so a
    trainer or `copd check` started for an engine command skips them)."""
    p = argparse.ArgumentParser(
        prog="copd", description="Co-Evolving Policy Distillation and its baselines."
    )
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
    t.add_argument(
        "--report-to", action="append", default=[], metavar="NAME",
        help="also send the run to an experiment tracker: tensorboard, mlflow, wandb or "
        "trackio (repeat or comma-separate; sets report_to)",
    )  # fmt: skip
    add_label_args(t)
    add_trust_flag(t)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser(
        "check", help="check a config before training: tasks, datasets, model and tokenizer"
    )
    c.add_argument("config", help="preset name (see `copd presets`) or a .json/.yaml config")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_trust_flag(c)
    c.set_defaults(func=cmd_check)

    add_eval_parser(sub)

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

    b = sub.add_parser("base", help="the demo's base model: shipped copy, or rebuild it here")
    b.add_argument("--rebuild", action="store_true", help="build it on this machine (cached)")
    b.add_argument("--ship", metavar="DIR", help="build afresh and write a shipped copy to DIR")
    b.set_defaults(func=cmd_base)

    for name in COMMAND_MODULES:  # engine-side commands that live in their own modules
        importlib.import_module(name).register(sub)
    for ep in _entry_points() if commands else ():
        try:
            ep.load()(sub)
        except ImportError as e:  # e.g. the dashboard's packages absent on a GPU box
            _unavailable[ep.name] = f"{ep.value}: {e}"
    return p


# Engine modules that add subcommands (`register(subparsers)`).
COMMAND_MODULES: list[str] = ["copd.tools.doctor", "copd.tools.plan"]
_unavailable: dict[str, str] = {}


def _entry_points():
    from importlib.metadata import entry_points

    return sorted(entry_points(group="copd.commands"), key=lambda ep: ep.name)


def _where(args: argparse.Namespace) -> str:
    """The folder a command writes to, for an OSError that names no file."""
    for name in ("out", "resume", "runs_root"):
        value = getattr(args, name, None)
        if value:
            return str(value)
    db = getattr(args, "db", None) or ""
    if db.startswith("sqlite:///"):
        return db[len("sqlite:///") :]
    return f"{Path.cwd()} (the current folder)"


def describe_os_error(e: OSError, args: argparse.Namespace) -> str:
    """One line for a file-system error: what failed, where, and the fix. An OSError that
    already says all that (`user_error`, e.g. a checkpoint that could not be written) keeps
    its own words."""
    if getattr(e, "user_error", False) and e.strerror:
        return e.strerror
    where = e.filename or _where(args)
    code = e.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (
            f"no space left on the disk holding {where}: free some space there (or pass "
            "--out/--db on a larger disk), then resume"
        )
    if code == errno.EROFS:
        return (
            f"{where} is on a read-only file system: pass --out/--db with a writable "
            "location, or remount it read-write"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied writing or reading {where}: make it writable for this user, "
            "or pass --out/--db with a location you own"
        )
    if code == errno.ENOENT:
        return f"no such file or folder: {where}: check the path"
    return f"{e.strerror or e} ({where}): check that the path exists and can be written"


# Commands the engine itself defines: parsed without loading the entry-point commands.
ENGINE_COMMANDS = frozenset({"train", "check", "eval", "merge", "presets", "base"})


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    engine_only = bool(words) and words[0] in ENGINE_COMMANDS
    args = build_parser(commands=not engine_only).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        from copd.spec import ConfigError

        # Errors a user fixes (a config field, a run id, a store URL, a read-only store,
        # diverged weights, a full disk) are one line naming the fix, not a traceback.
        if isinstance(e, OSError):
            print(f"error: {describe_os_error(e, args)}", file=sys.stderr)
            return 2
        if isinstance(e, (ConfigError, KeyError)) or getattr(e, "user_error", False):
            print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
            return 2
        raise
