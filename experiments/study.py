"""The study: where does CoPD beat mixed GRPO and static OPD on the built-in domains, and why.

    copd study map --db sqlite:///study.db              # settings, chosen on validation
    copd study final --db ...                            # = copd reproduce (8 seeds)
    copd study capacity --db ...                         # a small model, competing domains
    copd study drift --db ...                            # overlap every step, seed bands
    copd study conflict-map --db ...                     # up + down, CoPD chosen on validation
    copd study conflict --db ... --chosen copd-cross16x2 # every method on test, 8 seeds
    copd study cue-map --db ... / copd study cue --chosen ARM  # the same, fwd + back
    copd study calibrate --db ...                        # the OPD channel vs SFT and GRPO
    copd study report                                    # study.md from what has run

Stages (each a list of arms x seeds, run by experiments/pool.py two at a time with one
torch thread each; every run is recorded in the store under group `study-<stage>`, so the
Compare page's grid view and the Studies page draw the map from the store):

- map: CoPD on the 2-domain setting (add, rev) one factor at a time around the demo's
  defaults (OPD strength beta, cross-batch shape, S_RL:S_OPD, merge method, OPD loss),
  and a few settings on the 3-domain hub (add hub, rev, sort); mixed GRPO and its
  equal-optimizer-steps control alongside. Chosen on the validation split ("overall@val").
- final: the paper's Table 1 / Table 2 layouts on the held-out test split, every
  baseline and CoPD at the defaults and at the setting the map chose: exactly `copd
  reproduce` (experiments/reproduce.py holds the arms) over FINAL_SEEDS (8, disjoint from
  the map's MAP_SEEDS), into `<out>/final`. With n seeds the exact two-sided sign-flip
  test cannot go below p = 2 / 2^n (0.0625 at 5 seeds), hence 8.
- conflict-map / conflict: the conflict setting (presets `conflict`, `*-conflict`: up and
  down, opposite letter maps of the same strings, one tag apart), the map on validation
  over MAP_SEEDS, then every method on test over FINAL_SEEDS with CoPD at its defaults and
  at `--chosen`. `cue-map` / `cue`: the same for the cue setting (presets `cue`, `*-cue`:
  fwd and back, the same opposite maps with no tag, cued by the string's first letter).
- calibrate: how far and how fast a student moves toward frozen experts under pure OPD
  (each variant of the update) against supervised training on their answers and GRPO,
  on validation over MAP_SEEDS, both settings (experiments/calibrate.py).
- capacity: a smaller base model (hidden 48, 1 layer, built locally once) on two
  domains over the same letter strings (rev, sort), where the domains compete for
  capacity: the mechanism the paper's argument rests on.
- drift: diagnostics at every step over 3 cycles, CoPD vs independent experts (top-1,
  top-5, top-10 overlap, overlap mass, symmetric KL).

`report` reads the runs' results.json and metrics.jsonl and writes `<out>/study.md` and
`<out>/study.json`: mean ± std over seeds, paired differences with their 95% CI and a
paired sign-flip permutation p (copd.common.stats.paired), and the signal balance of CoPD's
phase-II updates.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from copd.spec import ConfigError, parse_seeds, presets
from copd.spec.sweep import run_config
from experiments.pool import Job, run_pool
from experiments.study_analysis import PAIR_SETTINGS
from experiments.study_report import report

# Seeds: settings are chosen on the validation split over MAP_SEEDS; the test tables use
# FINAL_SEEDS, disjoint from them, so no model that won on validation reappears in a test
# table (the final stage used to be seeds 0-7, whose 0-2 were the map's own runs).
MAP_SEEDS = (0, 1, 2)
FINAL_SEEDS = tuple(range(100, 108))
# The fresh tables (`copd study <setting>-fresh`): seeds no earlier stage used, scored on a
# fresh draw of the held-out test split (eval.test_draw=fresh: prompts no earlier table
# scored, copd/tasks/base.py `fresh_examples`).
FRESH_SEEDS = tuple(range(200, 208))
# CoPD's arm chosen by the calibration (experiments/calibrate.py, validation): the channel
# carried most with twice the student's batch, in CoPD the cross batch (16 prompts x 4).
CALIBRATED = ("opd.cross_prompts_per_step=16", "opd.cross_group_size=4")

CROSS = ("opd.cross_prompts_per_step", "opd.cross_group_size")
SMALL = ("model.demo_hidden=48", "model.demo_layers=1")
REV_SORT = 'branches=[{"name":"rev","task":"rev"},{"name":"sort","task":"sort"}]'

# arm key -> (preset, overrides)
MAP_2DOM: dict[str, tuple[str, tuple[str, ...]]] = {
    "copd": ("demo", ()),
    "copd-beta0.5": ("demo", ("opd.beta=0.5",)),
    "copd-beta2": ("demo", ("opd.beta=2",)),
    "copd-beta4": ("demo", ("opd.beta=4",)),
    "copd-cross16x2": ("demo", (f"{CROSS[0]}=16", f"{CROSS[1]}=2")),
    "copd-cross32x1": ("demo", (f"{CROSS[0]}=32", f"{CROSS[1]}=1")),
    "copd-ratio8to2": ("demo", ("schedule.rl_steps=8", "schedule.opd_steps=2")),
    "copd-ratio4to6": ("demo", ("schedule.rl_steps=4", "schedule.opd_steps=6")),
    "copd-ties": ("demo", ("merge.method=ties",)),
    "copd-fullkl": ("demo", ("opd.advantage=full_kl",)),
    # the signal balance showed the OPD term's gradient ~5x the GRPO term's: balance them
    "copd-cw0.2": ("demo", ("opd.cross_weight=0.2",)),
    "copd-cw0.2-cross16x2": ("demo", ("opd.cross_weight=0.2", f"{CROSS[0]}=16", f"{CROSS[1]}=2")),
    # ... or clip each term's gradient on its own, so OPD cannot shrink the GRPO step
    "copd-clipterm": ("demo", ("grpo.clip_per_term=true",)),
    "mixed": ("mixed", ()),
    "mixed-steps": ("mixed-steps", ()),
}
MAP_3DOM: dict[str, tuple[str, tuple[str, ...]]] = {
    "copd-3": ("copd-3", ()),
    "copd-3-beta4": ("copd-3", ("opd.beta=4",)),
    "copd-3-per-teacher": ("copd-3", ("opd.teacher_weighting=per_teacher",)),
    "copd-3-full": ("copd-3", ("topology.kind=full",)),
    "mixed-3": ("mixed-3", ()),
}
CAPACITY = {
    "expert": ("expert", (*SMALL, REV_SORT)),
    "mixed": ("mixed", (*SMALL, REV_SORT)),
    "mixed-steps": ("mixed-steps", (*SMALL, REV_SORT)),
    "copd": ("demo", (*SMALL, REV_SORT)),
}


def pair_map(setting: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The map's arms of a pair setting: experts, mixed, CoPD at its defaults and two
    variations."""
    return {
        "expert": (f"expert-{setting}", ()),
        "mixed": (f"mixed-{setting}", ()),
        "copd": (setting, ()),
        "copd-cross16x2": (setting, (f"{CROSS[0]}=16", f"{CROSS[1]}=2")),
        "copd-minibatch2": (setting, ("grpo.minibatches=2",)),
    }


