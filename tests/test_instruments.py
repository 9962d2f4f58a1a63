"""The instruments for telling science from set-up: signal balance, PPO mini-batches, the
phase-II weighting and OPD loss variants, and the paper-faithful baselines, each on a
constructed case with a known answer."""

import math

import pytest
import torch

from copd.common import names as N
from copd.policy.decoding import Decoding
from copd.policy.rollout import sample_rollouts
from copd.train.logger import NullLogger
from copd.train.terms import grpo_term, opd_term
from copd.train.update import TermSpec, opd_weights, optimize
from copd.train.world import World


def _world(tiny_cfg, *extra):
    return World.build(tiny_cfg("demo", "grpo.lr=1e-3", *extra), NullLogger())


def _batch(world, branch, prompts=4, group=4, seed=0):
    batch = sample_rollouts(
        branch.view.module,
        world.tokenizer,
        world.prompts(branch.task, prompts, branch.name),
        Decoding(temperature=1.0, max_new_tokens=6),
        group_size=group,
        generator=torch.Generator().manual_seed(seed),
    )
    # two groups with a signal, two flat
    batch.rewards_B = torch.tensor([1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0.0])
    return batch


def _student_logp(world, branch, batch):
    return world.score(branch.view, batch)


def test_signal_balance_zero_term_and_gradient_decomposition(tiny_cfg):
    """An OPD term whose teacher agrees with the student has zero advantage: its gradient
    norm is 0 and its cosine undefined (NaN); the GRPO term's norm is the whole update's
    (pre-clip)."""
    world = _world(tiny_cfg, "grpo.grad_clip=1e9")
    b = world.branches[0]
    native = _batch(world, b)
    cross = _batch(world, b, seed=1)
    same = _student_logp(world, b, cross)  # teacher == student: log-ratio 0 everywhere
    res = optimize(
        world, b, [TermSpec(1.0, native), TermSpec(1.0, cross, "rev", same)], measure_signal=True
    )
    sig = res.signal
    assert sig[N.signal_key("grad_norm", "rev")] == pytest.approx(0.0, abs=1e-7)
    assert math.isnan(sig[N.signal_key("cos", "rev")])
    assert sig[N.SIGNAL_GRAD_GRPO] == pytest.approx(res.grad_norm, rel=1e-4)
    opd = res.stats[1]
    assert opd[N.SIGNAL_PREFIX + "adv_abs"] == pytest.approx(0.0, abs=1e-6)
    assert opd[N.SIGNAL_PREFIX + "log_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert opd[N.SIGNAL_PREFIX + "pos_frac"] == 0.0


@pytest.mark.parametrize("skip", ["true", "false"])
def test_signal_balance_of_an_empty_grpo_term_is_nan_not_zero(tiny_cfg, skip):
    """Every native group zero-advantage: the GRPO term has no gradient to measure, so its
    norm and its cosine with the OPD term are NaN (0 would read as a measured orthogonal
    term); the OPD term is still measured."""
    world = _world(tiny_cfg, f"grpo.skip_zero_advantage={skip}")
    b = world.branches[0]
    native, cross = _batch(world, b), _batch(world, b, seed=1)
    native.rewards_B = torch.ones(native.size)  # every group all right: zero advantage
    teacher = _student_logp(world, b, cross) + torch.linspace(-0.5, 0.5, cross.size)[:, None]
    res = optimize(world, b, [TermSpec(1.0, native), TermSpec(1.0, cross, "rev", teacher)], True)
    sig = res.signal
    assert math.isnan(sig[N.SIGNAL_GRAD_GRPO])
    assert math.isnan(sig[N.signal_key("cos", "rev")])
    assert sig[N.signal_key("grad_norm", "rev")] > 0


def test_signal_balance_terms_add_up_and_cosine_is_computed(tiny_cfg):
    world = _world(tiny_cfg, "grpo.grad_clip=1e9")
    b = world.branches[0]
    native = _batch(world, b)
    cross = _batch(world, b, seed=1)
    teacher = _student_logp(world, b, cross) + torch.randn(cross.completion_ids_B_T.shape) * 0.5
    specs = [TermSpec(1.0, native), TermSpec(0.5, cross, "rev", teacher)]
    # the reference: the gradients of each term alone, at the same weights
    grads = []
    for s in specs:
        b.optimizer.zero_grad(set_to_none=True)
        t = (
            grpo_term(b, s.batch, world.loss)
            if s.teacher is None
            else opd_term(b, s.batch, s.scores, world.loss)
        )
        (s.weight * t.loss).backward()
        grads.append(torch.cat([p.grad.flatten() for p in b.params]).clone())
    res = optimize(world, b, specs, measure_signal=True)
    sig = res.signal
    assert sig[N.SIGNAL_GRAD_GRPO] == pytest.approx(float(grads[0].norm()), rel=1e-4)
    assert sig[N.signal_key("grad_norm", "rev")] == pytest.approx(float(grads[1].norm()), rel=1e-4)
    cos = float(grads[0] @ grads[1] / (grads[0].norm() * grads[1].norm()))
    assert sig[N.signal_key("cos", "rev")] == pytest.approx(cos, abs=1e-4)
    assert res.grad_norm == pytest.approx(float((grads[0] + grads[1]).norm()), rel=1e-4)
    opd = res.stats[1]
    assert 0.0 < opd[N.SIGNAL_PREFIX + "pos_frac"] < 1.0
    assert opd[N.SIGNAL_PREFIX + "adv_abs"] > 0


def test_clip_fraction_zero_with_one_minibatch_positive_with_several(tiny_cfg):
    """With one mini-batch the ratio is 1 by construction and nothing clips; after a large
    first step, the later mini-batches' ratios leave the clip range."""
    clip = {}
    for m in (1, 4):
        world = _world(tiny_cfg, "grpo.lr=0.05", f"grpo.minibatches={m}", "grpo.prompts_per_step=4")
        b = world.branches[0]
        res = optimize(world, b, [TermSpec(1.0, _batch(world, b))])
        clip[m] = res.stats[0][N.CLIP_FRAC]
        assert res.steps == m
    assert clip[1] == 0.0
    assert clip[4] > 0.0


def test_minibatches_must_hold_whole_prompt_groups(tiny_cfg):
    from copd.spec import ConfigError

    with pytest.raises(ConfigError, match="grpo.minibatches"):
        tiny_cfg("demo", "grpo.prompts_per_step=4", "grpo.minibatches=3")


def test_teacher_weighting(tiny_cfg):
    mean = _world(tiny_cfg, "opd.cross_weight=2")
    per = _world(tiny_cfg, "opd.cross_weight=2", "opd.teacher_weighting=per_teacher")
    assert opd_weights(mean.loss, 2) == 1.0 and opd_weights(mean.loss, 1) == 2.0
    assert opd_weights(per.loss, 2) == 2.0


def _exact_reverse_kl(world, b, batch, teacher_logits):
    T = world.cfg.sampling.temperature
    from copd.policy.rollout import completion_logits

    s = torch.log_softmax(completion_logits(b.view.module, batch).float() / T, -1)
    t = torch.log_softmax(teacher_logits / T, -1)
    return (s.exp() * (s - t)).sum(-1)


@pytest.mark.parametrize("kind", ["full_kl", "topk"])
def test_direct_reverse_kl_variants(tiny_cfg, kind):
    """The full-vocabulary variant's loss is the exact per-token reverse KL; top-k with k
    = the vocabulary is the same; both vanish when teacher = student."""
    from copd.policy.batch import TeacherScores
    from copd.policy.rollout import completion_logits

    V = None
    world = _world(tiny_cfg, f"opd.advantage={kind}", "opd.topk=100000", "grpo.loss_agg=token_mean")
    b = world.branches[0]
    batch = _batch(world, b)
    # a teacher: the base's own distribution shifted on a few tokens
    with torch.no_grad():
        logits = completion_logits(b.view.module, batch).float()
        V = logits.shape[-1]
        shifted = logits.clone()
        shifted[..., : V // 3] += 1.5
    teacher = torch.log_softmax(shifted / world.cfg.sampling.temperature, -1)
    tok = batch.completion_ids_B_T.long().unsqueeze(-1)
    scores = {"logp": teacher.gather(-1, tok).squeeze(-1)}
    if kind == "full_kl":
        scores["full"] = teacher
    else:
        scores["topk_vals"], scores["topk_idx"] = teacher.topk(V, dim=-1)
    term = opd_term(b, batch, TeacherScores(**scores), world.loss)
    m = batch.completion_mask_B_T
    kl = _exact_reverse_kl(world, b, batch, shifted)
    expected = float((kl * m).sum() / m.sum())
    assert term.loss.item() == pytest.approx(world.cfg.opd.beta * expected, rel=1e-4)
    assert term.stats[N.CLIP_FRAC] == 0.0
    # teacher = student: zero loss
    same = torch.log_softmax(logits / world.cfg.sampling.temperature, -1)
    scores2 = {"logp": same.gather(-1, tok).squeeze(-1)}
    if kind == "full_kl":
        scores2["full"] = same
    else:
        scores2["topk_vals"], scores2["topk_idx"] = same.topk(V, dim=-1)
    term2 = opd_term(b, batch, TeacherScores(**scores2), world.loss)
    assert term2.loss.item() == pytest.approx(0.0, abs=1e-5)


def test_score_opd_returns_what_each_variant_needs(tiny_cfg):
    for kind, keys in [("sampled", None), ("full_kl", {"logp", "full"}),
                       ("topk", {"logp", "topk_vals", "topk_idx"})]:  # fmt: skip
        world = _world(tiny_cfg, f"opd.advantage={kind}", "opd.topk=3")
        b = world.branches[0]
        batch = _batch(world, b)
        out = world.score_opd(b.view, batch)
        B, T = batch.completion_ids_B_T.shape
        assert out.logp.shape == (B, T)
        assert set(out.parts()) == (keys or {"logp"})
        torch.testing.assert_close(out.logp, world.score(b.view, batch))
        if kind == "topk":
            assert out.topk_idx.shape == (B, T, 3)


def test_copd_run_logs_signal_balance_at_the_diagnostics_cadence(tiny_cfg, tmp_path):
    from copd.train.algorithms import run

    class Rec(NullLogger):
        def __init__(self):
            self.rows = []

        def log_metrics(self, metrics, *, step, cycle=0, phase=""):
            self.rows.append((step, phase, metrics))

    cfg = tiny_cfg("demo", "schedule.diag_every=1", "opd.advantage=full_kl")
    rec = Rec()
    world = World.build(cfg, rec)
    run(world, tmp_path)
    train_rows = [
        m for _, phase, m in rec.rows if phase == "opd" and N.branch("add", N.GRAD_NORM) in m
    ]  # (the diagnostics log their own rows)
    opd_rows = train_rows
    assert opd_rows
    for m in opd_rows:
        for b, peer in (("add", "rev"), ("rev", "add")):
            for kind in ("grad_norm", "cos", "adv_abs", "pos_frac", "log_ratio"):
                assert N.branch(b, N.signal_key(kind, peer)) in m
            assert N.branch(b, N.SIGNAL_GRAD_GRPO) in m


def test_mixed_steps_control_and_pure_static_opd(tiny_cfg):
    from copd.train.algorithms.baselines import budget_for

    mixed = tiny_cfg("mixed")
    control = tiny_cfg("mixed-steps")
    T = mixed.schedule.total_steps()
    assert budget_for(mixed).total == 2 * T
    assert budget_for(control).total == T  # one CoPD branch's optimizer steps
    assert tiny_cfg("static_opd").opd.native_rl is False  # the paper's pure one-way OPD
    assert tiny_cfg("static_opd+rl").opd.native_rl is True
    assert "pure OPD" in budget_for(tiny_cfg("static_opd")).rule


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "dr_grpo"])
def test_micro_batches_accumulate_the_same_update(tiny_cfg, agg):
    """grpo.micro_batch_rows: the rows go through the model a slice at a time, yet the
    gradient of the step, the losses and the signal balance equal one pass's."""
    worlds = {
        rows: _world(tiny_cfg, f"grpo.loss_agg={agg}", f"grpo.micro_batch_rows={rows}")
        for rows in (0, 4)
    }
    results, params = {}, {}
    for rows, world in worlds.items():
        b = world.branches[0]
        native = _batch(world, b)
        cross = _batch(world, b, seed=1)
        teacher = _student_logp(world, b, cross) + torch.linspace(-0.5, 0.5, cross.size)[:, None]
        specs = [TermSpec(1.0, native), TermSpec(0.5, cross, "rev", teacher)]
        results[rows] = optimize(world, b, specs, measure_signal=True)
        params[rows] = [p.grad.detach().clone() for p in b.params]  # the (clipped) gradient
    one, acc = results[0], results[4]
    assert acc.grad_norm == pytest.approx(one.grad_norm, rel=1e-4)
    scale = max(float(g.abs().max()) for g in params[0])
    for a, c in zip(params[0], params[4], strict=True):
        torch.testing.assert_close(a, c, rtol=1e-3, atol=1e-5 * scale)
    assert acc.stats[0][N.PG_LOSS] == pytest.approx(one.stats[0][N.PG_LOSS], rel=1e-4, abs=1e-7)
    assert acc.stats[1][N.OPD_LOSS] == pytest.approx(one.stats[1][N.OPD_LOSS], rel=1e-4, abs=1e-6)
    for k in (N.SIGNAL_GRAD_GRPO, N.signal_key("grad_norm", "rev"), N.signal_key("cos", "rev")):
        assert acc.signal[k] == pytest.approx(one.signal[k], rel=1e-3, abs=1e-5)


