"""Reproduce the paper's main tables (arXiv 2604.27083, Tables 1 and 2) on the built-in domains.

    copd reproduce                                  # 8 seeds, full scale, report in runs/reproduce
    copd reproduce --seeds 0,1 --scale quick --db sqlite:///runs.db --group repro-a
    copd reproduce --scale quick --set model.path=/path/to/tiny   # any --set goes to every arm

Every trained arm x seed is its own `copd train` process, `--jobs` at a time (default 2,
one torch thread each: both cores of a 2-core machine; experiments/pool.py), with the
presets' common settings and the step budgets recorded in copd/train/algorithms/baselines.py,
so every arm sees the same model, sampling, GRPO settings and data throughput. Finished
runs in `<out>/runs/` with the same config are reused with `--reuse`. Two domains (Table 1
layout): the base model, the single-domain experts, mixed GRPO and its equal-optimizer-
steps control, static OPD in both directions (pure one-way OPD, as in the paper), CoPD.
Three domains (Table 2): the base, three experts, mixed GRPO and its control, MOPD, CoPD
hub-and-spoke. The base rows are evaluated in this process.

Which model of an arm fills a row: each expert of "expert"; the student of static OPD
(as the paper reports it); the mixed policy; the MOPD student; CoPD's merged model (its
branches alone are extra rows, as in the paper's ablation table).

With `--db` every arm is a run of ONE group in the run store (the Compare page shows the
group in the same layout). The report, `<out>/report.md`, holds one table per setting:
rows = methods/models, columns = each benchmark then Overall (mean over benchmarks);
cells mean ± std over seeds; the best mean of each column in bold.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from copd.common.tables import PaperTable, paper_table
from copd.spec import ConfigError, RunConfig, method_info, parse_seeds
from copd.spec.sweep import run_config
from experiments.pool import Job, run_pool

# Full scale is the presets as they are, on one torch thread: on a shared 2-core machine
# two threads per process oversubscribe the cores and a GRPO step ran ~25x slower (26 s vs
# 1.1 s at load average ~9). `--set threads=0` uses every core on a quiet machine.
# Quick: tiny budgets for smoke checks and the test suite.
QUICK_OVERRIDES = (
    "threads=1",
    "schedule.cycles=2",
    "schedule.rl_steps=2",
    "schedule.opd_steps=1",
    "schedule.diag_every=0",
    "schedule.eval_every_cycles=0",
    "grpo.prompts_per_step=4",
    "grpo.group_size=4",
    "opd.cross_prompts_per_step=4",
    "opd.cross_group_size=2",
    "eval.n_prompts=16",
    "diagnostics.n_prompts=4",
)
SCALES = {"full": ("threads=1",), "quick": QUICK_OVERRIDES}


TUNED = ("opd.cross_prompts_per_step=16", "opd.cross_group_size=2")


@dataclass(frozen=True)
class Arm:
    """One column of the paper's comparison: a preset (or the base model alone)."""

    key: str  # run name stem, unique within a reproduction
    preset: str  # the preset it trains (for "base": the preset whose domains it evaluates)
    setting: str  # "2 domains" | "3 domains": which table it belongs to
    base_only: bool = False
    overrides: tuple[str, ...] = ()  # on top of the preset (e.g. a setting the study chose)


ARMS: tuple[Arm, ...] = (
    Arm("base", "expert", "2 domains", base_only=True),
    Arm("expert", "expert", "2 domains"),
    Arm("mixed", "mixed", "2 domains"),
    Arm("mixed-steps", "mixed-steps", "2 domains"),
    Arm("static_opd", "static_opd", "2 domains"),
    Arm("static_opd-rev", "static_opd-rev", "2 domains"),
    Arm("mopd", "mopd", "2 domains"),
    # the paper's parameter-merge control: the two experts' weight average
    Arm("weight_average", "weight_average", "2 domains"),
    Arm("copd", "demo", "2 domains"),
    # The CoPD setting the study chose on the validation split (docs/RESULTS.md, the map):
    # 16 cross prompts x 2 samples per teacher instead of 8 x 4 (same cross batch size).
    Arm("copd-cross16x2", "demo", "2 domains", overrides=TUNED),
    Arm("base-3", "expert-3", "3 domains", base_only=True),
    Arm("experts-3", "expert-3", "3 domains"),
    Arm("mixed-3", "mixed-3", "3 domains"),
    Arm("mixed-steps-3", "mixed-steps-3", "3 domains"),
    Arm("mopd-3", "mopd-3", "3 domains"),
    Arm("weight_average-3", "weight_average-3", "3 domains"),
    Arm("copd-3", "copd-3", "3 domains"),
    Arm("copd-3-cross16x2", "copd-3", "3 domains", overrides=TUNED),
    # chosen on the 3-domain map's validation split: every pair teaches (no hub)
    Arm("copd-3-full", "copd-3", "3 domains", overrides=("topology.kind=full",)),
)


