"""The baselines (experts, weight average, mixed GRPO, sequential GRPO, static OPD, MOPD), the
CoPD ablation presets and the ablation-set queue, each on the tiny test model in seconds."""

from __future__ import annotations

import json

import pytest
import torch

from copd.policy.rollout import RolloutBatch
from copd.spec import METHODS, presets
from copd.tasks import Example
from copd.train import checkpoint
from copd.train.algorithms import run
from copd.train.algorithms.baselines import budget_for
from copd.train.algorithms.mopd import route, routed_logp
from copd.train.logger import NullLogger
from copd.train.world import TrainingCancelled, World


class Recorder(NullLogger):
    def __init__(self):
        self.metrics, self.evals, self.events = [], [], []
        self.on_metrics = None  # hook(step, phase, metrics)

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        self.metrics.append((step, cycle, phase, dict(metrics)))
        if self.on_metrics is not None:
            self.on_metrics(step, phase, metrics)

    def log_eval(self, model, benchmark, score, n, *, step):
        self.evals.append((step, model, benchmark, score))

    def log_event(self, message, *, level="info", step=None):
        self.events.append(message)

    def steps_with(self, key):
        return [step for step, _, _, m in self.metrics if key in m]

    def values(self, key):
        return [m[key] for *_, m in self.metrics if key in m]


EXPECTED_ROWS = {
    "expert": {"add", "rev"},
    "weight_average": {"add", "rev", "merged"},
    "mixed": {"mixed"},
    "sequential": {"sequential"},
    "static_opd": {"add", "rev"},
    "static_opd-rev": {"add", "rev"},
    "mopd": {"mopd", "add", "rev"},
}
TRAINED = {  # the policies whose reward curves the dashboard overlays
    "expert": ["add", "rev"],
    "weight_average": ["add", "rev"],
    "mixed": ["mixed"],
    "sequential": ["sequential"],
    "static_opd": ["add", "rev"],
    "static_opd-rev": ["add", "rev"],
    "mopd": ["add", "rev", "mopd"],
}


@pytest.mark.parametrize("preset", list(EXPECTED_ROWS))
def test_baseline_runs_end_to_end(preset, tiny_cfg, tmp_path):
    cfg = tiny_cfg(preset)
    rec = Recorder()
    world = World.build(cfg, rec)
    scores = run(world, tmp_path)
    budget = budget_for(cfg)

    assert set(scores) == EXPECTED_ROWS[preset]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["scores"]) == EXPECTED_ROWS[preset]
    assert results["budget"] == budget.to_dict()
    assert results["steps"] == world.state.step == budget.total
    assert any(e.startswith("budget: ") and "rule: " in e for e in rec.events)
    keys = {k for *_, m in rec.metrics for k in m}
    for name in TRAINED[preset]:  # one logged update per budgeted update, no more
        n = len(rec.steps_with(f"branch/{name}/grad_norm"))
        assert n == budget.updates_per_policy[name], f"{name}: {n} updates"
    if preset == "mixed":
        assert budget.updates_per_policy["mixed"] == 2 * cfg.schedule.total_steps()
        assert {"branch/mixed/reward_on/add", "branch/mixed/reward_on/rev"} <= keys
    if preset == "expert":  # the independent experts' drift is measured, like CoPD's branches
        assert {
            "pair/add~rev/overlap_top10",
            "pair/rev~add/sym_kl",
            "base/add/overlap_top10",
        } <= keys
    progress = rec.values("run/progress")
    assert progress[-1] == pytest.approx(1.0) and max(progress) == pytest.approx(1.0)
    assert {m for _, m, _, _ in rec.evals} == EXPECTED_ROWS[preset]
    recorded = [(step, m, bench) for step, m, bench, _ in rec.evals]
    assert len(recorded) == len(set(recorded)), "one evaluation per (model, benchmark, step)"