def test_clip_per_term_bounds_each_term_and_keeps_the_grpo_share(tiny_cfg):
    """grpo.clip_per_term: a huge OPD term is clipped to grad_clip on its own, so the GRPO
    term's gradient enters the step whole (with one global clip it would be scaled down)."""
    world = _world(tiny_cfg, "grpo.grad_clip=1.0", "grpo.clip_per_term=true")
    b = world.branches[0]
    native, cross = _batch(world, b), _batch(world, b, seed=1)
    teacher = _student_logp(world, b, cross) + 5.0 * torch.randn(cross.completion_ids_B_T.shape)
    # the GRPO term's own gradient, clipped alone
    b.optimizer.zero_grad(set_to_none=True)
    grpo_term(b, native, world.loss).loss.backward()
    g = torch.cat([p.grad.flatten() for p in b.params])
    g = g * min(1.0, 1.0 / float(g.norm()))
    res = optimize(
        world, b, [TermSpec(1.0, native), TermSpec(10.0, cross, "rev", teacher)],
        measure_signal=True,
    )  # fmt: skip
    assert res.signal[N.signal_key("grad_norm", "rev")] > 1.0  # measured before clipping
    total = torch.cat([p.grad.flatten() for p in b.params])
    opd = total - g  # what the OPD term contributed
    assert float(opd.norm()) == pytest.approx(1.0, rel=1e-3)  # clipped to grad_clip alone
    assert res.grad_norm <= 2.0 + 1e-4


