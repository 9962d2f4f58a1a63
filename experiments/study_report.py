"""The study's report: `copd study report` writes `<out>/study.md` and `<out>/study.json`
from whatever stages have finished runs (tables in the paper's layout, paired tests, the
signal balance, the drift table and the calibration curves).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from copd.common import names as N
from copd.common.stats import mean_std, paired
from copd.common.tables import paper_table
from experiments.study_analysis import (
    PAIR_SETTINGS,
    arm_summary,
    clip_prediction,
    drift_series,
    paired_vs,
    primary_model,
    run_scores,
    signal_summary,
)


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


def clip_line(c: dict[str, float]) -> str:
    """One line: the GRPO term's progress with OPD added against the clip's prediction."""
    return (
        f"Phase II and the global clip: the GRPO term moves {c['median move ratio']:.3f} of a "
        f"GRPO-only step (median over {c['updates']} updates); the ratio of clip factors "
        f"predicts {c['median clip-factor ratio']:.3f} (Pearson r {c['pearson r']:.2f}); "
        f"the GRPO gradient alone exceeds the clip in {c['share GRPO norm > clip']:.0%} of them."
    )


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


def map_sections(out: Path, log: Callable[[str], None]) -> tuple[list[str], dict]:
    """The validation maps: each arm's mean, the paper layout, each arm against the
    experts on their domains, and the map's figure."""
    from app.dashboard.figures import study_map_figure

    parts: list[str] = []
    payload: dict = {}
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
    return parts, payload


BUILTIN_FRESH_TITLE = (
    "Built-in pair (add + rev): rev on a fresh draw of its test split, add on its whole "
    "test split (every held-out input, all scored before: no fresh one exists)"
)


def table_sections(out: Path) -> tuple[list[str], dict]:
    """The test tables: the paper layout, the anchor arm paired against every other arm
    and against the experts on their domains, the seesaw of the mixed arms, and the
    signal balance of the anchor's updates."""
    final = load_stage(out / "final", "runs")
    three = {k: v for k, v in final.items() if k.endswith("-3") or "-3-" in k}
    two = {k: v for k, v in final.items() if k not in three and k != "base"}
    three.pop("base-3", None)
    stages = {
        "final-2dom": two,
        "final-3dom": three,
        "study-capacity": load_stage(out, "study-capacity"),
        **{f"study-{k}": load_stage(out, f"study-{k}") for k in PAIR_SETTINGS},
        **{f"study-{k}-fresh": load_stage(out, f"study-{k}-fresh") for k in PAIR_SETTINGS},
        "study-builtin-fresh": load_stage(out, "study-builtin-fresh"),
    }
    parts: list[str] = []
    payload: dict = {}
    for group, anchor, title in (
        ("final-2dom", "copd", "Final, 2 domains (test split)"),
        ("final-3dom", "copd-3", "Final, 3 domains (test split)"),
        ("study-capacity", "copd", "Capacity and conflict: small model, rev + sort (test)"),
        *(
            (f"study-{k}", "copd", f"Conflict setting ({k}): {v} (test)")
            for k, v in PAIR_SETTINGS.items()
        ),
        *(
            (f"study-{k}-fresh", "copd", f"{k}: {v}, a fresh draw of the test split")
            for k, v in PAIR_SETTINGS.items()
        ),
        ("study-builtin-fresh", "copd", BUILTIN_FRESH_TITLE),
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
        clip = clip_prediction(copd_dirs)
        payload[group]["clip"] = clip
        if clip.get("updates", 0) >= 3:
            parts += [clip_line(clip), ""]
    return parts, payload


def report(out: Path, log: Callable[[str], None] = print) -> dict:
    """study.md + study.json from whatever stages have finished runs."""
    from app.dashboard.figures import study_drift_figure
    from experiments.calibrate import report_calibration

    parts = ["# CoPD study on the built-in domains (generated by `copd study report`)", ""]
    payload: dict = {}
    for section in (map_sections(out, log), table_sections(out)):
        parts += section[0]
        payload.update(section[1])
    cal_parts, cal_payload, figures = report_calibration(out)
    parts += cal_parts
    payload.update(cal_payload)
    for name, fig in figures.items():
        write_png(fig, out / name, log)
    drift_dirs = {m: list((out / "study-drift").glob(f"{m}-s*")) for m in ("copd", "expert")}
    if all(drift_dirs.values()):
        payload["drift"] = {m: drift_series(d) for m, d in drift_dirs.items()}
        write_png(study_drift_figure(payload["drift"]), out / "study-drift.png", log)
        parts += ["## Drift (branch vs branch, every step)", "", drift_table(payload["drift"]), ""]
    (out / "study.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (out / "study.md").write_text("\n".join(parts) + "\n")
    log(f"[study] wrote {out / 'study.md'}")
    return payload
