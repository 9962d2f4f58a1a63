"""copd.math.merge: average, weighted, task arithmetic, TIES, dispatch and LoRA delta merging."""

from __future__ import annotations

import copy

import pytest
import torch

from copd.math.merge import (
    MERGE_METHODS,
    average,
    lora_deltas,
    merge,
    merge_lora,
    task_arithmetic,
    ties,
)
from copd.spec import MERGE_METHODS as CONFIG_MERGE_METHODS


def _sd(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=g),
        "b": torch.randn(4, generator=g).to(torch.bfloat16),
        "steps": torch.tensor([seed, 7]),  # integer buffer
    }


# ---------------------------------------------------------------- plain merges


def test_average_of_identical_is_identity():
    sd = _sd(0)
    for k in (1, 2, 3, 7):
        out = average([sd] * k)
        assert out.keys() == sd.keys()
        for key in sd:
            assert torch.equal(out[key], sd[key]), (k, key)
            assert out[key].dtype == sd[key].dtype


def test_weighted_average_hand_values_and_int_buffers_from_first():
    a = {"w": torch.tensor([0.0, 4.0]), "n": torch.tensor([1])}
    b = {"w": torch.tensor([8.0, 0.0]), "n": torch.tensor([2])}
    out = average([a, b], weights=[3.0, 1.0])  # normalised to 0.75 / 0.25
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 3.0]))
    assert torch.equal(out["n"], torch.tensor([1]))
    torch.testing.assert_close(average([a, b])["w"], torch.tensor([4.0, 2.0]))
    assert merge("weighted", None, [a, b], weights=(3, 1))["w"].tolist() == [2.0, 3.0]
    # "average" with weights is the weighted mean, as it is for LoRA branches
    assert merge("average", None, [a, b], weights=(3, 1))["w"].tolist() == [2.0, 3.0]


