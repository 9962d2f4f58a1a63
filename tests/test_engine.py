"""Smoke and mechanics tests of the CoPD engine on the tiny test model."""

import torch

from copd.policy.decoding import Decoding
from copd.policy.rollout import completion_logprobs, sample_rollouts
from copd.policy.sampler import sample_tokens
from copd.train import checkpoint
from copd.train.algorithms.copd import phase1_step, phase2_step, train
from copd.train.logger import NullLogger
from copd.train.update import TermSpec, optimize
from copd.train.world import World


class Recorder(NullLogger):
    def __init__(self):
        self.metrics, self.evals, self.events, self.samples = [], [], [], []

    def log_samples(self, rows, *, step, cycle=0, phase=""):
        self.samples += [(step, phase, r) for r in rows]

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        self.metrics.append((step, cycle, phase, dict(metrics)))

    def log_eval(self, model, benchmark, score, n, *, step):
        self.evals.append((step, model, benchmark, score))

    def keys(self):
        return {k for *_, m in self.metrics for k in m}


def test_copd_run_changes_every_parameter_and_logs_diagnostics(tiny_cfg, tmp_path):
    cfg = tiny_cfg("demo")
    rec = Recorder()
    world = World.build(cfg, rec)
    before = {b.name: [p.detach().clone() for p in b.params] for b in world.branches}
    scores = train(world, tmp_path)
    for b in world.branches:
        for p0, p in zip(before[b.name], b.params, strict=True):
            assert not torch.equal(p0, p.detach()), f"a parameter of branch {b.name} did not change"
    keys = rec.keys()
    for name in ("add", "rev"):
        assert f"branch/{name}/reward/mean" in keys
        assert f"base/{name}/overlap_top10" in keys
    assert {
        "pair/add~rev/overlap_top10",
        "pair/rev~add/overlap_top10",
        "pair/add~rev/sym_kl",
    } <= keys
    assert "branch/add/opd/adv_mean/rev" in keys and "branch/rev/opd/adv_mean/add" in keys
    phases = {phase for _, _, phase, m in rec.metrics if "branch/add/reward/mean" in m}
    assert phases == {"rl", "opd"}
    assert set(scores) == {"add", "rev", "merged"}
    assert all(0.0 <= s <= 1.0 for row in scores.values() for s in row.values())
    assert (tmp_path / "results.json").exists()
    assert (tmp_path / "merged" / "config.json").exists()
    models = {m for _, m, _, _ in rec.evals}
    assert models == {"add", "rev", "merged"}
    recorded = [(step, m, bench) for step, m, bench, _ in rec.evals]
    assert len(recorded) == len(set(recorded)), "one evaluation per (model, benchmark, step)"


def test_overlap_of_identical_branches_is_one(tiny_cfg):
    rec = Recorder()
    world = World.build(tiny_cfg("demo"), rec)
    from copd.train.evaluate import measure_overlap

    m = measure_overlap(world, cycle=0, phase="rl")
    assert m["pair/add~rev/overlap_top10"] == 1.0
    assert m["base/add/overlap_top1"] == 1.0
    assert abs(m["pair/add~rev/sym_kl"]) < 1e-6


def test_sampler_matches_hf_greedy_generate(tiny_cfg):
    world = World.build(tiny_cfg("demo"), NullLogger())
    model, tok = world.base.module, world.tokenizer
    prompts = ["3+4=", "abcd>", "12+1="]
    enc = tok(prompts, return_tensors="pt", padding=True)
    ours = sample_tokens(
        model,
        enc["input_ids"],
        enc["attention_mask"],
        Decoding(max_new_tokens=5, greedy=True),
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
    )
    ref = model.generate(
        **enc,
        max_new_tokens=5,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )[:, enc["input_ids"].shape[1] :]
    from copd.math.losses import completion_mask

    mo = completion_mask(ours, tok.eos_token_id).bool()
    mr = completion_mask(ref, tok.eos_token_id).bool()
    for i in range(len(prompts)):
        assert ours[i][mo[i]].tolist() == ref[i][mr[i]].tolist()


def test_grpo_step_raises_logprob_of_rewarded_completion(tiny_cfg):
    cfg = tiny_cfg("demo", "grpo.lr=1e-4", "grpo.group_size=4")
    world = World.build(cfg, NullLogger())
    b = world.branches[0]
    ex = world.prompts(b.task, 1, b.name)
    batch = sample_rollouts(
        b.view.module,
        world.tokenizer,
        ex,
        Decoding(temperature=1.0, max_new_tokens=4),
        group_size=4,
        generator=torch.Generator().manual_seed(0),
    )
    batch.rewards_B = torch.tensor([1.0, 0.0, 0.0, 0.0])
    if len({tuple(r) for r in batch.completion_ids_B_T.tolist()}) < 2:
        batch.completion_ids_B_T[1:, 0] = (batch.completion_ids_B_T[0, 0] + 1) % 10
    with torch.no_grad():
        lp0 = (completion_logprobs(b.view.module, batch, 1.0) * batch.completion_mask_B_T).sum(1)
    optimize(world, b, [TermSpec(1.0, batch)])
    with torch.no_grad():
        lp1 = (completion_logprobs(b.view.module, batch, 1.0) * batch.completion_mask_B_T).sum(1)
    assert lp1[0] > lp0[0]


