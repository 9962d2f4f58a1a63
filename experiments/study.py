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

import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from copd.common import names as N
from copd.common.stats import mean_std, paired
from copd.common.tables import paper_table
from copd.spec import OWN_DOMAIN, ConfigError, parse_seeds, presets, reported_model_of
from copd.spec.sweep import run_config
from experiments.pool import Job, run_pool

# Seeds: settings are chosen on the validation split over MAP_SEEDS; the test tables use
# FINAL_SEEDS, disjoint from them, so no model that won on validation reappears in a test
# table (the final stage used to be seeds 0-7, whose 0-2 were the map's own runs).
MAP_SEEDS = (0, 1, 2)
FINAL_SEEDS = tuple(range(100, 108))

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
# The conflict settings (copd/spec/presets.py `_pair_presets`): `conflict` (up and down,
# one tag apart) and `cue` (fwd and back, cued by the first letter), opposite letter maps
# of the same strings. The map chooses CoPD's setting on validation over MAP_SEEDS (with
# one arm of 2 PPO mini-batches, where the clip acts); the final stage runs every method on
# test over FINAL_SEEDS.
PAIR_SETTINGS = {"conflict": "up + down", "cue": "fwd + back"}


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


# ---------------------------------------------------------------------- analysis (pure)
class RunScores(dict):
    """A run's final scores (model -> benchmark -> score) and the name of its reported
    model (RunConfig.reported_model: the rule the dashboard uses too)."""

    def __init__(self, scores: dict[str, dict[str, float]], reported: str) -> None:
        super().__init__(scores)
        self.reported = reported


def run_scores(scores: dict[str, dict[str, float]], config: dict, method: str) -> RunScores:
    """`scores` of a run with its reported model; for independent experts that model is
    OWN_DOMAIN, composed here as on the dashboard: benchmark `add` (and `add@val`) scored
    by the branch trained on `add`, Overall the mean of those."""
    reported = reported_model_of(config, method)
    if reported != OWN_DOMAIN:
        return RunScores(scores, reported)
    owner = {str(b.get("task")): str(b.get("name")) for b in config.get("branches", [])}
    own: dict[str, float] = {}
    for bench, branch in owner.items():
        for key in (bench, N.val_bench(bench)):
            if key in scores.get(branch, {}):
                own[key] = scores[branch][key]
    for overall_key, split_keys in (
        ("overall", [b for b in owner if b in own]),
        (N.val_bench("overall"), [N.val_bench(b) for b in owner if N.val_bench(b) in own]),
    ):
        if split_keys:
            own[overall_key] = statistics.fmean(own[k] for k in split_keys)
    return RunScores({**scores, OWN_DOMAIN: own}, OWN_DOMAIN)


def primary_model(scores: dict[str, dict[str, float]]) -> str:
    """The model an arm is judged by: the run's reported model (`run_scores`); for scores
    read without their config, CoPD's merged model or the mixed / MOPD policy, else the
    first."""
    if isinstance(scores, RunScores):
        return scores.reported
    for name in ("merged", "mixed", "mopd"):
        if name in scores:
            return name
    return next(iter(scores))


def overall(scores: dict[str, dict[str, float]], split: str = "test", model: str | None = None):
    m = scores[model or primary_model(scores)]
    return m["overall" if split == "test" else N.val_bench("overall")]


def arm_summary(table: dict[str, dict[int, dict]], split: str) -> dict[str, dict]:
    """arm -> mean, std, n and per-seed Overall of its primary model on `split`."""
    out = {}
    for arm, per_seed in table.items():
        vals = {s: overall(sc, split) for s, sc in per_seed.items()}
        m, sd = mean_std(list(vals.values()))
        out[arm] = {"mean": m, "std": sd, "n": len(vals), "per_seed": vals}
    return out


def paired_vs(table: dict[str, dict[int, dict]], a: str, b: str, split: str = "test", bench=None):
    """Arm a against arm b on their shared seeds (Overall of the primary models, or one
    benchmark `bench` with a's and b's own models)."""
    seeds = sorted(set(table[a]) & set(table[b]))

    def value(arm, s):
        sc = table[arm][s]
        if bench is None:
            return overall(sc, split)
        return sc[primary_model(sc)][bench]

    return paired([value(a, s) for s in seeds], [value(b, s) for s in seeds])


