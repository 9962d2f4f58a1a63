"""The study's bookkeeping: disjoint seeds for choosing and for reporting, the conflict
stage's arms, and the signal-balance summary (per-update spread, medians, NaN left out)."""

import json
import math

import pytest

from experiments import study, study_analysis, study_report


def test_final_seeds_are_disjoint_from_the_maps_and_are_the_test_stages_default(tmp_path):
    assert len(study.FINAL_SEEDS) == 8
    assert not set(study.FINAL_SEEDS) & set(study.MAP_SEEDS)
    # the stages' defaults, as the CLI builds them
    rows = study.jobs_for(study.pair_final("conflict", None), study.FINAL_SEEDS, tmp_path, "g")
    assert {seed for _, seed, _ in rows} == set(study.FINAL_SEEDS)
    assert all(job.cfg.seed == seed for _, seed, job in rows)


@pytest.mark.parametrize(
    "setting, domains", [("conflict", ("up", "down")), ("cue", ("fwd", "back"))]
)
def test_pair_stages_cover_every_method_and_validate(tmp_path, setting, domains):
    arms = study.pair_final(setting, "copd-cross16x2")
    assert set(arms) == {
        "expert", "mixed", "mixed-steps", "static_opd", "static_opd-rev", "mopd", "copd",
        "copd-cross16x2", "weight_average",
    }  # fmt: skip
    rows = study.jobs_for(arms, [100], tmp_path, "g")
    methods = {arm: job.cfg.method for arm, _, job in rows}
    assert methods["mopd"] == "mopd" and methods["static_opd-rev"] == "static_opd"
    assert methods["weight_average"] == "weight_average"  # the paper's merge control
    assert all(job.cfg.branch_names == domains for _, _, job in rows)
    assert all(job.cfg.model.demo_tasks == domains for _, _, job in rows)
    statics = {job.cfg.static_direction for arm, _, job in rows if arm.startswith("static")}
    assert statics == {f"{domains[0]}->{domains[1]}", f"{domains[1]}->{domains[0]}"}
    # the map holds an arm whose PPO clip can act (more than one mini-batch)
    mb = [o for _, o in study.pair_map(setting).values() if "grpo.minibatches=2" in o]
    assert mb
    with pytest.raises(ValueError, match="CoPD arm of the map"):
        study.pair_final(setting, "mixed")


def _metrics(path, rows):
    path.mkdir(parents=True)
    lines = [
        json.dumps({"type": "metric", "step": s, "phase": ph, "values": v}) for s, ph, v in rows
    ]
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_signal_summary_reports_per_update_spread_medians_and_skips_nan(tmp_path):
    b = "branch/add/signal/"
    r1 = _metrics(tmp_path / "r1", [
        (1, "rl", {b + "grad_norm/grpo": 1.0, b + "move/grpo": 0.5}),
        (7, "opd", {b + "grad_norm/grpo": 1.0, b + "grad_norm/rev": 2.0, b + "cos/rev": 0.1,
                    b + "move/grpo": 0.25}),
        (8, "opd", {b + "grad_norm/grpo": 1.0, b + "grad_norm/rev": 10.0, b + "cos/rev": -0.1}),
        (9, "opd", {b + "grad_norm/grpo": float("nan"), b + "grad_norm/rev": 3.0,
                    b + "cos/rev": float("nan")}),  # an empty GRPO term
    ])  # fmt: skip
    r2 = _metrics(tmp_path / "r2", [
        (7, "opd", {b + "grad_norm/grpo": 2.0, b + "grad_norm/rev": 4.0, b + "cos/rev": 0.3}),
    ])  # fmt: skip
    sig = study_analysis.signal_summary([r1, r2])
    assert set(sig) == {"add", "all"}
    cos = sig["all"]["opd:cos/opd"]
    assert cos["updates"] == 3 and cos["runs"] == 2  # the NaN update is left out
    assert cos["median"] == pytest.approx(0.1)
    assert cos["sd_update"] == pytest.approx(0.2)  # single updates: 0.1, -0.1, 0.3
    assert cos["run_mean"] == pytest.approx(0.15)  # run means 0.0 and 0.3
    assert cos["run_sd"] == pytest.approx(math.sqrt(0.045))
    ratio = sig["all"]["ratio grad_norm opd/grpo"]
    assert ratio["updates"] == 3 and ratio["median"] == pytest.approx(2.0)  # 2, 10, 2
    assert ratio["mean"] == pytest.approx(14 / 3)  # the heavy tail pulls the mean
    assert sig["all"]["ratio of mean grad_norm opd/grpo"]["mean"] == pytest.approx(
        (2 + 10 + 4) / 3 / ((1 + 1 + 2) / 3)
    )  # over the updates that measured both terms
    assert sig["all"]["rl:move/grpo"]["mean"] == 0.5
    assert sig["all"]["opd:move/grpo"]["mean"] == 0.25
    assert "| all | opd:cos/opd | 0.100 |" in study_report.signal_table(sig)