def pair_final(setting: str, chosen: str | None) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The final stage's arms of a pair setting: every method, and CoPD at the map's chosen
    arm `chosen` (a CoPD key of `pair_map`) beside its defaults."""
    # arm = the preset's name without the setting's (`static_opd-cue-rev` -> static_opd-rev);
    # the baselines first, CoPD last
    arms = {
        name.replace(f"-{setting}", ""): (name, ()) for name in presets.SETS[setting]
        if name != setting
    }  # fmt: skip
    arms["copd"] = (setting, ())
    chosen_from = pair_map(setting)
    if chosen and chosen != "copd":
        if chosen not in chosen_from or not chosen.startswith("copd"):
            raise ValueError(f"--chosen {chosen!r}: use a CoPD arm of the map, {list(chosen_from)}")
        arms[chosen] = chosen_from[chosen]
    return arms


DRIFT = {
    "expert": ("expert", ("schedule.diag_every=1", "schedule.cycles=3")),
    "copd": ("demo", ("schedule.diag_every=1", "schedule.cycles=3")),
}


def jobs_for(
    arms: dict[str, tuple[str, tuple[str, ...]]], seeds: Sequence[int], out: Path, group: str
) -> list[tuple[str, int, Job]]:
    """(arm, seed, job) for every arm x seed, configs validated before anything runs."""
    rows = []
    for arm, (preset, over) in arms.items():
        for seed in seeds:
            cfg = run_config(preset, seed, group, over, name=f"{arm}-s{seed}")
            rows.append((arm, seed, Job(cfg, out / group / cfg.name)))
    return rows


def run_stage(
    arms: dict, seeds: Sequence[int], out: Path, group: str, db: str | None, jobs: int, log
) -> dict[str, dict[int, dict]]:
    """Train a stage; arm -> seed -> scores."""
    rows = jobs_for(arms, seeds, out, group)
    results = run_pool([j for _, _, j in rows], jobs, db, log)
    table: dict[str, dict[int, dict]] = {}
    for arm, seed, job in rows:
        table.setdefault(arm, {})[seed] = results[job.run_dir]
    return table


# ---------------------------------------------------------------------- CLI
def is_selection(stage: str) -> bool:
    """Whether `stage` chooses settings on validation (the maps) rather than reporting."""
    return stage in ("map", "calibrate") or stage.endswith("-map")


def is_report(stage: str) -> bool:
    """Whether `stage` writes a table on the test split."""
    return stage in ("final", "capacity") or stage in PAIR_SETTINGS or is_fresh(stage)


# The built-in pair (add, rev) in the fresh tables: add's test split was scored whole by
# every earlier table (110 inputs at the demo's difficulty), so it is scored whole again and
# rev gets the fresh draw (eval.test_draw=fresh_or_whole; the run's log says which).
BUILTIN = "builtin"
# The baselines of the built-in pair's fresh table, named here (not read from the
# paper-2dom set, so a baseline added there later does not silently join a finished table):
# Table 1's and sequential GRPO (each domain in turn, one policy), added once it existed.
TABLE1_BASELINES = (
    "expert", "weight_average", "mixed", "static_opd", "static_opd-rev", "mopd", "sequential",
)  # fmt: skip


def fresh_arms(setting: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every method of the setting's final table (`pair_final`; for the built-in pair
    Table 1's set and the equal-steps mixed control) and CoPD at the calibrated setting,
    each scored on a fresh draw of the test split."""
    if setting == BUILTIN:
        arms = {name: (name, ()) for name in TABLE1_BASELINES}
        arms |= {"mixed-steps": ("mixed-steps", ()), "copd": ("demo", ())}
        arms["copd-calibrated"] = ("demo", CALIBRATED)
        draw = "eval.test_draw=fresh_or_whole"
    else:
        arms = {**pair_final(setting, None), "copd-calibrated": (setting, CALIBRATED)}
        draw = "eval.test_draw=fresh"
    return {k: (p, (*o, draw)) for k, (p, o) in arms.items()}


