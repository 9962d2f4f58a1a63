"""Samples: what the branches generate, recorded with per-token log-probs under every peer.

The stored numbers are checked against an independent forward pass of both policies on the
prompt + completion ids; the cadence, the cross (OPD) rows and the JSONL copy on short
tiny-model runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from copd.math.diagnostics import token_agreement
from copd.policy.chat import render_prompt
from copd.train import samples
from copd.train.algorithms import run
from copd.train.evaluate import measure_overlap, probe_examples
from copd.train.logger import JsonlLogger, MultiLogger, NullLogger
from copd.train.world import World


class SampleRecorder(NullLogger):
    def __init__(self):
        self.rows: list[tuple[int, str, dict]] = []

    def log_samples(self, rows, *, step, cycle=0, phase=""):
        self.rows += [(step, phase, r) for r in rows]


def test_token_agreement_by_hand():
    s = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 3.0, 0.0]])
    t = torch.tensor([[0.0, 2.0, 1.0, -5.0], [1.0, 0.0, 0.0, 4.0]])
    ids = torch.tensor([0, 2])
    out = token_agreement(s, t, ids, k=2)
    assert torch.allclose(out["logp_student"], torch.log_softmax(s, -1)[[0, 1], ids])
    assert torch.allclose(out["logp_teacher"], torch.log_softmax(t, -1)[[0, 1], ids])
    # teacher top-2: row 0 {1, 2} (token 0 outside), row 1 {3, 0} (token 2 outside)
    assert out["in_topk"].tolist() == [False, False]
    # student top-2: row 0 {0, 1} vs {1, 2} -> 1/2; row 1 {2, x} vs {3, 0} -> 0 or 1/2
    assert out["overlap"][0].item() == 0.5
    with pytest.raises(ValueError, match="token_ids_N"):
        token_agreement(s, t, torch.tensor([0]), k=2)


def _perturb(world: World, name: str, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in world.branch(name).params:
            p.add_(scale * torch.randn(p.shape, generator=g))


def _forward_logp(view, prompt_ids, completion_ids, temperature):
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad(), view.use() as model:  # a LoRA branch: its adapter switched on
        logits = model(input_ids=ids).logits[0].float() / temperature
    lp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], -1)
    return lp.gather(-1, torch.tensor(completion_ids).unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_stored_log_ratios_equal_an_independent_forward_pass(kind, tiny_cfg):
    """Two branches made different on purpose; every recorded token's log-prob under the
    sampler and under its peer equals a plain forward pass of each policy."""
    cfg = tiny_cfg(
        "demo", "diagnostics.samples_every=1", "diagnostics.samples_prompts=2",
        f"model.branch_kind={kind}",
    )  # fmt: skip
    rec = SampleRecorder()
    world = World.build(cfg, rec)
    a, b = [br.name for br in world.branches]
    _perturb(world, b)
    measure_overlap(world, cycle=0, phase="rl", step=0)
    rows = [r for _, _, r in rec.rows]
    assert {r["branch"] for r in rows} == {a, b}
    assert len(rows) == 2 * 2 * 2  # branches x domains x samples_prompts
    tok = world.tokenizer
    T = cfg.sampling.temperature
    models = {n: world.branch(n).view for n in (a, b)}
    checked = 0
    for r in rows:
        peer = b if r["branch"] == a else a
        assert set(r["peers"]) == {peer, samples.BASE_PEER}
        assert r["tokens"], "an empty completion recorded"
        prompt_ids = tok(render_prompt(tok, _probe_example(world, r)))["input_ids"]
        comp_ids = tok.convert_tokens_to_ids(r["tokens"])  # char-level: a token is its text
        own = _forward_logp(models[r["branch"]], prompt_ids, comp_ids, T)
        other = _forward_logp(models[peer], prompt_ids, comp_ids, T)
        assert torch.allclose(torch.tensor(r["logp"]), own, atol=2e-4), r
        assert torch.allclose(torch.tensor(r["peers"][peer]["logp"]), other, atol=2e-4)
        gap = (other - own).abs().mean().item()
        assert r["disagreement"] == pytest.approx(gap, abs=1e-3)
        assert r["reward"] in (0.0, 1.0) and r["correct"] == (r["reward"] >= 1.0)
        checked += 1
    assert checked == len(rows)
    assert max(r["disagreement"] for r in rows) > 0.05  # the perturbation shows


def _probe_example(world, row):
    probe = [e for e in probe_examples(world) if e.domain == row["domain"]]
    ex = probe[row["prompt_index"]]
    assert ex.prompt == row["prompt"]
    return ex


def test_demo_run_logs_probe_and_cross_samples_at_the_cadence(tiny_cfg, tmp_path):
    # tiny schedule: 2 cycles x (2 RL + 1 OPD) = 6 steps; samples every 3 steps
    cfg = tiny_cfg("demo", "diagnostics.samples_every=3", "schedule.diag_every=1")
    rec = SampleRecorder()
    world = World.build(cfg, MultiLogger(rec, JsonlLogger(tmp_path / "metrics.jsonl")))
    run(world, tmp_path)
    probe_steps = sorted({s for s, _, r in rec.rows if r["kind"] == "probe"})
    assert probe_steps == [0, 3, 6]
    names = {b.name for b in world.branches}
    for s in probe_steps:
        assert {r["branch"] for st, _, r in rec.rows if st == s and r["kind"] == "probe"} == names
    cross = [(s, ph, r) for s, ph, r in rec.rows if r["kind"] == "cross"]
    # the OPD steps are 3 and 6: both due
    assert sorted({s for s, _, _ in cross}) == [3, 6] and {ph for _, ph, _ in cross} == {"opd"}
    for _, _, r in cross:
        (teacher,) = r["peers"]
        assert teacher in names and teacher != r["branch"]
        assert r["peers"][teacher]["in_topk"] is None
        assert len(r["logp"]) == len(r["tokens"]) == len(r["peers"][teacher]["logp"])
        # the branch sampled its teacher's prompts: the teacher's domain
        assert r["domain"] == world.branch(teacher).task.name
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    jsonl = [x for x in lines if x["type"] == "sample"]
    assert len(jsonl) == len(rec.rows)
    assert all(not isinstance(x["disagreement"], float) or math.isfinite(x["disagreement"])
               for x in jsonl)  # fmt: skip


@pytest.mark.parametrize("preset", ["mixed", "expert"])
def test_baselines_log_samples(preset, tiny_cfg, tmp_path):
    """Mixed GRPO has one policy: its samples carry the base as the only peer."""
    cfg = tiny_cfg(preset, "diagnostics.samples_every=100")
    rec = SampleRecorder()
    world = World.build(cfg, rec)
    run(world, tmp_path)
    rows = [r for s, _, r in rec.rows if s == 0]
    assert rows and all(r["kind"] == "probe" for r in rows)
    if preset == "mixed":
        assert {tuple(r["peers"]) for r in rows} == {(samples.BASE_PEER,)}
    else:
        assert all(len(r["peers"]) == 2 for r in rows)


def test_samples_off(tiny_cfg, tmp_path):
    cfg = tiny_cfg("demo", "diagnostics.samples_every=0")
    rec = SampleRecorder()
    run(World.build(cfg, rec), tmp_path)
    assert rec.rows == []


@pytest.mark.parametrize("preset", ["static_opd", "mopd"])
def test_distillation_baselines_record_their_opd_batches(preset, tiny_cfg, tmp_path):
    """Static OPD and MOPD record the batches their student distils on, each token with
    the teacher's log-prob (MOPD: the expert of the prompt's domain)."""
    cfg = tiny_cfg(preset, "diagnostics.samples_every=2")  # distillation: steps 7-8 (-10)
    rec = SampleRecorder()
    world = World.build(cfg, rec)
    run(world, tmp_path)
    cross = [r for _, _, r in rec.rows if r["kind"] == "cross"]
    assert cross, "no OPD batch recorded"
    experts = {b.name: b.task.name for b in world.branches}
    for r in cross:
        (teacher,) = r["peers"]
        assert len(r["peers"][teacher]["logp"]) == len(r["tokens"]) == len(r["logp"])
        if preset == "mopd":
            assert experts.get(teacher) == r["domain"]  # routed to its domain's expert
