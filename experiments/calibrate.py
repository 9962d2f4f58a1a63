"""Calibrate the distillation channel: how far and how fast a student moves toward frozen
experts under pure OPD, against supervised training on the experts' answers and GRPO.

    copd study calibrate --db sqlite:///study.db --out runs/study   # validation, seeds 0-2
    copd study report --out runs/study                              # + calibration.md/.png

Every arm is a MOPD run (copd/train/algorithms/mopd.py): one expert per domain trained by
GRPO from the base for T updates, then frozen; a student starts from the base and makes
K x S updates on mixed-domain prompts, each row scored by the expert of its domain. The
arms change one thing of the student's update at a time (advantage mode, learning rate,
batch, gradient clip, an outcome-reward term beside the OPD term and its clip and weight)
or replace the channel by supervised cross-entropy on the experts' greedy answers
(`opd.samples=teacher`: the ceiling at the same learning rate and update count). The
experts' own curves are GRPO on each domain from the same base: the alternative.

Everything is scored on the validation split (`eval.during=validation`) every phase-II
block of the student and every cycle of the experts, so the curves choose settings
without touching the test split. Settings: the built-in pair (add, rev; preset `mopd`)
and the cue setting (fwd, back; `mopd-cue`), where the domains cannot be told apart by a
tag.

The report (`report_calibration`) reads the runs' metrics.jsonl: per arm, the student's
validation score after each block (mean over seeds), the share of the experts' gain over
the base it has closed, and how often the global gradient clip acted.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from copd.common import names as N
from copd.common.stats import mean_std

STUDENT = "mopd"  # the MOPD student's policy name (copd/train/algorithms/mopd.py)
# The calibration's schedule: T = 8 x (6 + 8) = 112 expert updates, then K x 64 = 128
# student updates (2 domains), scored every 8 student updates and every 14 expert updates.
SCHEDULE = ("schedule.opd_steps=8", "schedule.eval_every_cycles=1", "eval.during=validation")
SETTINGS = {"pair": "mopd", "cue": "mopd-cue"}  # setting -> MOPD preset
ARMS: dict[str, tuple[str, ...]] = {
    "opd": (),  # the paper's sampled-token advantage, global clip 1, lr 5e-4
    "opd-fullkl": ("opd.advantage=full_kl",),
    "opd-lr2x": ("grpo.lr=1e-3",),
    "opd-batch2x": ("grpo.prompts_per_step=32",),
    "opd-clip10": ("grpo.grad_clip=10",),  # does the global clip hold the channel back?
    "opd+rl": ("opd.native_rl=true",),  # an outcome-reward (GRPO) term on the same rows
    "opd+rl-clipterm": ("opd.native_rl=true", "grpo.clip_per_term=true"),
    "opd+rl-cw0.3": ("opd.native_rl=true", "opd.cross_weight=0.3"),
    "sft": ("opd.samples=teacher",),  # cross-entropy on the experts' greedy answers
}
CHECKPOINTS = (16, 32, 64, 128)  # student updates the table reports


def calibration_arms(setting: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """arm -> (preset, overrides) of `setting` ("pair" or "cue")."""
    preset = SETTINGS[setting]
    return {arm: (preset, (*SCHEDULE, *over)) for arm, over in ARMS.items()}


# ---------------------------------------------------------------------- analysis (pure)
def read_run(run_dir: Path) -> dict:
    """A calibration run's curves from its metrics.jsonl and results.json: the student's
    and the experts' validation Overall / per-domain scores by step, the student's grad
    norms, and the stage boundary T (the first student update is step T + 1)."""
    evals: dict[str, dict[int, dict[str, float]]] = {}
    grad: list[float] = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "eval" and rec["benchmark"].endswith(N.VAL_SUFFIX):
            bench = rec["benchmark"].removesuffix(N.VAL_SUFFIX)
            evals.setdefault(rec["model"], {}).setdefault(int(rec["step"]), {})[bench] = rec[
                "score"
            ]
        elif rec.get("type") == "metric":
            g = rec["values"].get(N.branch(STUDENT, N.GRAD_NORM))
            if g is not None:
                grad.append(float(g))
    results = json.loads((run_dir / "results.json").read_text())
    budget = results["budget"]["stages"]
    experts = [m for m in evals if m != STUDENT]
    return {
        "T": next(s["steps"] for s in budget if s["name"] == "experts"),
        "student": evals.get(STUDENT, {}),
        "experts": {m: evals[m] for m in experts},
        "grad_norms": grad,
        "config": json.loads((run_dir / "config.json").read_text()),
    }


def student_curve(run: dict) -> dict[int, float]:
    """Student updates -> the student's validation Overall (step 0: the base)."""
    T = run["T"]
    base = run["experts"][next(iter(run["experts"]))].get(0, {})
    out = {0: base["overall"]} if "overall" in base else {}
    for step, scores in sorted(run["student"].items()):
        if step > T and "overall" in scores:
            out[step - T] = scores["overall"]
    return out


def expert_levels(run: dict) -> dict[str, float]:
    """The frozen teachers' level: each expert's final validation score on its own
    domain, their mean ("overall"), and the base's ("base", step 0)."""
    own = {}
    for name, per_step in run["experts"].items():
        last = per_step[max(s for s in per_step if s <= run["T"])]
        own[name] = last[_domain_of(run, name)]
    first = run["experts"][next(iter(run["experts"]))][0]
    return {**own, "overall": statistics.fmean(own.values()), "base": first["overall"]}