def is_fresh(stage: str) -> bool:
    """Whether `stage` is a fresh table: `<setting>-fresh` for a pair setting or the
    built-in pair."""
    setting = stage.removesuffix("-fresh")
    return stage.endswith("-fresh") and (setting in PAIR_SETTINGS or setting == BUILTIN)


def seeds_used(out: Path, selection: bool) -> dict[int, str]:
    """seed -> stage of the runs already in `out` of selection stages (or of report
    stages), from their folders `<out>/study-<stage>/<arm>-s<seed>`."""
    used: dict[int, str] = {}
    for folder in sorted(out.glob("study-*")) + sorted(out.glob("final")):
        stage = folder.name.removeprefix("study-")
        stage = "map" if stage.startswith("map-") else stage
        stage = "calibrate" if stage.startswith("calibrate-") else stage
        if (is_selection(stage) if selection else is_report(stage)) and folder.is_dir():
            for run in folder.iterdir():
                arm, sep, seed = run.name.rpartition("-s")
                if sep and seed.isdigit():
                    used.setdefault(int(seed), stage)
    return used


def check_seeds(stage: str, seeds: Sequence[int], out: Path) -> None:
    """A test table never reuses a seed that chose a setting, nor a map a seed a test
    table used: ConfigError naming the seeds, the stage that used them and the fix, before
    any run starts. Selection seeds: MAP_SEEDS and every map run in `out`."""
    if is_report(stage):
        taken = {s: "map (validation, the default)" for s in MAP_SEEDS}
        taken.update(seeds_used(out, selection=True))
        role, fix = "chose settings on validation", f"{FINAL_SEEDS[0]}-{FINAL_SEEDS[-1]}"
    elif is_selection(stage):
        taken = seeds_used(out, selection=False)
        role, fix = "are in a test table", f"{MAP_SEEDS[0]}-{MAP_SEEDS[-1]}"
    else:
        return
    clash = sorted(set(seeds) & set(taken))
    if clash:
        where = ", ".join(f"{s} ({taken[s]})" for s in clash)
        raise ConfigError(
            f"--seeds: seeds {where} {role}; stage {stage!r} must use other seeds "
            f"(e.g. {fix}): the seeds that choose and the seeds that report are disjoint"
        )