def test_mixed_budget_is_k_times_one_experts(tiny_cfg):
    T = tiny_cfg("expert").schedule.total_steps()
    assert budget_for(tiny_cfg("expert")).updates_per_policy == {"add": T, "rev": T}
    assert budget_for(tiny_cfg("mixed")).updates_per_policy == {"mixed": 2 * T}
    assert budget_for(tiny_cfg("mixed-3")).updates_per_policy == {"mixed": 3 * T}
    seq = budget_for(tiny_cfg("sequential-3"))  # mixed's budget, one stage per domain
    assert seq.updates_per_policy == {"sequential": 3 * T}
    assert seq.stages == (("add", T), ("rev", T), ("sort", T))


def test_sequential_trains_one_domain_after_the_other(tiny_cfg, tmp_path):
    """Sequential GRPO: the first T updates draw add's prompts only and change the weights,
    the next T rev's only and change them again; its one policy is the run's reported model,
    scored on every domain in results.json and the evaluations, as the other methods'."""
    from copd.spec import reported_model_of

    cfg = tiny_cfg("sequential")
    T = cfg.schedule.total_steps()
    rec = Recorder()
    world = World.build(cfg, rec)
    policy = world.branch("sequential")
    drawn, snapshots = [], {}
    prompts = world.prompts

    def spy(task, n, rng_key):  # every update draws its prompts here, once
        examples = prompts(task, n, rng_key)
        drawn.append({ex.domain for ex in examples})
        return examples

    world.prompts = spy
    rec.on_metrics = lambda step, phase, m: (
        snapshots.setdefault(step, [p.detach().clone() for p in policy.params])
        if "run/progress" in m
        else None
    )
    base = [p.detach().clone() for p in policy.params]
    scores = run(world, tmp_path)

    assert drawn == [{"add"}] * T + [{"rev"}] * T
    for step in range(1, 2 * T + 1):  # each update logs the reward on its stage's domain
        (m,) = [m for s, _, _, m in rec.metrics if s == step and "run/progress" in m]
        on = {k for k in m if k.startswith("branch/sequential/reward_on/")}
        assert on == {f"branch/sequential/reward_on/{'add' if step <= T else 'rev'}"}, step

    def changed(a, b):
        return any(not torch.equal(x, y) for x, y in zip(a, b, strict=True))

    assert changed(base, snapshots[T]) and changed(snapshots[T], snapshots[2 * T])
    assert [e for e in rec.events if e.startswith("sequential: ")] == [
        f"sequential: GRPO on add for {T} updates",
        f"sequential: GRPO on rev for {T} updates",
    ]
    reported = cfg.reported_model()
    assert reported == "sequential" == reported_model_of(cfg.to_dict(), "sequential")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["method"] == "sequential" and set(results["scores"]) == {reported}
    assert {"add", "rev", "overall"} <= set(results["scores"][reported]) == set(scores[reported])
    assert results["budget"]["stages"] == [
        {"name": "add", "steps": T},
        {"name": "rev", "steps": T},
    ]
    finals = {(m, b) for s, m, b, _ in rec.evals if s == 2 * T}
    assert {(reported, "add"), (reported, "rev")} <= finals


def _fake_batch(domains: list[str], group_size: int = 2, T: int = 3) -> RolloutBatch:
    examples = [Example(f"{d}?", "1", d) for d in domains for _ in range(group_size)]
    B = len(examples)
    return RolloutBatch(
        examples,
        torch.zeros(B, 2, dtype=torch.long),
        torch.ones(B, 2, dtype=torch.long),
        torch.arange(B * T).view(B, T),
        torch.ones(B, T),
        ["1"] * B,
        group_size,
    )