def test_movement_along_each_terms_direction_is_what_the_weights_did(tiny_cfg):
    """signal/move/<term>: -delta . g / |g| of the step actually taken (after the clip and
    Adam), against each term's gradient from a separate, identical world; Adam's first
    step is lr * sign(g), so the GRPO term alone moves lr * |g|_1 / |g|_2 along itself,
    whatever the clip."""
    lr = 1e-3
    worlds = [_world(tiny_cfg, "grpo.grad_clip=0.01") for _ in range(2)]
    w, ref = worlds
    b = w.branches[0]
    native = _batch(w, b)
    before = torch.cat([p.detach().flatten().clone() for p in b.params])
    res = optimize(w, b, [TermSpec(1.0, native)], measure_signal=True)
    delta = torch.cat([p.detach().flatten() for p in b.params]) - before
    rb = ref.branches[0]
    rb.optimizer.zero_grad(set_to_none=True)
    grpo_term(rb, native, ref.loss).loss.backward()
    g = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in rb.params]
    )
    move = res.signal[N.signal_key("move")]
    assert move == pytest.approx(float(-(delta @ g) / g.norm()), rel=1e-3)
    assert move == pytest.approx(lr * float(g.abs().sum() / g.norm()), rel=1e-2)
    assert res.signal[N.SIGNAL_PREFIX + "move/all"] == pytest.approx(float(delta.norm()), rel=1e-4)