def test_conflict_presets_share_one_model_and_settings():
    from copd.spec import presets

    members = presets.sets()["conflict"]
    ref = presets.get("conflict")
    assert ref.model.demo_tasks == ("up", "down") and ref.model.demo_hidden == 64
    for name in members:
        cfg = presets.get(name).validate()
        assert cfg.branch_names == ("up", "down")
        assert (cfg.model, cfg.sampling, cfg.grpo, cfg.schedule) == (
            ref.model, ref.sampling, ref.grpo, ref.schedule,
        ), name  # fmt: skip
    assert presets.get("static_opd-conflict").static_direction == "up->down"
    assert presets.get("static_opd-conflict-rev").static_direction == "down->up"


def test_the_command_keeps_choosing_and_reporting_seeds_apart(tmp_path):
    """Issue 39, correction 6: `copd study STAGE --seeds` set the validation and the test
    seeds to the same list. A test stage now refuses a seed a map used (the defaults and
    any map run in the output folder), and a map a seed a test table used, before any run."""
    from copd.spec import ConfigError

    with pytest.raises(ConfigError, match=r"seeds 0 \(map .*\), 2 .* 'cue' must use other"):
        study.check_seeds("cue", [0, 2, 100], tmp_path)
    (tmp_path / "study-cue-map" / "copd-s100").mkdir(parents=True)  # a map run on seed 100
    with pytest.raises(ConfigError, match=r"seeds 100 \(cue-map\) chose settings"):
        study.check_seeds("final", [100, 101], tmp_path)
    (tmp_path / "study-conflict" / "mixed-s7").mkdir(parents=True)  # a test table's seed 7
    with pytest.raises(ConfigError, match=r"seeds 7 \(conflict\) are in a test table"):
        study.check_seeds("conflict-map", [6, 7], tmp_path)
    study.check_seeds("cue", list(study.FINAL_SEEDS[1:]), tmp_path)  # disjoint: fine
    study.check_seeds("drift", [0, 100], tmp_path)  # neither chooses nor reports


def test_calibration_arms_validate_and_choose_on_validation(tmp_path):
    from experiments import calibrate

    for setting, domains in (("pair", ("add", "rev")), ("cue", ("fwd", "back"))):
        rows = study.jobs_for(calibrate.calibration_arms(setting), [0], tmp_path, "g")
        cfgs = {arm: job.cfg for arm, _, job in rows}
        assert set(cfgs) == set(calibrate.ARMS)
        assert all(c.method == "mopd" and c.branch_names == domains for c in cfgs.values())
        assert all(c.eval.during == "validation" for c in cfgs.values())
        assert cfgs["sft"].opd.samples == "teacher" and cfgs["opd"].opd.samples == "student"
        assert cfgs["opd-clip10"].grpo.grad_clip == 10
    (tmp_path / "study-cue" / "copd-s1").mkdir(parents=True)  # a test table's seed 1
    with pytest.raises(Exception, match=r"seeds 1 \(cue\) are in a test table"):
        study.check_seeds("calibrate", [0, 1], tmp_path)


def _calibration_run(path, seed, student, experts, grads, clip=1.0):
    """A finished calibration run folder: T = 4 expert steps, the student after it."""
    path.mkdir(parents=True)
    cfg = {"seed": seed, "grpo": {"grad_clip": clip},
           "branches": [{"name": "a", "task": "add"}, {"name": "r", "task": "rev"}]}  # fmt: skip
    (path / "config.json").write_text(json.dumps(cfg))
    stages = [{"name": "experts", "steps": 4}, {"name": "distill", "steps": 4}]
    (path / "results.json").write_text(json.dumps({"budget": {"stages": stages}}))
    recs = []
    for model, per_step in [("mopd", student), *experts.items()]:
        for step, scores in per_step.items():
            for bench, v in scores.items():
                recs.append({"type": "eval", "model": model, "benchmark": f"{bench}@val",
                             "score": v, "step": step})  # fmt: skip
    recs += [{"type": "metric", "step": 5 + i, "values": {"branch/mopd/grad_norm": g}}
             for i, g in enumerate(grads)]  # fmt: skip
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")


