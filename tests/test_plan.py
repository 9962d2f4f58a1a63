"""`copd plan` against real bytes on the CPU.

Tolerances (also stated in copd/tools/plan.py and the README): weights, gradients and AdamW
state exact; activations within 5% of the bytes autograd saves; activations + gradients
within 15% of the peak memory growth of a forward and backward (torch.profiler timeline).
"""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from copd.tools.plan import Workload, activation_bytes, arch_from_config, main, plan

SMALL = dict(
    vocab_size=400,
    hidden_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=256,
    max_position_embeddings=512,
)


def _model(kind: str, attn: str = "eager", tie: bool = True, dtype=torch.float32):
    cls, cfg_cls = (
        (Qwen2ForCausalLM, Qwen2Config) if kind == "qwen2" else (LlamaForCausalLM, LlamaConfig)
    )
    cfg = cfg_cls(**SMALL, tie_word_embeddings=tie)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    return cls(cfg).to(dtype).train(), cfg


def _loss(model, ids, P, T):
    out = model(input_ids=ids, use_cache=False, logits_to_keep=T + 1)
    logp = torch.log_softmax(out.logits[:, :-1].float(), -1)
    return logp.gather(-1, ids[:, P:, None]).squeeze(-1).mean()


def _storage_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


@pytest.mark.parametrize(
    "kind,tie,dtype",
    [
        ("qwen2", True, torch.float32),
        ("llama", False, torch.float32),
        ("qwen2", True, torch.bfloat16),
    ],
)
def test_weights_gradients_optimizer_equal_measured_bytes_after_one_adamw_step(kind, tie, dtype):
    model, cfg = _model(kind, tie=tie, dtype=dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    ids = torch.randint(0, 400, (2, 12))
    _loss(model, ids, 6, 6).backward()
    opt.step()
    params = list(model.parameters())
    weights = _storage_bytes(params)
    grads = _storage_bytes(p.grad for p in params)
    optim = sum(t.untyped_storage().nbytes() for s in opt.state.values() for t in s.values())
    name = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype]
    p = plan(Workload(dtype=name), arch_from_config(cfg.to_dict()))
    assert p.n_params == sum(x.numel() for x in params)
    assert (p.weights, p.gradients, p.optimizer) == (weights, grads, optim)


def test_lora_trainable_bytes_equal_peft_adapters():
    from peft import LoraConfig, get_peft_model

    model, cfg = _model("qwen2")
    targets = ("q_proj", "v_proj", "down_proj")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    trainable = [x for x in peft_model.parameters() if x.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3, fused=True)
    _loss(peft_model, torch.randint(0, 400, (2, 12)), 6, 6).backward()
    opt.step()
    p = plan(Workload(dtype="float32", lora=True, lora_rank=4, lora_targets=targets),
             arch_from_config(cfg.to_dict()))  # fmt: skip
    assert p.trainable == sum(x.numel() for x in trainable)
    optim = sum(t.untyped_storage().nbytes() for s in opt.state.values() for t in s.values())
    assert (p.weights, p.optimizer) == (_storage_bytes(trainable), optim)
    assert p.frozen_base == p.n_params * 4


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_activation_estimate_matches_saved_tensor_bytes_within_5_percent(kind, attn):
    model, cfg = _model(kind, attn)
    B, P, T = 6, 20, 12
    ids = torch.randint(0, 400, (B, P + T))
    params = {x.untyped_storage().data_ptr() for x in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = max(saved.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _loss(model, ids, P, T)
    measured = sum(saved.values())
    estimate = activation_bytes(arch_from_config(cfg.to_dict()), B, P, T, 4, attn)
    assert abs(estimate - measured) / measured < 0.05, (estimate, measured)


def test_activations_plus_gradients_match_the_profiled_peak_within_15_percent():
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    model, cfg = _model("qwen2", "eager")
    B, P, T = 8, 32, 32
    ids = torch.randint(0, 400, (B, P + T))
    _loss(model, ids, P, T).backward()  # warm up the kernels
    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:  # fmt: skip
        _loss(model, ids, P, T).backward()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    totals = [sum(row) for row in sizes]
    measured_growth = max(totals) - totals[0]
    arch = arch_from_config(cfg.to_dict())
    estimate = activation_bytes(arch, B, P, T, 4, "eager") + arch.n_params() * 4
    assert abs(estimate - measured_growth) / measured_growth < 0.15, (estimate, measured_growth)


def test_plan_command_reads_a_model_dir_and_says_which_gpus(tmp_path, capsys):
    cfg = {
        "model_type": "qwen2",
        "hidden_size": 1536,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "intermediate_size": 8960,
        "tie_word_embeddings": True,
    }  # fmt: skip  (Qwen2.5-1.5B)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "plan.json"
    rc = main(["--model", str(tmp_path), "--prompts", "8", "--samples", "8",
               "--completion-len", "512", "--json", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0 and "activations" in text and "141 GiB" in text and "FLOPs" in text
    figures = json.loads(out.read_text())
    assert abs(figures["n_params"] - 1.54e9) / 1.54e9 < 0.01  # the published 1.54B
    lora = plan(Workload(lora=True, lora_rank=32), arch_from_config(cfg))
    assert lora.trainable < figures["trainable"] / 40  # adapters are a small fraction
    with pytest.raises(ValueError, match="no config.json"):
        main(["--model", str(tmp_path / "missing")])


def test_params_only_plan_has_no_activation_figure(capsys):
    assert main(["--params", "1000000000", "--dtype", "bfloat16"]) == 0
    text = capsys.readouterr().out
    assert "n/a" in text and "1,000.0M parameters" in text


def test_micro_batches_bound_the_activations():
    from copd.tools.plan import parse_arch

    full = Workload(prompts=8, samples=8, cross_prompts=8, cross_samples=4)
    micro = Workload(prompts=8, samples=8, cross_prompts=8, cross_samples=4, micro_batch_rows=16)
    assert full.forward_rows == full.train_rows == 96 and micro.forward_rows == 16
    arch = parse_arch("hidden=256,layers=2,heads=4,kv_heads=2,vocab=1000,intermediate=512")
    a_full, a_micro = plan(full, arch).activations, plan(micro, arch).activations
    assert a_micro < a_full / 4  # activations scale with the rows held at once