def row_labels(arm: Arm, cfg: RunConfig) -> list[tuple[str, str]]:
    """(model name in the arm's scores, row label) for the rows an arm contributes: the
    method's reported model (copd/spec/methods.py) under the method's label, and for
    merging methods each branch alone too."""
    if arm.base_only:
        return [("base", "Base")]
    info = method_info(cfg.method)
    label = info.label[:1].upper() + info.label[1:]
    if info.reported == "own_domain":
        return [(b, f"{b}-Expert") for b in cfg.branch_names]
    if info.reported == "student":
        teacher, student = cfg.static_pair()
        return [(student, f"{label} {teacher}→{student}")]
    if info.reported == "policy":
        steps = " (T steps)" if info.budget == "mixed" and cfg.mixed_steps == "per_branch" else ""
        return [(cfg.reported_model(), label + steps)]
    name = label if cfg.topology.kind == "pair" else f"{label} ({cfg.topology.kind})"
    if arm.overrides:
        name += " [" + " ".join(arm.overrides) + "]"
    return [("merged", name)] + [(b, f"{name}: {b} branch only") for b in cfg.branch_names]


def arm_config(arm: Arm, seed: int, overrides: Sequence[str], group: str | None) -> RunConfig:
    """The arm's preset with the scale and user overrides, the seed and the group."""
    try:
        over = [*overrides, *arm.overrides]
        return run_config(arm.preset, seed, group, over, name=f"{arm.key}-s{seed}")
    except ConfigError as e:
        raise ConfigError(f"arm {arm.key}: {e}") from None


@dataclass
class ArmResult:
    arm: Arm
    seed: int
    scores: dict[str, dict[str, float]]
    rows: list[tuple[str, str]]
    seconds: float


def chosen_arms(
    scale: str, seeds: Sequence[int], arms: Sequence[str] | None, extra_arms: Sequence[Arm]
) -> list[Arm]:
    """The arms to run (all, or those named by `arms`); ConfigError naming the fix for an
    unknown scale, no seeds or an unknown arm, before anything runs."""
    if scale not in SCALES:
        raise ConfigError(f"--scale {scale!r}: use one of {sorted(SCALES)}")
    if not seeds:
        raise ConfigError("--seeds: give at least one seed, e.g. 0,1,2")
    every = (*ARMS, *extra_arms)
    chosen = [a for a in every if arms is None or a.key in arms]
    if arms is not None and len(chosen) != len(set(arms)):
        known = [a.key for a in every]
        raise ConfigError(f"--arms {list(arms)}: pick from {known}")
    return chosen


def collect(chosen, seeds, cfgs, out: Path, scores_of, db, reuse: bool, log) -> list[ArmResult]:
    """Every arm x seed's result: a trained run's scores, or (a base-only arm) the base
    model evaluated once, reused from its folder when `reuse`."""
    from copd.runner import evaluate_base, open_store

    results: list[ArmResult] = []
    store = open_store(db) if db else None
    for arm in chosen:
        for seed in seeds:
            cfg = cfgs[arm.key, seed]
            run_dir = out / "runs" / cfg.name
            if arm.base_only:
                cached = run_dir / "results.json"
                if reuse and cached.exists():
                    scores = json.loads(cached.read_text())["scores"]
                    log(f"[reproduce] {cfg.name}: reused {cached}")
                else:
                    log(f"[reproduce] {cfg.name}: evaluating the base model")
                    scores = evaluate_base(cfg, run_dir, store=store)
            else:
                scores = scores_of[run_dir]
            results.append(
                ArmResult(arm, seed, scores, row_labels(arm, cfg), _run_seconds(run_dir))
            )
    return results