def test_mismatched_keys_and_shapes_raise():
    a, b = _sd(0), _sd(1)
    missing = {k: v for k, v in b.items() if k != "b"}
    with pytest.raises(ValueError, match=r"state_dicts\[1\] is missing key 'b'"):
        average([a, missing])
    with pytest.raises(ValueError, match=r"extra key 'extra'"):
        average([a, {**b, "extra": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"shape mismatch for 'w'"):
        average([a, {**b, "w": torch.zeros(4, 3)}])
    with pytest.raises(ValueError, match="missing key"):
        task_arithmetic(a, [missing])
    with pytest.raises(ValueError, match="one per model"):
        average([a, b], weights=[1.0])
    with pytest.raises(ValueError, match="not all zero"):
        average([a, b], weights=[0.0, 0.0])


def test_task_arithmetic_uniform_scale_one_equals_average():
    base, a, b, c = _sd(0), _sd(1), _sd(2), _sd(3)
    ta = task_arithmetic(base, [a, b, c])
    avg = average([a, b, c])
    torch.testing.assert_close(ta["w"], avg["w"])
    torch.testing.assert_close(ta["b"], avg["b"])
    assert torch.equal(ta["steps"], base["steps"])  # int buffers come from the base


def test_task_arithmetic_hand_values():
    base = {"w": torch.tensor([1.0, 1.0])}
    a = {"w": torch.tensor([3.0, 1.0])}  # delta (2, 0)
    b = {"w": torch.tensor([1.0, -3.0])}  # delta (0, -4)
    out = task_arithmetic(base, [a, b], scale=0.5)  # 1 + 0.5 * ((1, -2))
    torch.testing.assert_close(out["w"], torch.tensor([1.5, 0.0]))
    out = task_arithmetic(base, [a, b], weights=[1.0, 1.0])  # plain sum of task vectors
    torch.testing.assert_close(out["w"], torch.tensor([3.0, -3.0]))


def test_ties_hand_example_with_sign_conflict():
    base = {"w": torch.zeros(4), "n": torch.tensor([5])}
    a = {"w": torch.tensor([1.0, -2.0, 0.1, 3.0]), "n": torch.tensor([6])}
    b = {"w": torch.tensor([-3.0, 1.5, 0.2, 1.0]), "n": torch.tensor([7])}
    # density 1, nothing trimmed. Summed signs (-, -, +, +): element 0 keeps only b's -3,
    # element 1 only a's -2; elements 2 and 3 agree and are averaged.
    out = ties(base, [a, b], density=1.0)
    torch.testing.assert_close(out["w"], torch.tensor([-3.0, -2.0, 0.15, 2.0]))
    assert torch.equal(out["n"], base["n"])
    # density 0.5 keeps two entries each: a -> (0, -2, 0, 3), b -> (-3, 1.5, 0, 0).
    # Sum (-3, -0.5, 0, 3): element 1 elects "-", so b's +1.5 is dropped; element 2 is 0.
    out = ties(base, [a, b], density=0.5, scale=2.0)
    torch.testing.assert_close(out["w"], 2.0 * torch.tensor([-3.0, -2.0, 0.0, 3.0]))


def test_ties_identical_models_and_bad_density():
    base, a = _sd(0), _sd(1)
    out = ties(base, [a, a], density=1.0)
    torch.testing.assert_close(out["w"], a["w"])
    with pytest.raises(ValueError, match="density"):
        ties(base, [a], density=0.0)


def test_merge_dispatch_and_errors():
    base, a, b = _sd(0), _sd(1), _sd(2)
    assert torch.equal(merge("average", None, [a, b])["w"], average([a, b])["w"])
    assert torch.equal(
        merge("task_arithmetic", base, [a, b], scale=0.3)["w"],
        task_arithmetic(base, [a, b], scale=0.3)["w"],
    )
    assert torch.equal(
        merge("ties", base, [a, b], density=0.5)["w"], ties(base, [a, b], density=0.5)["w"]
    )
    with pytest.raises(ValueError, match="needs the base"):
        merge("ties", None, [a, b])
    with pytest.raises(ValueError, match="average.*weighted.*task_arithmetic.*ties"):
        merge("soup", None, [a, b])
    with pytest.raises(ValueError, match="at least one"):
        merge("average", None, [])
    assert tuple(MERGE_METHODS) == tuple(CONFIG_MERGE_METHODS)


# ---------------------------------------------------------------- LoRA

# transformers 5 warns about a renamed gradient-checkpointing helper that peft still calls.
LORA_WARNINGS = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
R, ALPHA = 4, 8
SCALING = ALPHA / R


def _tiny_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=40,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).eval()


def _lora_copy(model, seed: int, target_modules: list[str]):
    """A LoRA-wrapped copy with non-zero B (peft initialises B to 0), its adapter state
    and its merge_and_unload() weights."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    cfg = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=target_modules, lora_dropout=0.0)
    peft_model = get_peft_model(copy.deepcopy(model), cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    state = {
        k: v.clone()
        for k, v in get_peft_model_state_dict(peft_model, save_embedding_layers=False).items()
    }
    merged = {k: v.clone() for k, v in peft_model.merge_and_unload().state_dict().items()}
    return state, merged


@pytest.fixture(scope="module")
def lora_pair():
    model = _tiny_qwen2()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    s1, m1 = _lora_copy(model, 1, ["q_proj", "v_proj"])
    s2, m2 = _lora_copy(model, 2, ["q_proj", "v_proj"])
    return base, (s1, m1), (s2, m2)


@LORA_WARNINGS
def test_peft_key_format_maps_to_base_names(lora_pair):
    base, (s1, _), _ = lora_pair
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    assert key in s1 and s1[key].shape == (R, 32)
    deltas = lora_deltas(s1, SCALING)
    assert set(deltas) == {
        f"model.layers.{i}.self_attn.{m}.weight" for i in (0, 1) for m in ("q_proj", "v_proj")
    }
    for name, d in deltas.items():
        assert d.shape == base[name].shape
    prefix = "base_model.model.model.layers.1.self_attn.v_proj"
    expected = s1[f"{prefix}.lora_B.weight"] @ s1[f"{prefix}.lora_A.weight"] * SCALING
    torch.testing.assert_close(deltas["model.layers.1.self_attn.v_proj.weight"], expected)


@LORA_WARNINGS
def test_merge_lora_equals_mean_of_deltas_and_of_merged_models(lora_pair):
    base, (s1, m1), (s2, m2) = lora_pair
    merged = merge_lora(base, [s1, s2], SCALING)
    assert merged.keys() == base.keys()
    d1, d2 = lora_deltas(s1, SCALING), lora_deltas(s2, SCALING)
    for key in base:
        if key in d1:
            torch.testing.assert_close(merged[key], base[key] + (d1[key] + d2[key]) / 2)
            assert not torch.equal(merged[key], base[key])
        else:
            assert merged[key] is base[key]  # untouched weights are not copied
    # the same as running peft's own merge on each branch and averaging the full weights
    assert m1.keys() == base.keys()
    reference = average([m1, m2])
    for key in base:
        torch.testing.assert_close(merged[key], reference[key], atol=1e-6, rtol=1e-5)


@LORA_WARNINGS
def test_merge_lora_differs_from_averaging_factors(lora_pair):
    base, (s1, _), (s2, _) = lora_pair
    naive_state = {k: (s1[k] + s2[k]) / 2 for k in s1}  # mean(A), mean(B) separately
    naive = merge_lora(base, [naive_state], SCALING)
    merged = merge_lora(base, [s1, s2], SCALING)
    key = "model.layers.0.self_attn.q_proj.weight"
    assert (naive[key] - merged[key]).abs().max() > 1e-2


@LORA_WARNINGS
def test_merge_lora_weights_and_disjoint_targets():
    model = _tiny_qwen2()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    sq, mq = _lora_copy(model, 3, ["q_proj"])
    sv, mv = _lora_copy(model, 4, ["v_proj", "embed_tokens"])
    merged = merge_lora(base, [sq, sv], SCALING, weights=[3.0, 1.0])
    reference = average([mq, mv], weights=[3.0, 1.0])
    for key in base:
        torch.testing.assert_close(merged[key], reference[key], atol=1e-6, rtol=1e-5)
    # embedding adapters are stored transposed relative to linear ones
    emb = "model.embed_tokens.weight"
    assert lora_deltas(sv, SCALING)[emb].shape == base[emb].shape == (40, 32)


def test_lora_deltas_rejects_non_lora_entries():
    a = torch.zeros(2, 3)
    b = torch.zeros(5, 2)
    prefix = "base_model.model.model.layers.0.mlp.up_proj"
    ok = {f"{prefix}.lora_A.weight": a, f"{prefix}.lora_B.weight": b}
    assert lora_deltas(ok, 1.0)["model.layers.0.mlp.up_proj.weight"].shape == (5, 3)
    with pytest.raises(ValueError, match="not a LoRA factor"):
        lora_deltas({**ok, "base_model.model.lm_head.weight": torch.zeros(4, 4)}, 1.0)
    with pytest.raises(ValueError, match="DoRA"):
        lora_deltas({**ok, f"{prefix}.lora_magnitude_vector": torch.zeros(5)}, 1.0)
    with pytest.raises(ValueError, match="exactly one A and one B"):
        lora_deltas({f"{prefix}.lora_A.weight": a}, 1.0)
    with pytest.raises(ValueError, match="not in the base"):
        merge_lora({"x": torch.zeros(1)}, [ok], 1.0)
    with pytest.raises(ValueError, match="has shape"):
        merge_lora({"model.layers.0.mlp.up_proj.weight": torch.zeros(3, 5)}, [ok], 1.0)


@LORA_WARNINGS
@pytest.mark.parametrize(
    "method,kwargs",
    [
        ("weighted", {"weights": [3.0, 1.0]}),
        ("task_arithmetic", {"scale": 0.7, "weights": [1.0, 0.5]}),
        ("task_arithmetic", {"scale": 0.3}),
        ("ties", {"density": 0.5, "scale": 0.8}),
    ],
)
def test_merge_lora_methods_equal_merging_the_merged_models(lora_pair, method, kwargs):
    """Every merge method on LoRA deltas gives what it gives on the full weights of the
    adapters merged into the base (peft's merge_and_unload)."""
    base, (s1, m1), (s2, m2) = lora_pair
    merged = merge_lora(base, [s1, s2], SCALING, method=method, **kwargs)
    reference = merge(method, base, [m1, m2], **kwargs)
    plain = merge_lora(base, [s1, s2], SCALING)
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[key], plain[key])  # the method is not ignored
    for k in base:
        torch.testing.assert_close(merged[k], reference[k], atol=1e-5, rtol=1e-5)


def test_merge_lora_refuses_unknown_method_and_bad_density():
    prefix = "base_model.model.model.layers.0.mlp.up_proj"
    ok = {f"{prefix}.lora_A.weight": torch.ones(2, 3), f"{prefix}.lora_B.weight": torch.ones(5, 2)}
    base = {"model.layers.0.mlp.up_proj.weight": torch.zeros(5, 3)}
    with pytest.raises(ValueError, match="unknown merge method 'soup'"):
        merge_lora(base, [ok], 1.0, method="soup")
    with pytest.raises(ValueError, match="density"):
        merge_lora(base, [ok], 1.0, method="ties", density=0.0)


@LORA_WARNINGS
@pytest.mark.parametrize("kind", ["lora", "full"])
@pytest.mark.parametrize(
    "overrides",
    [
        ["merge.method=average", "merge.weights=[3, 1]"],
        ["merge.method=ties", "merge.density=0.5"],
        ["merge.method=task_arithmetic", "merge.scale=0.5"],
    ],
)
def test_run_merge_follows_the_config_for_lora_and_full_branches(lora_pair, kind, overrides):
    """copd.train.results merges LoRA and full-weight branches by the same `merge` settings."""
    from types import SimpleNamespace

    from copd.spec import RunConfig, apply_overrides
    from copd.train.results import merged_state
    from copd.train.settings import MergeSettings

    base, (s1, m1), (s2, m2) = lora_pair
    cfg = apply_overrides(
        RunConfig(),
        [f"model.branch_kind={kind}", f"model.lora.r={R}", f"model.lora.alpha={ALPHA}"] + overrides,
    ).validate()
    model = _tiny_qwen2()  # the base the adapters were trained on
    base_view = SimpleNamespace(module=model)
    states = [s1, s2] if kind == "lora" else [m1, m2]
    mc = cfg.merge
    reference = merge(
        mc.method, base, [m1, m2], weights=mc.weights, scale=mc.scale, density=mc.density
    )
    merged = merged_state(MergeSettings.from_config(cfg), base_view, states)
    for k in base:
        torch.testing.assert_close(merged[k], reference[k], atol=1e-5, rtol=1e-5)
    uniform = average([m1, m2])
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[key], uniform[key])  # settings not ignored