def cmd_study(args) -> int:
    out = Path(args.out)
    seeds = parse_seeds(args.seeds) if args.seeds else None
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    stage = args.stage
    val, test = seeds or list(MAP_SEEDS), seeds or list(FINAL_SEEDS)
    if is_fresh(stage):
        test = seeds or list(FRESH_SEEDS)
    stage_seeds = test[:5] if stage == "capacity" else test if is_report(stage) else val
    check_seeds(stage, stage_seeds, out)  # before any run: choosing and reporting seeds apart
    if stage == "map":
        run_stage(MAP_2DOM, val, out, "study-map-2dom", args.db, args.jobs, log)
        run_stage(MAP_3DOM, val, out, "study-map-3dom", args.db, args.jobs, log)
    elif stage == "final":
        from experiments.reproduce import reproduce

        reproduce(test, "full", (), out / "final", args.db,
                  "study-final", reuse=True, log=log, jobs=args.jobs)  # fmt: skip
    elif stage == "capacity":
        run_stage(CAPACITY, test[:5], out, "study-capacity", args.db, args.jobs, log)
    elif stage == "calibrate":
        from experiments.calibrate import SETTINGS, calibration_arms

        for setting in SETTINGS:
            arms = calibration_arms(setting)
            run_stage(arms, val, out, f"study-calibrate-{setting}", args.db, args.jobs, log)
    elif stage == "drift":
        run_stage(DRIFT, val, out, "study-drift", args.db, args.jobs, log)
    elif stage.endswith("-map") and stage[: -len("-map")] in PAIR_SETTINGS:
        setting = stage[: -len("-map")]
        run_stage(pair_map(setting), val, out, f"study-{stage}", args.db, args.jobs, log)
    elif is_fresh(stage):
        arms = fresh_arms(stage.removesuffix("-fresh"))
        run_stage(arms, test, out, f"study-{stage}", args.db, args.jobs, log)
    elif stage in PAIR_SETTINGS:
        arms = pair_final(stage, args.chosen)
        run_stage(arms, test, out, f"study-{stage}", args.db, args.jobs, log)
    report(out, log)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="the CoPD vs baselines study: map, final, capacity, drift")
    p.add_argument(
        "stage",
        choices=[
            "map",
            "final",
            "capacity",
            "drift",
            "calibrate",
            *(f"{k}{m}" for k in PAIR_SETTINGS for m in ("-map", "", "-fresh")),
            f"{BUILTIN}-fresh",
            "report",
        ],  # fmt: skip
    )
    p.add_argument(
        "--seeds",
        help=f"override the stage's seeds, e.g. 0-4 (defaults: validation stages "
        f"{list(MAP_SEEDS)}, test stages {FINAL_SEEDS[0]}-{FINAL_SEEDS[-1]})",
    )
    p.add_argument(
        "--chosen",
        default="copd-cross16x2",
        help="conflict / cue stage: the CoPD arm of its map to run beside the defaults",
    )
    p.add_argument("--db", help="record every run in this store (groups study-<stage>)")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.set_defaults(func=cmd_study)