def reproduce(
    seeds: Sequence[int],
    scale: str = "full",
    overrides: Sequence[str] = (),
    out: str | Path = "runs/reproduce",
    db: str | None = None,
    group: str | None = None,
    arms: Sequence[str] | None = None,
    reuse: bool = False,
    log: Callable[[str], None] = print,
    jobs: int = 2,
    extra_arms: Sequence[Arm] = (),
) -> dict:
    """Run every arm for every seed, `jobs` processes at a time; write `<out>/report.md`
    and `<out>/results.json`; return the results dict. `reuse` takes an arm's results from
    `<out>/runs/<arm>-s<seed>/results.json` when its config is the same instead of
    training it again. `extra_arms` are added after the built-in ones."""
    chosen = chosen_arms(scale, seeds, arms, extra_arms)
    all_overrides = [*SCALES[scale], *overrides]
    # Validate every configuration before the first arm trains.
    cfgs = {(a.key, s): arm_config(a, s, all_overrides, group) for a in chosen for s in seeds}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    load0, t0 = os.getloadavg(), time.time()
    trained = [
        (a, s, Job(cfgs[a.key, s], out / "runs" / cfgs[a.key, s].name))
        for a in chosen
        if not a.base_only
        for s in seeds
    ]
    if not reuse:
        for _, _, job in trained:
            (job.run_dir / "results.json").unlink(missing_ok=True)
    log(f"[reproduce] {len(trained)} training runs, {jobs} at a time")
    scores_of = run_pool([j for _, _, j in trained], jobs, db, log)
    results = collect(chosen, seeds, cfgs, out, scores_of, db, reuse, log)
    timing = {
        "seconds": round(time.time() - t0, 1),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    payload = {
        "scale": scale,
        "seeds": list(seeds),
        "overrides": all_overrides,
        "group": group,
        "timing": timing,
        "arms": [
            {
                "arm": r.arm.key,
                "preset": r.arm.preset,
                "setting": r.arm.setting,
                "seed": r.seed,
                "seconds": round(r.seconds, 1),
                "scores": r.scores,
            }
            for r in results
        ],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    report = render_report(results, payload)
    (out / "report.md").write_text(report)
    write_pngs(results, out, log)
    return payload


def _run_seconds(run_dir: Path) -> float:
    """Wall seconds of a finished run, from the first and last records of metrics.jsonl."""
    times = [
        json.loads(line).get("time")
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    times = [t for t in times if t is not None]
    return max(times) - min(times) if times else 0.0


def write_pngs(results: Sequence[ArmResult], out: Path, log: Callable[[str], None]) -> None:
    """One bar chart per setting (`<out>/report-2dom.png`, ...) via the dashboard's chart
    builder and plotly + kaleido; skipped (with a note) where kaleido/Chromium is missing."""
    try:
        from app.dashboard.figures import results_figure

        for setting in dict.fromkeys(r.arm.setting for r in results):
            rows = summarise(results, setting).rows
            path = out / f"report-{setting.split()[0]}dom.png"
            results_figure(rows, f"Reproduction, {setting}").write_image(
                str(path), width=900, height=420
            )
    except Exception as e:  # the PNG is optional; report.md has the numbers
        log(f"[reproduce] no PNG ({type(e).__name__}: {e})")


# ---------------------------------------------------------------------- report
def summarise(results: Sequence[ArmResult], setting: str) -> PaperTable:
    """The paper-layout table of one setting: per row label, each seed's scores."""
    per_seed: dict[str, list[dict[str, float]]] = {}
    for r in results:
        if r.arm.setting != setting:
            continue
        for model, label in r.rows:
            if (scores := r.scores.get(model)) is not None:
                per_seed.setdefault(label, []).append(scores)
    return paper_table(per_seed)


def render_report(results: Sequence[ArmResult], payload: dict) -> str:
    t = payload["timing"]
    parts = [
        "# CoPD reproduction on the built-in domains",
        "",
        f"Scale `{payload['scale']}`, seeds {payload['seeds']}, group "
        f"`{payload['group'] or '-'}`. Greedy accuracy on each domain's held-out split; "
        "Overall = mean over benchmarks. Cells: mean ± std over seeds; best mean in bold.",
        f"Wall time of this invocation {t['seconds']:.0f} s (reused arms not included) on "
        f"{t['cpus']} CPUs; load average "
        f"{t['loadavg_start'][0]} at start, {t['loadavg_end'][0]} at the end.",
    ]
    if payload["overrides"]:
        parts.append("Overrides on every arm: `" + " ".join(payload["overrides"]) + "`.")
    for setting in dict.fromkeys(r.arm.setting for r in results):
        parts += ["", f"## {setting}", "", summarise(results, setting).markdown()]
    per_arm: dict[str, list[float]] = {}
    for r in results:
        per_arm.setdefault(r.arm.key, []).append(r.seconds)
    parts += ["", "Seconds per arm (mean over seeds): " + ", ".join(
        f"{k} {statistics.fmean(v):.0f}" for k, v in per_arm.items()
    )]  # fmt: skip
    return "\n".join(parts) + "\n"


def cmd_reproduce(args) -> int:
    """`copd reproduce`: run the arms, print the report."""
    payload = reproduce(
        parse_seeds(args.seeds),
        args.scale,
        args.set,
        args.out,
        args.db,
        args.group,
        arms=args.arms.split(",") if args.arms else None,
        reuse=args.reuse,
        log=lambda m: print(m, file=sys.stderr),
        jobs=args.jobs,
    )
    print((Path(args.out) / "report.md").read_text())
    print(f"report: {Path(args.out) / 'report.md'} ({payload['timing']['seconds']:.0f} s)")
    return 0


def add_parser(sub) -> None:
    """Register `copd reproduce` on copd's subparsers."""
    p = sub.add_parser("reproduce", help="run CoPD and every baseline over seeds; paper tables")
    p.add_argument("--seeds", default="0-7", help="comma-separated seeds or a range (0-7)")
    p.add_argument(
        "--jobs", type=int, default=2, help="training processes at a time (1 thread each)"
    )
    p.add_argument("--scale", default="full", choices=sorted(SCALES))
    p.add_argument("--db", help="log every arm to this run store, as one group")
    p.add_argument("--out", default="runs/reproduce", help="report and run folders")
    p.add_argument("--group", default="reproduce", help="the store group of every arm")
    p.add_argument("--arms", help="only these arms, comma-separated (default: all)")
    p.add_argument("--reuse", action="store_true", help="reuse arms finished in --out")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override on every arm, e.g. --set model.path=DIR")  # fmt: skip
    p.set_defaults(func=cmd_reproduce)