def signal_updates(run_dirs: Sequence[Path]) -> list[dict]:
    """Every update that recorded a signal balance, one row per (run, branch, step): its
    phase and its values by "<kind>/<term>", the term "grpo", "all" (the whole step) or
    "opd" (the cross terms: a list, one per teacher). NaN values (a term with no signal)
    are left out, so no mean counts them."""
    rows = []
    for d in run_dirs:
        for line in (Path(d) / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("type") != "metric":
                continue
            per: dict[str, dict[str, list[float]]] = {}
            for k, v in rec["values"].items():
                parts = k.split("/")
                if len(parts) != 5 or parts[0] != "branch" or parts[2] != "signal":
                    continue
                if not isinstance(v, (int, float)) or not math.isfinite(v):
                    continue
                term = parts[4] if parts[4] in ("grpo", "all") else "opd"
                per.setdefault(parts[1], {}).setdefault(f"{parts[3]}/{term}", []).append(v)
            for branch, vals in per.items():
                rows.append(
                    {"run": str(d), "branch": branch, "phase": rec.get("phase"),
                     "step": rec.get("step"), "values": vals}
                )  # fmt: skip
    return rows


def _spread(per_run: dict[str, list[float]]) -> dict[str, float]:
    """Per-update median, mean and SD (the spread of single updates) and the mean +- std
    of the run means (the spread of runs) of values grouped by run."""
    every = [v for vs in per_run.values() for v in vs]
    if not every:
        return {}
    run_means = [statistics.fmean(vs) for vs in per_run.values() if vs]
    rm, rs = mean_std(run_means)
    return {
        "updates": len(every), "median": statistics.median(every),
        "mean": statistics.fmean(every), "sd_update": mean_std(every)[1],
        "run_mean": rm, "run_sd": rs, "runs": len(run_means),
    }  # fmt: skip


def signal_summary(run_dirs: Sequence[Path]) -> dict[str, dict[str, dict[str, float]]]:
    """The signal balance of CoPD's updates, per branch and pooled ("all"): for each
    "<phase>:<kind>/<term>" (phase "opd" = phase II, "rl" = phase I), the per-update median,
    mean and SD next to the mean +- std of run means; and, per update of phase II, the
    ratio of the OPD terms' summed gradient norm to the GRPO term's ("ratio grad_norm
    opd/grpo", heavy-tailed: read its median) and the ratio of mean norms over updates
    ("ratio of mean grad_norm opd/grpo"). `move/<term>` is how far each step moved the
    weights along that term's descent direction (copd/train/update.py)."""
    groups: dict[str, dict[str, dict[str, list[float]]]] = {}
    pairs: dict[str, list[tuple[float, float]]] = {}  # (GRPO, OPD) norms of one update
    for row in signal_updates(run_dirs):
        vals, phase = row["values"], row["phase"]
        extra = {}
        g, peers = vals.get("grad_norm/grpo"), vals.get("grad_norm/opd")
        if g and peers and g[0] > 0:
            extra["ratio grad_norm opd/grpo"] = [sum(peers) / g[0]]
        for scope in (row["branch"], "all"):
            if extra:
                pairs.setdefault(scope, []).append((g[0], sum(peers)))
            dst = groups.setdefault(scope, {})
            for k, vs in {**vals, **extra}.items():
                key = k if k.startswith("ratio") else f"{phase}:{k}"
                dst.setdefault(key, {}).setdefault(row["run"], []).extend(vs)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for scope, metrics in groups.items():
        out[scope] = {k: _spread(per_run) for k, per_run in sorted(metrics.items())}
        if pairs.get(scope):  # over the updates that measured both terms
            g, o = zip(*pairs[scope], strict=True)
            out[scope]["ratio of mean grad_norm opd/grpo"] = {
                "mean": statistics.fmean(o) / statistics.fmean(g),
                "updates": len(g),
            }
    return out


def drift_series(run_dirs: Sequence[Path]) -> dict[str, dict[int, list[float]]]:
    """quantity -> step -> values over runs (branch pairs averaged within a run), for the
    branch-vs-branch diagnostics: overlap_top1/5/10, overlap_mass, sym_kl."""
    out: dict[str, dict[int, list[float]]] = {}
    for d in run_dirs:
        for line in (Path(d) / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("type") != "metric":
                continue
            per: dict[str, list[float]] = {}
            for k, v in rec["values"].items():
                if k.startswith("pair/"):
                    per.setdefault(k.rsplit("/", 1)[-1], []).append(v)
            for q, vs in per.items():
                if q in ("overlap_top1", "overlap_top5", "overlap_top10", "overlap_mass", "sym_kl"):
                    out.setdefault(q, {}).setdefault(int(rec["step"]), []).append(
                        statistics.fmean(vs)
                    )
    return out


def write_png(fig, path: Path, log) -> None:
    try:
        fig.write_image(str(path))
        log(f"[study] wrote {path}")
    except Exception as e:  # kaleido/Chromium missing: the tables and JSON remain
        log(f"[study] no PNG {path.name} ({type(e).__name__}: {e})")


# ---------------------------------------------------------------------- report
def _fmt(m: float, s: float) -> str:
    return f"{m:.3f} ± {s:.3f}"


def drift_table(series: dict[str, dict[str, dict[int, list[float]]]]) -> str:
    """Per method and quantity: at the first step after 0, at each phase end of the drift
    runs' schedule (6 RL + 4 OPD per cycle: steps 6, 10, 16, 20, ...), and at the end."""
    lines = ["| method | quantity | " + " | ".join(f"step {s}" for s in DRIFT_STEPS) + " |"]
    lines.append("|---|---|" + "---:|" * len(DRIFT_STEPS))
    for method, per_q in series.items():
        for q in ("overlap_top1", "overlap_top5", "overlap_top10", "overlap_mass", "sym_kl"):
            cells = []
            for st in DRIFT_STEPS:
                vals = per_q.get(q, {}).get(st, [])
                m, sd = mean_std(vals)
                cells.append("—" if not vals else f"{m:.3f} ± {sd:.3f}")
            lines.append(f"| {method} | {q} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


DRIFT_STEPS = (1, 6, 10, 16, 20, 26, 30)


def signal_table(sig: dict[str, dict[str, dict[str, float]]]) -> str:
    """One row per scope (branch or all) and metric: per-update median, mean ± SD, the run
    means' mean ± std, and the counts."""
    lines = [
        "| scope | metric | median | per update mean ± SD | run means | updates | runs |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scope, metrics in sig.items():
        for k, v in metrics.items():
            if "median" not in v:  # a ratio of means: one number
                lines.append(f"| {scope} | {k} | | {v['mean']:.3f} | | {v['updates']} | |")
                continue
            lines.append(
                f"| {scope} | {k} | {v['median']:.3f} | {_fmt(v['mean'], v['sd_update'])} | "
                f"{_fmt(v['run_mean'], v['run_sd'])} | {v['updates']} | {v['runs']} |"
            )
    return "\n".join(lines)


def map_table(summary: dict[str, dict]) -> str:
    lines = ["| arm | validation Overall | seeds |", "|---|---:|---:|"]
    best = max(v["mean"] for v in summary.values())
    for arm, v in summary.items():
        cell = _fmt(v["mean"], v["std"])
        lines.append(f"| {arm} | {'**' + cell + '**' if v['mean'] == best else cell} | {v['n']} |")
    return "\n".join(lines)


def paper_layout(table: dict[str, dict[int, dict]], split: str = "test") -> str:
    per_seed: dict[str, list[dict]] = {}
    for arm, seeds in table.items():
        for sc in seeds.values():
            for model, scores in sc.items():
                label = f"{arm}" if model == primary_model(sc) else f"{arm}: {model}"
                per_seed.setdefault(label, []).append(scores)
    return paper_table(per_seed, split=split).markdown()


def paired_lines(table, a: str, others: Sequence[str], split="test") -> list[str]:
    lines = [
        "| comparison | Overall difference [95% CI] | paired p | seeds |",
        "|---|---:|---:|---:|",
    ]
    for b in others:
        if b in table and a in table:
            r = paired_vs(table, a, b, split)
            lines.append(
                f"| {a} − {b} | {r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | "
                f"{r.p_value:.3g} | {r.n} |"
            )
    return lines


def expert_lines(table, a: str, experts: str, split: str = "test") -> list[str]:
    """Arm a's primary model against each single-domain expert on that expert's own domain,
    paired over the shared seeds (the paper: CoPD no worse than each expert on its domain)."""
    if a not in table or experts not in table:
        return []
    seeds = sorted(set(table[a]) & set(table[experts]))
    domains = [m for m in table[experts][seeds[0]] if m in table[experts][seeds[0]][m]]
    key = (lambda d: d) if split == "test" else N.val_bench
    lines = []
    for d in domains:
        mine = [table[a][s][primary_model(table[a][s])][key(d)] for s in seeds]
        theirs = [table[experts][s][d][key(d)] for s in seeds]
        r = paired(mine, theirs)
        lines.append(
            f"| {a} − {d}-expert on {d} ({split}) | {r.diff:+.3f} "
            f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {r.p_value:.3g} | {r.n} |"
        )
    return lines


def load_stage(out: Path, group: str) -> dict[str, dict[int, dict]]:
    """arm -> seed -> scores (RunScores) from the finished runs of a stage's folder."""
    table: dict[str, dict[int, dict]] = {}
    for res in sorted((out / group).glob("*/results.json")):
        name = res.parent.name
        arm, _, seed = name.rpartition("-s")
        config = json.loads((res.parent / "config.json").read_text())
        scores = json.loads(res.read_text())["scores"]
        table.setdefault(arm, {})[int(seed)] = run_scores(scores, config, config["method"])
    return table


def report(out: Path, log: Callable[[str], None] = print) -> dict:
    """study.md + study.json from whatever stages have finished runs."""
    from app.dashboard.figures import study_drift_figure, study_map_figure

    payload: dict = {}
    parts = ["# CoPD study on the built-in domains (generated by `copd study report`)", ""]
    for group, split, title in (
        ("study-map-2dom", "validation", "Map, 2 domains (validation split)"),
        ("study-map-3dom", "validation", "Map, 3 domains (validation split)"),
        *(
            (f"study-{k}-map", "validation", f"Conflict map ({k}), {v} (validation split)")
            for k, v in PAIR_SETTINGS.items()
        ),
    ):
        t = load_stage(out, group)
        if t:
            s = arm_summary(t, split)
            payload[group] = s
            parts += [f"## {title}", "", map_table(s), "", paper_layout(t, split), ""]
            if "expert" in t:
                parts += ["| comparison | difference [95% CI] | paired p | seeds |"]
                parts += ["|---|---:|---:|---:|"]
                for a in [k for k in t if k != "expert"]:
                    parts += expert_lines(t, a, "expert", split)
                parts += [""]
            write_png(study_map_figure(s, title), out / f"{group}.png", log)
    final = load_stage(out / "final", "runs")
    three = {k: v for k, v in final.items() if k.endswith("-3") or "-3-" in k}
    two = {k: v for k, v in final.items() if k not in three and k != "base"}
    three.pop("base-3", None)
    stages = {
        "final-2dom": two,
        "final-3dom": three,
        "study-capacity": load_stage(out, "study-capacity"),
        **{f"study-{k}": load_stage(out, f"study-{k}") for k in PAIR_SETTINGS},
    }
    for group, anchor, title in (
        ("final-2dom", "copd", "Final, 2 domains (test split)"),
        ("final-3dom", "copd-3", "Final, 3 domains (test split)"),
        ("study-capacity", "copd", "Capacity and conflict: small model, rev + sort (test)"),
        *(
            (f"study-{k}", "copd", f"Conflict setting ({k}): {v} (test)")
            for k, v in PAIR_SETTINGS.items()
        ),
    ):
        t = stages[group]
        if not t:
            continue
        payload[group] = {"summary": arm_summary(t, "test")}
        parts += [f"## {title}", "", paper_layout(t), ""]
        experts = next((k for k in t if k.startswith("expert")), None)
        for a in [k for k in t if k.startswith(anchor)]:
            others = [k for k in t if not k.startswith(anchor) and k != experts]
            lines = paired_lines(t, a, others)
            lines += expert_lines(t, a, experts) if experts else []
            parts += [*lines, ""]
        if experts:  # the seesaw: what one policy for all domains pays on each
            parts += ["| comparison | difference [95% CI] | paired p | seeds |"]
            parts += ["|---|---:|---:|---:|"]
            for a in [k for k in t if k.startswith("mixed")]:
                parts += expert_lines(t, a, experts)
            parts += [""]
        where = out / "final" / "runs" if group.startswith("final") else out / group
        copd_dirs = [
            where / f"{arm}-s{seed}" for arm in t if arm.startswith(anchor) for seed in t[arm]
        ]
        sig = signal_summary(copd_dirs)
        payload[group]["signal"] = sig
        if sig:
            parts += ["Signal balance of CoPD's updates (per update and per run):", ""]
            parts += [signal_table(sig), ""]
    from experiments.calibrate import report_calibration

    cal_parts, cal_payload = report_calibration(out, log)
    parts += cal_parts
    payload.update(cal_payload)
    drift_dirs = {m: list((out / "study-drift").glob(f"{m}-s*")) for m in ("copd", "expert")}
    if all(drift_dirs.values()):
        payload["drift"] = {m: drift_series(d) for m, d in drift_dirs.items()}
        write_png(study_drift_figure(payload["drift"]), out / "study-drift.png", log)
        parts += ["## Drift (branch vs branch, every step)", "", drift_table(payload["drift"]), ""]
    (out / "study.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (out / "study.md").write_text("\n".join(parts) + "\n")
    log(f"[study] wrote {out / 'study.md'}")
    return payload


# ---------------------------------------------------------------------- CLI
def is_selection(stage: str) -> bool:
    """Whether `stage` chooses settings on validation (the maps) rather than reporting."""
    return stage in ("map", "calibrate") or stage.endswith("-map")


def is_report(stage: str) -> bool:
    """Whether `stage` writes a table on the test split."""
    return stage in ("final", "capacity") or stage in PAIR_SETTINGS


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
            *(f"{k}{m}" for k in PAIR_SETTINGS for m in ("-map", "")),
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