def test_phase_steps_log_per_branch_metrics(tiny_cfg):
    world = World.build(tiny_cfg("copd-3", "topology.kind=hub"), NullLogger())
    m1 = phase1_step(world)
    m2 = phase2_step(world)
    assert {"branch/sort/reward/mean", "branch/add/grad_norm"} <= set(m1)
    # hub-and-spoke: the hub (add) learns from both spokes, spokes only from the hub
    assert {"branch/add/opd/adv_mean/rev", "branch/add/opd/adv_mean/sort"} <= set(m2)
    assert "branch/rev/opd/adv_mean/add" in m2 and "branch/rev/opd/adv_mean/sort" not in m2


def test_resume_gives_identical_weights(tiny_cfg, tmp_path):
    cfg = tiny_cfg("demo", "schedule.cycles=2", "opd.teacher=snapshot")
    full = World.build(cfg, NullLogger())
    train(full, tmp_path / "full")

    part = World.build(cfg, NullLogger())
    part.state.stop_requested = True  # stops (with a checkpoint) after its first step
    try:
        train(part, tmp_path / "part")
    except Exception as e:  # TrainingCancelled
        assert "stopped at step" in str(e)
    resumed = World.build(cfg, NullLogger())
    checkpoint.restore(resumed, checkpoint.latest(tmp_path / "part"))
    assert resumed.state.step == 1
    train(resumed, tmp_path / "part")
    for a, b in zip(full.branches, resumed.branches, strict=True):
        for pa, pb in zip(a.params, b.params, strict=True):
            assert torch.equal(pa, pb)


def test_device_generator_keeps_the_cpu_stream_on_cpu():
    from copd.policy.sampler import device_generator

    gen = torch.Generator().manual_seed(3)
    assert device_generator(gen, "cpu") is gen
    assert device_generator(None, "cpu") is None


def test_auto_attention_is_eager_only_for_short_contexts_on_the_cpu(tiny_cfg):
    from transformers import AutoConfig, AutoModelForCausalLM

    from copd.policy.models import EAGER_MAX_CONTEXT, set_attention

    world = World.build(tiny_cfg())  # the demo-sized test model: 64 positions, on the CPU
    assert world.branches[0].view.module.config._attn_implementation == "eager"
    assert world.base.module.config._attn_implementation == "eager"
    long = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(
            "qwen2",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=40,
            max_position_embeddings=EAGER_MAX_CONTEXT * 8,
        )  # fmt: skip
    )
    assert set_attention(long, "auto", "cpu") == "sdpa"  # eager would hold [B, H, L, L]
    assert long.config._attn_implementation == "sdpa"
    assert set_attention(long, "eager", "cpu") == "eager"  # an explicit choice is kept
    assert long.config._attn_implementation == "eager"


def test_each_distinct_prompt_is_scored_once_and_n_is_reported(tiny_cfg):
    """add at difficulty 1 has ~12 validation inputs, cycled to fill eval.n_prompts=64: the
    score is the mean over the distinct prompts (a repeat is not weighted again), and the
    logged n is their number."""
    import pytest

    from copd.train.evaluate import eval_counts, evaluate

    class Evals(NullLogger):
        def __init__(self):
            self.rows = []

        def log_eval(self, model, benchmark, score, n, *, step):
            self.rows.append((model, benchmark, score, n))

    log = Evals()
    world = World.build(tiny_cfg("demo", "eval.n_prompts=64"), log)
    task = world.tasks["add"]
    cycled = task.val_examples(64)
    prompts = {e.prompt for e in cycled}
    assert len(prompts) < 64  # the split is smaller than the request
    counts = eval_counts(world)
    assert counts["add@val"] == len(prompts) and counts["add"] <= 64
    b = world.branches[0]
    scores = evaluate(world, {"add": b.view}, step=0, final=True)["add"]
    batch = sample_rollouts(
        b.view.module, world.tokenizer, cycled, world.decoding.as_greedy(), group_size=1,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    right = {e.prompt: task.reward(e, t) for e, t in zip(batch.examples, batch.texts, strict=True)}
    assert scores["add@val"] == pytest.approx(sum(right.values()) / len(prompts))
    logged = {bench: n for m, bench, _, n in log.rows}
    assert logged["add@val"] == len(prompts) and logged["overall@val"] == 0