def test_solo_move_is_a_grpo_only_step_from_the_same_state_and_is_undone(tiny_cfg):
    """signal/move_solo/grpo of a combined step equals move/grpo of a GRPO-only step taken
    from the same state by an identical world, and measuring it leaves the combined step
    (weights and Adam state) exactly as without the measurement."""
    worlds = [_world(tiny_cfg, "grpo.grad_clip=0.5") for _ in range(3)]
    out = []
    for i, w in enumerate(worlds):
        b = w.branches[0]
        native, cross = _batch(w, b), _batch(w, b, seed=1)
        optimize(w, b, [TermSpec(1.0, _batch(w, b, seed=2))])  # Adam has moments now
        teacher = _student_logp(w, b, cross) + torch.linspace(-1.0, 1.0, cross.size)[:, None]
        specs = [TermSpec(1.0, native), TermSpec(1.0, cross, "rev", teacher)]
        out.append(optimize(w, b, specs[:1] if i == 1 else specs, measure_signal=i != 2))
    combined, solo, plain = out
    move_solo = combined.signal[N.signal_key("move_solo")]
    assert move_solo == pytest.approx(solo.signal[N.signal_key("move")], rel=1e-4)
    assert N.signal_key("move_solo") not in solo.signal  # one term: nothing to compare
    for a, c in zip(worlds[0].branches[0].params, worlds[2].branches[0].params, strict=True):
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    s0, s2 = (w.branches[0].optimizer.state_dict()["state"] for w in (worlds[0], worlds[2]))
    for k in s0:
        torch.testing.assert_close(s0[k]["exp_avg_sq"], s2[k]["exp_avg_sq"], rtol=0, atol=0)


