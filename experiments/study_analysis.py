"""The study's analysis, pure: a run's reported scores, arm summaries, paired tests, the
signal balance of CoPD's updates and the drift series, from results.json and
metrics.jsonl (experiments/study.py runs the stages; study_report.py writes them up).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from copd.common import names as N
from copd.common.stats import mean_std, paired
from copd.spec import OWN_DOMAIN, reported_model_of


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
                n = N.parse(k)
                kind, _, term = n.key.removeprefix(N.SIGNAL_PREFIX).partition("/")
                if n.kind != "branch" or not n.key.startswith(N.SIGNAL_PREFIX) or not term:
                    continue
                if "/" in term or not isinstance(v, (int, float)) or not math.isfinite(v):
                    continue
                term = term if term in ("grpo", "all") else "opd"
                per.setdefault(n.owner, {}).setdefault(f"{kind}/{term}", []).append(v)
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
                if N.parse(k).kind == "pair":
                    per.setdefault(N.parse(k).key, []).append(v)
            for q, vs in per.items():
                if q in ("overlap_top1", "overlap_top5", "overlap_top10", "overlap_mass", "sym_kl"):
                    out.setdefault(q, {}).setdefault(int(rec["step"]), []).append(
                        statistics.fmean(vs)
                    )
    return out


# The conflict settings (copd/spec/presets.py `_pair_presets`): `conflict` (up and down,
# one tag apart) and `cue` (fwd and back, cued by the first letter), opposite letter maps
# of the same strings. The map chooses CoPD's setting on validation over MAP_SEEDS (with
# one arm of 2 PPO mini-batches, where the clip acts); the final stage runs every method on
# test over FINAL_SEEDS.
PAIR_SETTINGS = {"conflict": "up + down", "cue": "fwd + back"}


def clip_prediction(run_dirs: Sequence[Path], clip: float = 1.0) -> dict[str, float]:
    """Does the global gradient clip explain how much adding OPD slows the GRPO term? Per
    phase-II update that measured it: the GRPO term's progress with OPD added over a
    GRPO-only step from the same state (`move/grpo` / `move_solo/grpo`), against what the
    clip alone predicts, the ratio of the two steps' clip factors
    max(1, |g_grpo| / clip) / max(1, |g_grpo + g_opd| / clip) (the summed gradient's norm is
    the update's `grad_norm`, before clipping). Returns the medians of both, their Pearson
    r, the share of updates whose GRPO norm alone exceeds the clip, and the count."""
    from copd.common.stats import pearson

    moved, predicted, over = [], [], 0
    for d in run_dirs:
        for line in (Path(d) / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("type") != "metric" or rec.get("phase") != "opd":
                continue
            v = rec["values"]
            for b in {N.parse(k).owner for k in v if N.parse(k).kind == "branch"}:
                keys = ("move", "move_solo", "grad_norm")
                move, solo, g = (v.get(N.branch(b, N.signal_key(k))) for k in keys)
                total = v.get(N.branch(b, N.GRAD_NORM))
                vals = (move, solo, g, total)
                if any(x is None or not math.isfinite(x) for x in vals) or solo == 0:
                    continue
                moved.append(move / solo)
                predicted.append(max(1.0, g / clip) / max(1.0, total / clip))
                over += g > clip
    if len(moved) < 3:
        return {"updates": len(moved)}
    return {
        "updates": len(moved),
        "median move ratio": statistics.median(moved),
        "median clip-factor ratio": statistics.median(predicted),
        "pearson r": pearson(moved, predicted),
        "share GRPO norm > clip": over / len(moved),
    }