def test_calibration_report_reads_the_students_curve_and_the_gain_it_closed(tmp_path):
    from experiments import calibrate

    base = {"add": 0.4, "rev": 0.6, "overall": 0.5}
    experts = {  # the add expert ends at 0.9 on add, the rev expert at 0.7 on rev
        "a": {0: base, 4: {"add": 0.9, "rev": 0.1, "overall": 0.5}},
        "r": {0: base, 4: {"add": 0.1, "rev": 0.7, "overall": 0.4}},
    }
    where = tmp_path / "study-calibrate-pair"
    for seed, end in ((0, 0.6), (1, 0.7)):
        student = {20: {"overall": 0.55}, 36: {"overall": end}}  # after 16 and 32 updates
        _calibration_run(where / f"opd-s{seed}", seed, student, experts, [0.5, 2.0, 3.0, 0.9])
    runs = calibrate.load(tmp_path, "pair")
    parts, payload, figures = calibrate.report_calibration(tmp_path)
    assert set(figures) == {"calibrate-pair.png"} and payload["calibrate-pair"]["opd"]["n"] == 2
    s = calibrate.summarize(runs, lambda r: 1.0)["opd"]
    assert s[16] == pytest.approx((0.55, 0.0)) and s[32][0] == pytest.approx(0.65)
    assert s[64] is None and s["n"] == 2
    # teachers' level (0.9 + 0.7) / 2 = 0.8, base 0.5: closed (0.6-0.5)/0.3 and (0.7-0.5)/0.3
    assert s["closed"][0] == pytest.approx(0.5)
    assert s["clipped"] == pytest.approx(0.5)  # 2.0 and 3.0 of 4 norms above clip 1
    assert calibrate.grpo_curve(runs["opd"][0]) == {0: 0.5, 4: pytest.approx(0.8)}
    table = calibrate.calibration_table({"opd": s})
    assert "| opd | 0.550 ± 0.000 | 0.650 ± 0.071 | — | — | 0.500 ± 0.236 | 50% | 2 |" in table


def test_clip_prediction_reads_the_move_ratio_and_the_clip_factors(tmp_path):
    """Issue 39, correction 1: per phase-II update, move/grpo over move_solo/grpo against
    max(1, |g_grpo|) / max(1, |g_grpo + g_opd|); phase-I rows and updates without the
    measurement are left out."""
    from copd.common import names as N

    def row(b, move, solo, g, total):
        return {
            N.branch(b, N.signal_key("move")): move, N.branch(b, N.signal_key("move_solo")): solo,
            N.branch(b, N.signal_key("grad_norm")): g, N.branch(b, N.GRAD_NORM): total,
        }  # fmt: skip

    _metrics(tmp_path / "r", [
        (2, "opd", {**row("a", 0.3, 1.0, 2.0, 6.0), **row("b", 0.5, 1.0, 0.5, 2.0)}),
        (3, "opd", row("a", 0.9, 1.0, 3.0, 3.5)),
        (4, "rl", row("a", 1.0, 1.0, 2.0, 2.0)),  # phase I: not counted
        (5, "opd", {N.branch("a", N.GRAD_NORM): 4.0}),  # no measurement: not counted
    ])  # fmt: skip
    out = study_analysis.clip_prediction([tmp_path / "r"])
    # move ratios 0.3, 0.5, 0.9; clip-factor ratios 2/6, 1/2, 3/3.5
    assert out["updates"] == 3
    assert out["median move ratio"] == pytest.approx(0.5)
    assert out["median clip-factor ratio"] == pytest.approx(0.5)
    assert out["share GRPO norm > clip"] == pytest.approx(2 / 3)
    assert out["pearson r"] > 0.99


def test_the_fresh_stage_runs_every_method_on_a_fresh_draw_with_unused_seeds(tmp_path):
    """Issue 39 item 4: the final table scored on prompts no earlier table scored, with
    the weight average and MOPD as rows, CoPD at the calibrated setting, seeds disjoint
    from every selection seed (the command refuses a map's seed)."""
    arms = study.fresh_arms("cue")
    assert {"weight_average", "mopd", "mixed", "mixed-steps", "copd", "copd-calibrated"} <= set(
        arms
    )
    rows = study.jobs_for(arms, [200], tmp_path, "g")
    assert all(job.cfg.eval.test_draw == "fresh" for _, _, job in rows)
    cal = next(job.cfg for arm, _, job in rows if arm == "copd-calibrated")
    assert (cal.opd.cross_prompts_per_step, cal.opd.cross_group_size) == (16, 4)
    assert not set(study.FRESH_SEEDS) & (set(study.MAP_SEEDS) | set(study.FINAL_SEEDS))
    with pytest.raises(Exception, match=r"seeds 1 \(map"):
        study.check_seeds("cue-fresh", [1, 200], tmp_path)
    study.check_seeds("cue-fresh", list(study.FRESH_SEEDS), tmp_path)
    # the built-in pair: Table 1's methods, add scored whole (its test split is exhausted)
    builtin = study.jobs_for(study.fresh_arms("builtin"), [200], tmp_path, "g")
    assert {arm for arm, _, _ in builtin} == {
        "expert", "weight_average", "mixed", "mixed-steps", "static_opd", "static_opd-rev",
        "mopd", "sequential", "copd", "copd-calibrated",
    }  # fmt: skip
    assert all(job.cfg.eval.test_draw == "fresh_or_whole" for _, _, job in builtin)
    assert study.is_report("builtin-fresh") and not study.is_fresh("demo-fresh")
    with pytest.raises(Exception, match=r"seeds 0 \(map"):
        study.check_seeds("builtin-fresh", [0], tmp_path)