def test_reference_signals_at_matched_rows_and_between_two_halves(tiny_cfg):
    """grad_norm_matched/grpo is the GRPO gradient norm over as many native rows as the
    cross batch has (here 2 of 4 prompt groups), cos_halves/grpo the cosine of the two
    halves' GRPO gradients, cos_peer/grpo the cosine of the native GRPO gradient with a GRPO
    gradient on the cross batch (the peer's prompts), cos_peer_rl/rev the cosine of the OPD
    term's gradient with that same peer-prompt GRPO gradient, each equal to an independent
    computation; the step itself is the same as without them."""
    worlds = [_world(tiny_cfg, "grpo.grad_clip=1e9") for _ in range(3)]
    res = []
    for i, w in enumerate(worlds[:2]):
        b = w.branches[0]
        native, cross = _batch(w, b), _batch(w, b, prompts=2, seed=1)
        cross.rewards_B = torch.tensor([1, 0, 1, 1, 0, 0, 0, 1.0])  # the peer's verifier
        teacher = _student_logp(w, b, cross) + torch.linspace(-1.0, 1.0, cross.size)[:, None]
        specs = [TermSpec(1.0, native), TermSpec(1.0, cross, "rev", teacher)]
        res.append((optimize(w, b, specs, measure_signal=i == 0), native, cross, teacher))
    (measured, native, cross, teacher), (plain, _, _, _) = res
    ref = worlds[2].branches[0]

    def grad(rows):
        ref.optimizer.zero_grad(set_to_none=True)
        grpo_term(ref, native.subset(rows), worlds[2].loss).loss.backward()
        return torch.cat([p.grad.flatten() for p in ref.params])

    g_matched = grad(list(range(8)))  # 2 groups of 4 = the cross batch's 8 rows
    sig = measured.signal
    assert sig[N.signal_key("grad_norm_matched")] == pytest.approx(
        float(g_matched.norm()), rel=1e-4
    )
    a, b = grad(list(range(8))), grad(list(range(8, 16)))
    cos = float(a @ b / (a.norm() * b.norm()))
    assert sig[N.signal_key("cos_halves")] == pytest.approx(cos, rel=1e-3, abs=1e-5)
    # own domain against the peer's prompts: the whole native batch's GRPO gradient and a
    # GRPO gradient on the cross batch's rows with their verifier rewards
    g_own = grad(list(range(16)))
    ref.optimizer.zero_grad(set_to_none=True)
    grpo_term(ref, cross, worlds[2].loss).loss.backward()
    g_peer = torch.cat([p.grad.flatten() for p in ref.params])
    cos_peer = float(g_own @ g_peer / (g_own.norm() * g_peer.norm()))
    assert sig[N.signal_key("cos_peer")] == pytest.approx(cos_peer, rel=1e-3, abs=1e-5)
    # the OPD term's gradient against that GRPO gradient on the teacher's own cross batch
    # (issue 39's instrument): does distillation point where the peer's RL would
    ref.optimizer.zero_grad(set_to_none=True)
    opd_term(ref, cross, teacher, worlds[2].loss).loss.backward()
    g_opd = torch.cat([p.grad.flatten() for p in ref.params])
    cos_rl = float(g_opd @ g_peer / (g_opd.norm() * g_peer.norm()))
    assert sig[N.signal_key("cos_peer_rl", "rev")] == pytest.approx(cos_rl, rel=1e-3, abs=1e-5)
    for p, q in zip(worlds[0].branches[0].params, worlds[1].branches[0].params, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