def test_mopd_routes_each_sample_to_its_domains_teacher():
    batch = _fake_batch(["add", "rev", "rev", "add", "sort"])
    teacher_of = {"add": "A", "rev": "R", "sort": "S"}
    assert route([ex.domain for ex in batch.examples], teacher_of) == {
        "A": [0, 1, 6, 7],
        "R": [2, 3, 4, 5],
        "S": [8, 9],
    }
    seen = {}

    def score(teacher, sub):
        seen[teacher] = {ex.domain for ex in sub.examples}
        # distinct per teacher and per row: -(teacher id) - first completion id / 100
        tid = {"A": 1.0, "R": 2.0, "S": 3.0}[teacher]
        return -tid - sub.completion_ids_B_T.float() / 100

    lp = routed_logp(batch, teacher_of, score)
    assert seen == {"A": {"add"}, "R": {"rev"}, "S": {"sort"}}  # each teacher: its domain only
    for i, ex in enumerate(batch.examples):
        tid = {"add": 1.0, "rev": 2.0, "sort": 3.0}[ex.domain]
        expected = -tid - batch.completion_ids_B_T[i].float() / 100
        assert torch.allclose(lp.logp[i], expected), (
            f"row {i} ({ex.domain}) scored by the wrong teacher"
        )
    with pytest.raises(KeyError, match="no expert for domain 'count'"):
        route(["count"], teacher_of)


def test_static_opd_teacher_is_frozen_during_distillation(tiny_cfg, tmp_path):
    cfg = tiny_cfg("static_opd")  # add -> rev
    rec = Recorder()
    world = World.build(cfg, rec)
    budget = budget_for(cfg)
    end_of_experts = budget.start_of("distill")
    snap = {}

    def grab(step, phase, metrics):
        if step == end_of_experts and "run/progress" in metrics:  # logged after the update
            snap.update({b.name: [p.detach().clone() for p in b.params] for b in world.branches})

    rec.on_metrics = grab
    run(world, tmp_path)
    assert snap, "the expert stage did not end where the budget says"
    teacher, student = world.branch("add"), world.branch("rev")
    for p0, p in zip(snap["add"], teacher.params, strict=True):
        assert torch.equal(p0, p), "the frozen teacher changed during distillation"
    assert any(not torch.equal(p0, p) for p0, p in zip(snap["rev"], student.params, strict=True)), (
        "the student did not learn during distillation"
    )
    assert rec.steps_with("branch/rev/opd/adv_mean/add") == list(
        range(end_of_experts + 1, budget.total + 1)
    )
    assert not rec.steps_with("branch/add/opd/adv_mean/rev")  # one way only


def test_static_opd_resume_across_stages_gives_identical_weights(tiny_cfg, tmp_path):
    cfg = tiny_cfg("static_opd", "opd.native_rl=true")
    budget = budget_for(cfg)
    stops = [1, budget.start_of("distill") + 1]  # once in each stage
    assert stops[1] < budget.total

    full = World.build(cfg, NullLogger())
    run(full, tmp_path / "full")

    out = tmp_path / "part"
    world = None
    for stop in [*stops, None]:
        rec = Recorder()
        world = World.build(cfg, rec)
        if (ck := checkpoint.latest(out)) is not None:
            checkpoint.restore(world, ck)

        def stopper(step, phase, metrics, world=world, stop=stop):
            if stop is not None and step == stop and "run/progress" in metrics:
                world.state.stop_requested = True

        rec.on_metrics = stopper
        if stop is None:
            run(world, out)
        else:
            with pytest.raises(TrainingCancelled, match=f"stopped at step {stop} of"):
                run(world, out)
            saved = checkpoint.restore(World.build(cfg, NullLogger()), checkpoint.latest(out))
            assert saved["stage"] == budget.stage_at(stop)
    assert world.state.step == budget.total
    for a, b in zip(full.branches, world.branches, strict=True):
        for pa, pb in zip(a.params, b.params, strict=True):
            assert torch.equal(pa, pb), f"branch {a.name} differs after resume"


