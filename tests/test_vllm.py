"""The vLLM rollout engine (copd/policy/rollout_vllm.py): config, fallback, layout, seeds, weights.

CPU tests run everywhere: `sampling.engine` validation; on a machine without vLLM or CUDA
the engine falls back to the built-in decoder with one warning event and the same
rollouts; engine outputs (token-id lists) become the built-in decoder's RolloutBatch
layout; request seeds come deterministically from the branch's generator; the merged
weights a LoRA branch pushes equal peft's merge_and_unload. GPU tests (marker `gpu`) run a
real vLLM engine on the tiny model and skip without CUDA or vLLM.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import random

import pytest
import torch

from copd.policy.decoding import Decoding
from copd.policy.rollout import sample_rollouts
from copd.policy.rollout_vllm import (
    VLLMSampler,
    batch_from_token_ids,
    branch_weights,
    buckets,
    completion_tensor,
    encode_text_prompts,
    lora_merged_weights,
    request_seeds,
)
from copd.spec import ConfigError, RunConfig, apply_overrides
from copd.train.logger import NullLogger
from copd.train.workers.base import Ops
from copd.train.workers.local import LocalGroup
from copd.train.world import World

HAS_VLLM = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


class Events(NullLogger):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def log_event(self, message, *, level="info", step=None):
        self.events.append((level, message))


# ---------------------------------------------------------------------- config
def test_sampling_engine_is_validated_with_the_choices_named():
    with pytest.raises(ConfigError, match=r"sampling.engine.*'hf', 'vllm'"):
        apply_overrides(RunConfig(), ["sampling.engine=sglang"])
    bad = RunConfig()
    bad = dataclasses.replace(bad, sampling=dataclasses.replace(bad.sampling, engine="sglang"))
    with pytest.raises(ConfigError, match=r"^sampling.engine: use one of \('hf', 'vllm'\)"):
        bad.validate()
    with pytest.raises(ConfigError, match="sampling.vllm_gpu_memory_utilization"):
        apply_overrides(RunConfig(), ["sampling.vllm_gpu_memory_utilization=1.5"]).validate()
    cfg = apply_overrides(RunConfig(), ["sampling.engine=vllm"]).validate()
    assert cfg.sampling.engine == "vllm" and RunConfig().sampling.engine == "hf"
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


# ---------------------------------------------------------------------- fallback
@pytest.mark.skipif(HAS_VLLM, reason="vLLM and CUDA are here: no fallback to check")
def test_vllm_engine_without_vllm_samples_like_hf_and_warns_once(tiny_cfg):
    hf_world = World.build(tiny_cfg("demo"), Events())
    log = Events()
    vllm_world = World.build(tiny_cfg("demo", "sampling.engine=vllm"), log)
    hf, vl = LocalGroup(hf_world), LocalGroup(vllm_world)
    warnings = [m for lvl, m in log.events if lvl == "warning"]
    assert len(warnings) == 1  # one warning for the group, not one per branch worker
    # the workers own their engines: the world holds the engines' settings only
    assert not [v for v in vars(vllm_world).values() if isinstance(v, VLLMSampler)]
    assert vllm_world.vllm is not None and hf_world.vllm is None
    reason = "the vllm package is not installed" if not importlib.util.find_spec("vllm") else ""
    assert warnings[0].startswith("vLLM not available: " + reason)
    assert warnings[0].endswith("; sampling with the built-in decoder")
    assert vl.workers["add"].sampling_engine() == warnings[0]
    assert hf.workers["add"].sampling_engine() == "hf" and not hf_world.logger.events

    task = hf_world.tasks["add"]
    examples = task.sample(random.Random(0), 3)
    for _ in range(2):  # the generator advances identically
        a = hf.each(Ops.rollout, {"add": (examples, 4)})["add"]
        b = vl.each(Ops.rollout, {"add": (examples, 4)})["add"]
        assert torch.equal(a.completion_ids_B_T, b.completion_ids_B_T)
        assert a.texts == b.texts and torch.equal(a.rewards_B, b.rewards_B)
    sa = hf.rl_steps({"rev": (examples, 4, False)})["rev"]
    sb = vl.rl_steps({"rev": (examples, 4, False)})["rev"]
    assert sa == sb


# ---------------------------------------------------------------------- pure conversion
def test_completion_tensor_cuts_after_eos_and_pads():
    eos, pad = 2, 0
    out = completion_tensor([[5, 2, 7], [4], [6, 6, 6, 6]], eos, pad, max_new_tokens=3)
    assert out.tolist() == [[5, 2, 0], [4, 0, 0], [6, 6, 6]]
    # A row that stopped on eos without returning it gets its eos back (but not one that
    # ran to max_new_tokens).
    out = completion_tensor([[4], [6, 6]], eos, pad, 2, stopped=[True, True])
    assert out.tolist() == [[4, 2], [6, 6]]
    assert completion_tensor([[3, 2]], eos, pad, 4).shape == (1, 2)  # T = longest row


def test_engine_token_lists_give_the_builtin_decoders_batch(tiny_cfg):
    """Sample with the built-in decoder, hand its tokens over as an engine would (per
    prompt, per sample, eos included), and rebuild: every field of the batch is equal."""
    world = World.build(tiny_cfg("demo"))
    tok = world.tokenizer
    examples = world.tasks["add"].eval_examples(4) + world.tasks["rev"].eval_examples(2)
    G = 3
    with world.branches[0].view.use() as m:
        ref = sample_rollouts(
            m, tok, examples, Decoding(temperature=1.0, max_new_tokens=5), group_size=G,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
    ids, mask = encode_text_prompts(tok, examples, G)
    assert torch.equal(ids, ref.prompt_ids_B_P) and torch.equal(mask, ref.prompt_mask_B_P)
    rows = [
        [int(t) for t, keep in zip(r, mr, strict=True) if keep]
        for r, mr in zip(ref.completion_ids_B_T, ref.completion_mask_B_T, strict=True)
    ]
    assert any(tok.eos_token_id in r for r in rows)  # some rows ended early
    per_prompt = [rows[i * G : (i + 1) * G] for i in range(len(examples))]
    got = batch_from_token_ids(tok, examples, G, ids, mask, per_prompt, 5)
    assert torch.equal(got.completion_ids_B_T, ref.completion_ids_B_T)
    assert torch.equal(got.completion_mask_B_T, ref.completion_mask_B_T)
    assert got.texts == ref.texts and got.examples == ref.examples
    assert got.group_size == G and got.rewards_B is None
    with pytest.raises(ValueError, match="6 prompts x 3 samples"):
        batch_from_token_ids(tok, examples, G, ids, mask, per_prompt[:-1], 5)


# ---------------------------------------------------------------------- seeds
def test_request_seeds_come_from_the_branch_generator():
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a, b = request_seeds(g1, 5, 4), request_seeds(g2, 5, 4)
    assert a == b  # same stream, same seeds
    children = {s + j for s in a for j in range(4)}  # vLLM seeds sample j with seed + j
    assert len(children) == 20
    state = g1.get_state()  # a checkpoint between rollouts
    nxt = request_seeds(g1, 5, 4)
    assert nxt != a
    assert request_seeds(torch.Generator().set_state(state), 5, 4) == nxt  # resumable
    # Exactly one draw per rollout, whatever the batch size.
    g3 = torch.Generator().manual_seed(7)
    request_seeds(g3, 50, 8)
    assert torch.equal(g3.get_state(), state)


# ---------------------------------------------------------------------- weights
def test_lora_merged_weights_equal_peft_merge_and_unload(tiny_cfg):
    world = World.build(tiny_cfg("demo", "model.branch_kind=lora", "model.lora.r=4"))
    b = next(x for x in world.branches if x.name == "rev")
    peft_model = b.view.module
    torch.manual_seed(0)
    with torch.no_grad():  # every adapter away from its zero start, each differently
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.add_(0.05 * torch.randn_like(p))
    before = {k: v.clone() for k, v in peft_model.state_dict().items()}

    merged = dict(lora_merged_weights(peft_model, "rev"))

    ref_model = copy.deepcopy(peft_model)
    ref_model.set_adapter("rev")
    ref = ref_model.merge_and_unload(adapter_names=["rev"]).state_dict()
    assert set(merged) == set(ref)
    for k in ref:
        assert torch.allclose(merged[k], ref[k], atol=1e-6), k
    # Adapted layers carry the delta; the rest are the base's own tensors.
    q = "model.layers.0.self_attn.q_proj.weight"
    base_q = before["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"]
    assert not torch.allclose(merged[q], base_q)
    norm = "model.norm.weight"
    assert torch.equal(merged[norm], before[f"base_model.model.{norm}"])
    # The trainer's module is untouched: same tensors, no layer merged, same adapter live.
    after = peft_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(getattr(m, "merged", False) for m in peft_model.modules())
    # The other branch's merge differs (its own adapter), and matches through the branch API.
    add = dict(branch_weights(next(x for x in world.branches if x.name == "add")))
    assert any(not torch.equal(add[k], merged[k]) for k in merged)


def test_full_branch_weights_are_its_state_dict_and_buckets_bound_size(tiny_cfg):
    world = World.build(tiny_cfg("demo"))
    b = world.branches[0]
    weights = list(branch_weights(b))
    sd = b.view.module.state_dict()
    assert [k for k, _ in weights] == list(sd)
    assert all(torch.equal(t, sd[k]) for k, t in weights)
    sizes = [sum(t.numel() * t.element_size() for _, t in bk) for bk in buckets(weights, 2**14)]
    big = max(t.numel() * t.element_size() for _, t in weights)
    assert len(sizes) > 1 and all(s <= max(2**14, big) for s in sizes)
    assert sum(len(bk) for bk in buckets(weights, 2**14)) == len(weights)


# ---------------------------------------------------------------------- GPU (real vLLM)
gpu = pytest.mark.skipif(not HAS_VLLM, reason="needs a CUDA GPU and vllm (pip install copd[vllm])")


@pytest.fixture(scope="module")
def vllm_world(tiny_model_dir):
    """A one-branch world on cuda:0 with its vLLM sampler (an in-process engine)."""
    from tiny_support import tiny_overrides

    from copd.policy.rollout_vllm import rollout_engine
    from copd.spec import presets

    cfg = apply_overrides(
        presets.get("demo"),
        tiny_overrides(tiny_model_dir) + ["sampling.engine=vllm", "sampling.max_new_tokens=6"],
    ).validate()
    world = World.build(cfg, names=["add"])
    sampler, note = rollout_engine(world.vllm, world.tokenizer, world.branches[0], True)
    assert note == "vllm", note
    return world, sampler


@pytest.mark.gpu
@gpu
def test_vllm_rollout_has_the_builtin_layout_and_is_reproducible(vllm_world):
    world, sampler = vllm_world
    examples = world.tasks["add"].eval_examples(4)
    state = torch.Generator().manual_seed(3).get_state()
    a = sampler.sample(examples, 4, torch.Generator().set_state(state))
    b = sampler.sample(examples, 4, torch.Generator().set_state(state))
    ids, mask = encode_text_prompts(world.tokenizer, examples, 4, "cuda:0")
    assert torch.equal(a.prompt_ids_B_P, ids) and torch.equal(a.prompt_mask_B_P, mask)
    assert a.completion_ids_B_T.shape[0] == 16 and a.completion_ids_B_T.shape[1] <= 6
    assert torch.equal(a.completion_ids_B_T, b.completion_ids_B_T) and a.texts == b.texts
    eos = world.tokenizer.eos_token_id
    for row, m in zip(a.completion_ids_B_T.tolist(), a.completion_mask_B_T.tolist(), strict=True):
        n = int(sum(m))
        assert eos not in row[: n - 1]  # the mask ends at the first eos (inclusive)
        assert all(t == world.tokenizer.pad_token_id for t in row[n:])


@pytest.mark.gpu
@gpu
def test_weight_sync_changes_the_samples_and_restores_them(vllm_world):
    world, sampler = vllm_world
    b = world.branches[0]
    examples = world.tasks["add"].eval_examples(4)
    state = torch.Generator().manual_seed(5).get_state()
    before = sampler.sample(examples, 4, torch.Generator().set_state(state))
    original = {k: v.clone() for k, v in b.view.module.state_dict().items()}
    with torch.no_grad():
        for p in b.params:
            p.add_(0.5 * torch.randn_like(p))
    sampler.sync_weights(branch_weights(b))
    moved = sampler.sample(examples, 4, torch.Generator().set_state(state))
    assert not torch.equal(before.completion_ids_B_T, moved.completion_ids_B_T)
    b.view.module.load_state_dict(original)
    sampler.sync_weights(branch_weights(b))
    again = sampler.sample(examples, 4, torch.Generator().set_state(state))
    assert torch.equal(before.completion_ids_B_T, again.completion_ids_B_T)


@pytest.mark.gpu
@gpu
def test_greedy_vllm_completions_equal_greedy_hf(vllm_world):
    world, sampler = vllm_world
    examples = world.tasks["add"].eval_examples(8)
    vl = sampler.sample(examples, 1, torch.Generator().manual_seed(0), greedy=True)
    with torch.inference_mode(), world.branches[0].view.use() as m:
        hf = sample_rollouts(m, world.tokenizer, examples, world.decoding.as_greedy(), group_size=1)
    assert vl.texts == hf.texts
    assert torch.equal(vl.completion_ids_B_T.cpu(), hf.completion_ids_B_T.cpu())


def test_a_baseline_with_the_vllm_engine_says_it_samples_with_the_builtin_decoder(
    tiny_cfg, tmp_path
):
    from copd.train.algorithms import run

    log = Events()
    world = World.build(tiny_cfg("expert", "sampling.engine=vllm", "schedule.cycles=1"), log)
    run(world, tmp_path)
    warned = [m for lvl, m in log.events if lvl == "warning" and "applies to the copd" in m]
    assert warned == [
        "sampling.engine='vllm' applies to the copd method's branch workers; "
        "expert samples with the built-in decoder"
    ]