def grpo_curve(run: dict) -> dict[int, float]:
    """The experts' GRPO curve: updates -> the mean over experts of each one's validation
    score on its own domain (the alternative to distillation: RL on that domain)."""
    steps = sorted(set.intersection(*(set(p) for p in run["experts"].values())))
    return {
        s: statistics.fmean(run["experts"][e][s][_domain_of(run, e)] for e in run["experts"])
        for s in steps
        if s <= run["T"]
    }


def _domain_of(run: dict, branch: str) -> str:
    return next(b["task"] for b in run["config"]["branches"] if b["name"] == branch)


def summarize(runs: dict[str, list[dict]], clip: Callable[[dict], float]) -> dict[str, dict]:
    """arm -> the student's Overall at CHECKPOINTS (mean, std over seeds), the share of
    the experts' gain it closed at the end ((student - base) / (teacher - base), per seed),
    and the share of updates whose gradient norm exceeded the run's clip."""
    out = {}
    for arm, seeds in runs.items():
        row: dict = {"n": len(seeds)}
        for c in CHECKPOINTS:
            vals = [student_curve(r).get(c) for r in seeds]
            vals = [v for v in vals if v is not None]
            row[c] = mean_std(vals) if vals else None
        closed = []
        for r in seeds:
            curve, lv = student_curve(r), expert_levels(r)
            if curve and lv["overall"] > lv["base"]:
                closed.append((curve[max(curve)] - lv["base"]) / (lv["overall"] - lv["base"]))
        row["closed"] = mean_std(closed) if closed else None
        norms = [(g, clip(r)) for r in seeds for g in r["grad_norms"]]
        row["clipped"] = sum(g > c for g, c in norms) / len(norms) if norms else None
        row["teacher"] = mean_std([expert_levels(r)["overall"] for r in seeds])
        row["base"] = mean_std([expert_levels(r)["base"] for r in seeds])
        out[arm] = row
    return out


def calibration_table(summary: dict[str, dict]) -> str:
    head = " | ".join(f"after {c}" for c in CHECKPOINTS)
    lines = [
        f"| arm | {head} | gain closed at the end | updates clipped | seeds |",
        "|---|" + "---:|" * (len(CHECKPOINTS) + 3),
    ]

    def cell(v):
        return "—" if v is None else f"{v[0]:.3f} ± {v[1]:.3f}"

    for arm, row in summary.items():
        clipped = "—" if row["clipped"] is None else f"{row['clipped']:.0%}"
        cells = " | ".join(cell(row[c]) for c in CHECKPOINTS)
        lines.append(f"| {arm} | {cells} | {cell(row['closed'])} | {clipped} | {row['n']} |")
    return "\n".join(lines)


def load(out: Path, setting: str) -> dict[str, list[dict]]:
    """arm -> the finished runs (read_run) of a setting's calibration folder."""
    runs: dict[str, list[dict]] = {}
    for res in sorted((out / f"study-calibrate-{setting}").glob("*/results.json")):
        arm = res.parent.name.rpartition("-s")[0]
        runs.setdefault(arm, []).append(read_run(res.parent))
    return runs


def calibration_figure(runs: dict[str, list[dict]], title: str):
    """The student's validation Overall vs its updates per arm (mean over seeds), the
    experts' GRPO curve vs their updates, and the teachers' and base's levels."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for arm, seeds in runs.items():
        curves = [student_curve(r) for r in seeds]
        xs = sorted(set.intersection(*(set(c) for c in curves)))
        ys = [statistics.fmean(c[x] for c in curves) for x in xs]
        dash = "dash" if arm == "sft" else None
        fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=arm, line={"dash": dash})
    any_arm = next(iter(runs.values()))
    grpo = [grpo_curve(r) for r in any_arm]
    xs = sorted(set.intersection(*(set(c) for c in grpo)))
    fig.add_scatter(
        x=xs, y=[statistics.fmean(c[x] for c in grpo) for x in xs], mode="lines",
        name="GRPO on the domain (each expert, own domain)", line={"color": "black"},
    )  # fmt: skip
    for key, label in (("overall", "teachers (frozen experts)"), ("base", "base")):
        level = statistics.fmean(expert_levels(r)[key] for r in any_arm)
        fig.add_hline(y=level, line_dash="dot", annotation_text=label)
    fig.update_layout(
        title=title, xaxis_title="updates of the policy", yaxis_title="validation score",
        width=900, height=520,
    )  # fmt: skip
    return fig


def report_calibration(out: Path) -> tuple[list[str], dict, dict]:
    """Markdown parts, the payload and the figures (file name -> figure) of every
    calibrated setting found in `out`."""
    parts: list[str] = []
    payload: dict = {}
    figures: dict = {}
    for setting, preset in SETTINGS.items():
        runs = load(out, setting)
        if not runs:
            continue
        s = summarize(runs, lambda r: float(r["config"]["grpo"]["grad_clip"]))
        payload[f"calibrate-{setting}"] = s
        title = f"Calibration of the channel, {setting} (preset {preset}; validation split)"
        parts += [f"## {title}", "", calibration_table(s), ""]
        figures[f"calibrate-{setting}.png"] = calibration_figure(runs, title)
    return parts, payload, figures