@pytest.mark.parametrize(
    "preset",
    [
        "copd-no-merge",
        "copd-one-way",
        "copd-no-native-rl",
        "copd-snapshot-teacher",
        "copd-ratio-1to1",
    ],
)
def test_copd_ablation_presets_run(preset, tiny_cfg, tmp_path):
    extra = ["schedule.cycles=1"]
    if preset == "copd-ratio-1to1":
        extra += ["schedule.rl_steps=1", "schedule.opd_steps=1"]
    rec = Recorder()
    world = World.build(tiny_cfg(preset, *extra), rec)
    scores = run(world, tmp_path)
    merged = "merged" in scores
    assert merged == (preset != "copd-no-merge")
    assert rec.values("run/progress")[-1] == pytest.approx(1.0)
    keys = {k for *_, m in rec.metrics for k in m}
    if preset == "copd-one-way":  # only the first branch (add) teaches
        assert "branch/rev/opd/adv_mean/add" in keys
        assert "branch/add/opd/adv_mean/rev" not in keys
    if preset == "copd-no-native-rl":  # phase II has no native batch
        opd_rows = [m for _, _, phase, m in rec.metrics if phase == "opd" and "run/progress" in m]
        assert opd_rows and all("branch/add/loss/pg" not in m for m in opd_rows)


def test_presets_and_sets_are_registered():
    for name in EXPECTED_ROWS:
        assert name in presets.names()
        assert presets.get(name).validate().method in set(METHODS) - {"copd"}  # a baseline
    assert presets.get("static_opd").static_direction == "add->rev"
    assert presets.get("static_opd-rev").static_direction == "rev->add"
    demo = presets.get("demo")
    for name in EXPECTED_ROWS:
        cfg = presets.get(name)
        assert (cfg.model, cfg.sampling, cfg.grpo, cfg.schedule) == (
            demo.model,
            demo.sampling,
            demo.grpo,
            demo.schedule,
        ), f"{name} does not share the demo's model/sampling/GRPO/schedule"


def test_every_named_set_lists_known_presets():
    sets = presets.sets()
    # the paper's two-domain comparison: one preset of every method (the method table's)
    assert {presets.get(n).method for n in sets["paper-2dom"]} == set(METHODS)
    assert {presets.get(n).static_direction for n in sets["paper-2dom"]} >= {"add->rev", "rev->add"}
    for name, members in sets.items():
        unknown = set(members) - set(presets.names())
        assert not unknown, f"set {name} names unknown presets {unknown}"


# ---------------------------------------------------------------------- ablation sets
@pytest.fixture
def sweep_env(tmp_path):
    from app.control.launcher import Launcher
    from storage import RunStore

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = RunStore.from_url(url)
    return url, store, Launcher(store, tmp_path / "runs", max_cpu_runs=1, gpus=[])


def test_launch_sweep_queues_every_preset_for_every_seed_in_one_group(sweep_env):
    from app.control.sweep_cli import launch_sweep
    from copd.spec import ConfigError
    from copd.spec.sweep import sweep_configs

    _, store, launcher = sweep_env
    sets = ["expert", "mixed"]

    def launch(seeds, group, overrides):
        return launch_sweep(store, launcher, sweep_configs(sets, seeds, group, overrides))

    runs = launch([0, 1, 2], "abl", ["schedule.cycles=3"])
    assert len(runs) == 6
    assert {r.status for r in runs} == {"queued"}
    assert {r.group for r in runs} == {"abl"}
    assert store.list_groups() == ["abl"]
    for method in ("expert", "mixed"):
        mine = [r for r in runs if r.method == method]
        assert sorted(r.seed for r in mine) == [0, 1, 2]
        assert all(r.config["seed"] == r.seed for r in mine)
    assert {r.config["schedule"]["cycles"] for r in runs} == {3}  # identical overrides
    assert len({r.name for r in runs}) == 6
    assert "sweep abl: preset mixed" in store.events(runs[-1].id)[-1].message

    # a bad override or a reserved key queues nothing
    with pytest.raises(ConfigError, match="grpo.group_size"):
        launch([0], "bad", ["grpo.group_size=1"])
    with pytest.raises(ConfigError, match="--seeds"):
        launch([0], "bad", ["seed=4"])
    assert len(store.list_runs()) == 6


def test_sweep_cli_expands_a_named_set(sweep_env, tmp_path, capsys):
    from copd.cli import main

    url, store, _ = sweep_env
    rc = main(
        [
            "sweep", "--set-name", "paper-2dom", "--seeds", "0,1", "--group", "paper",
            "--set", "schedule.cycles=2", "--no-start", "--db", url,
            "--runs-root", str(tmp_path / "runs"),
        ]
    )  # fmt: skip
    assert rc == 0
    runs = store.list_runs(group="paper")
    n = len(presets.sets()["paper-2dom"])  # one preset of every method (static OPD twice)
    assert len(runs) == n * 2
    assert {r.status for r in runs} == {"queued"}  # --no-start: nothing started
    assert sorted({r.method for r in runs}) == sorted(METHODS)
    assert f"queued {n * 2} runs" in capsys.readouterr().err


def test_grid_sweep_creates_exactly_the_product_and_is_all_or_nothing(sweep_env, tmp_path):
    from copd.cli import main

    url, store, _ = sweep_env
    argv = [
        "sweep", "demo", "--grid", "opd.beta=0.5,1,2,4", "--grid", "schedule.rl_steps=3,6",
        "--seeds", "0-2", "--group", "beta", "--no-start", "--db", url,
        "--runs-root", str(tmp_path / "runs"),
    ]  # fmt: skip
    assert main(argv) == 0
    runs = store.list_runs(group="beta")
    assert len(runs) == 4 * 2 * 3
    cells = {(r.config["opd"]["beta"], r.config["schedule"]["rl_steps"], r.seed) for r in runs}
    assert cells == {(b, s, seed) for b in (0.5, 1, 2, 4) for s in (3, 6) for seed in (0, 1, 2)}
    assert len({r.name for r in runs}) == 24
    # one invalid grid value: nothing of the set is queued, the error names the point
    bad = list(argv)
    bad[3] = "opd.beta=1,-3"
    bad[bad.index("beta")] = "beta-bad"
    assert main(bad) == 2
    assert store.list_runs(group="beta-bad") == []


def test_grid_parsing_and_points():
    from copd.spec import ConfigError
    from copd.spec.sweep import grid_points, parse_grid, point_tag

    grid = parse_grid(["opd.beta=0.5,1", 'branches=[{"name":"a","task":"add"}],[]'])
    assert grid["opd.beta"] == ["0.5", "1"]
    assert grid["branches"] == ['[{"name":"a","task":"add"}]', "[]"]
    pts = grid_points({"a.x": ["1", "2"], "b.y": ["3"]})
    assert pts == [{"a.x": "1", "b.y": "3"}, {"a.x": "2", "b.y": "3"}]
    assert grid_points(None) == [{}]
    assert point_tag({"opd.beta": "0.5", "schedule.rl_steps": "3"}) == "beta0.5-rl_steps3"
    for item, msg in [("opd.beta", "KEY=V1"), ("opd.beta=1,1", "repeats"), ("seed=1,2", None)]:
        if msg is None:
            from copd.spec.sweep import sweep_configs

            with pytest.raises(ConfigError, match="sets seed per run"):
                sweep_configs(["demo"], [0], "g", grid=parse_grid([item]))
        else:
            with pytest.raises(ConfigError, match=msg):
                parse_grid([item])


def test_distillation_stage_scores_the_student_on_its_blocks_on_validation(tiny_cfg, tmp_path):
    """The student's learning curve: evaluated at every evaluated phase-II block end of the
    distillation stage (not only at the end), on validation too with eval.during."""
    cfg = tiny_cfg("mopd", "schedule.eval_every_cycles=1", "eval.during=validation")
    rec = Recorder()
    run(World.build(cfg, rec), tmp_path)
    budget = budget_for(cfg)
    start, S = budget.start_of("distill"), cfg.schedule.opd_steps
    steps = sorted({s for s, m, b, _ in rec.evals if m == "mopd" and b == "add@val"})
    assert steps == list(range(start + S, budget.total + 1, S)) and len(steps) > 1
    assert {b for s, m, b, _ in rec.evals if m == "add" and s == start} >= {"add", "add@val"}


def test_opd_samples_teacher_is_cross_entropy_on_the_teachers_greedy_answers(tiny_cfg, tmp_path):
    """opd.samples=teacher: each student update is the gradient of the student's token-mean
    cross-entropy on the frozen experts' greedy answers; checked against an independent
    autograd computation on the same answers."""
    from copd.policy.rollout import completion_logits, sample_rollouts
    from copd.train.algorithms.mopd import supervised_step

    cfg = tiny_cfg("mopd", "opd.samples=teacher", "grpo.grad_clip=1e9")
    world = World.build(cfg, Recorder())
    student, teacher = world.branch("mopd"), world.branch("add")
    with torch.no_grad():  # make the teacher differ from the student
        for p in teacher.params:
            p.add_(0.05 * torch.randn_like(p))
    exs = world.prompts(teacher.task, 4, "mopd")
    with teacher.view.use() as model:
        greedy = world.decoding.as_greedy()
        answers = sample_rollouts(model, world.tokenizer, exs, greedy, group_size=1)
    before = [p.detach().clone() for p in student.params]
    with student.view.use() as model:
        logits = completion_logits(model, answers).float()
    logp = torch.log_softmax(logits, -1).gather(-1, answers.completion_ids_B_T.long()[..., None])
    m = answers.completion_mask_B_T
    ce = -(logp.squeeze(-1) * m).sum() / m.sum()
    grads = torch.autograd.grad(ce, student.params, allow_unused=True)

    out = supervised_step(world, student, {"add": "add", "rev": "rev"}, exs)
    world.score_rewards(answers)
    assert out["branch/mopd/reward_on/add"] == pytest.approx(float(answers.rewards_B.mean()))
    # one AdamW step from fresh moments moves each weight by -lr * sign-like g / (|g| + eps):
    # the direction of every clearly moved weight is minus the cross-entropy's gradient
    moved = agree = 0
    for p0, p, g in zip(before, student.params, grads, strict=True):
        if g is None:
            continue
        d = (p.detach() - p0).flatten()
        big = g.flatten().abs() > 1e-4
        moved += int(big.sum())
        agree += int((torch.sign(d[big]) == -torch.sign(g.flatten()[big])).sum())
    assert moved > 100 and agree / moved > 0.99


def test_opd_samples_teacher_is_refused_outside_mopd(tiny_cfg):
    from copd.spec import ConfigError

    with pytest.raises(ConfigError, match="opd.samples.*mopd"):
        tiny_cfg("static_opd", "opd.samples=teacher")
    with pytest.raises(ConfigError, match="eval.during"):
        tiny_cfg("mopd", "eval.during=validation", "eval.validation=false")


def test_the_step0_overlap_reaches_the_loggers_before_the_starting_evaluation(tiny_cfg, tmp_path):
    """The Live view's first chart is the step-0 overlap (issue 38: first chart within 8 s
    of the click): its rows are flushed before the starting scores are computed, not after
    (an evaluation of every model on both splits came first)."""
    order = []

    class Flushes(Recorder):
        def log_metrics(self, metrics, *, step, cycle=0, phase=""):
            super().log_metrics(metrics, step=step, cycle=cycle, phase=phase)
            order.extend(("overlap",) if any("overlap_top10" in k for k in metrics) else ())

        def log_eval(self, model, benchmark, score, n, *, step):
            super().log_eval(model, benchmark, score, n, step=step)
            order.append("eval")

        def flush(self):
            order.append("flush")

    run(World.build(tiny_cfg("demo", "schedule.cycles=1"), Flushes()), tmp_path)
    first_eval = order.index("eval")
    assert order.index("overlap") < order.index("flush") < first_eval
