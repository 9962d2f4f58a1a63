"""Vision-language branches: the `shapes` image task, the tiny LLaVA test model, image
rollouts whose log-probs match a plain forward with pixel values, and one CoPD cycle with a
text branch and an image branch on one vision-language base."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from tiny_support import tiny_overrides

from copd.math.losses import completion_mask
from copd.policy.decoding import Decoding
from copd.policy.rollout import completion_logprobs, sample_rollouts
from copd.spec import apply_overrides
from copd.tasks import get_task


@pytest.fixture(scope="session")
def tiny_vlm_dir() -> str:
    """The tiny LLaVA warmed up briefly on add + shapes; cached in .cache/test-models."""
    from copd.builders.tiny_vlm import tiny_test_vlm

    return str(tiny_test_vlm(Path(__file__).resolve().parent.parent / ".cache" / "test-models"))


@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir):
    from copd.policy.models import load_policy

    model, processor = load_policy(tiny_vlm_dir)
    return model.eval(), processor


# ----------------------------------------------------------------------------- task
def test_shapes_answers_count_the_drawn_shapes_and_split_is_fixed():
    task = get_task("shapes", difficulty=2)
    train = task.sample(random.Random(0), 40)
    held = task.eval_examples(20)
    assert held == task.eval_examples(20)  # fixed split
    keys = {(ex.images, ex.prompt) for ex in held}
    assert not keys & {(ex.images, ex.prompt) for ex in train}
    for ex in train[:10]:
        (scene,) = ex.images
        colour = ex.prompt.split()[2]
        assert ex.answer == str(sum(s.colour == colour for s in scene.shapes))
        assert task.reward(ex, f" {ex.answer} ") == 1.0
        assert task.reward(ex, str(int(ex.answer) + 1)) == 0.0
        img = scene.to_pil()
        assert img.size == (56, 56) and img.mode == "RGB"
        # every shape is drawn in its colour at its own cell
        from copd.tasks.shapes import COLOURS, GRID

        cell = 56 // GRID
        for s in scene.shapes:
            cx = (s.cell % GRID) * cell + s.dx + s.size // 2
            cy = (s.cell // GRID) * cell + s.dy + s.size // 2
            assert img.getpixel((cx, cy)) == COLOURS[s.colour]
    assert {ex.answer for ex in train} > {"0"} or len({ex.answer for ex in train}) > 1
    assert all(set(ex.prompt) <= set(task.alphabet) for ex in train)


# ----------------------------------------------------------------------------- model
def test_tiny_vlm_dir_loads_with_auto_classes(tiny_vlm_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    ex = get_task("shapes").sample(random.Random(1), 1)[0]
    enc = processor(
        text=["<image>" + ex.prompt], images=[ex.images[0].to_pil()], return_tensors="pt"
    )
    n_image_tokens = int((enc["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == (32 // 8) ** 2
    assert enc["pixel_values"].shape == (1, 3, 32, 32)
    out = model(**enc)
    assert out.logits.shape[:2] == enc["input_ids"].shape


def _manual_logprobs(model, batch, pixel_values_B):
    """Log-probs of the completion tokens from ONE plain forward per batch (no cache, no
    prompt sharing), every row with its own copy of its prompt's pixel values."""
    ids = torch.cat([batch.prompt_ids_B_P, batch.completion_ids_B_T], 1)
    mask = torch.cat([batch.prompt_mask_B_P, batch.completion_mask_B_T.long()], 1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=pos, pixel_values=pixel_values_B
    ).logits
    P, T = batch.prompt_ids_B_P.shape[1], batch.completion_ids_B_T.shape[1]
    lp = torch.log_softmax(logits[:, P - 1 : P + T - 1].float(), -1)
    return lp.gather(-1, batch.completion_ids_B_T[..., None]).squeeze(-1)


def test_image_rollout_logprobs_match_a_full_forward_with_pixel_values(vlm):
    model, processor = vlm
    examples = get_task("shapes").eval_examples(3)
    G = 4
    batch = sample_rollouts(
        model, processor, examples, Decoding(max_new_tokens=4), group_size=G,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert batch.vision is not None and batch.size == 12 and len(batch.texts) == 12
    pv = batch.vision.tensors["pixel_values"]
    assert pv.shape[0] == 3  # one image per distinct prompt, not per row
    image_id = model.config.image_token_id
    assert int((batch.prompt_ids_B_P == image_id).sum()) == 12 * 16
    with torch.no_grad():
        ours = completion_logprobs(model, batch, 1.0)
        ref = _manual_logprobs(model, batch, pv.repeat_interleave(G, 0))
    m = batch.completion_mask_B_T.bool()
    assert torch.allclose(ours[m], ref[m], atol=1e-5)
    # the pixels reach the logits: a blank image gives other log-probs
    with torch.no_grad():
        blank = _manual_logprobs(model, batch, torch.zeros_like(pv).repeat_interleave(G, 0))
    assert not torch.allclose(blank[m], ref[m], atol=1e-3)


def test_greedy_image_sampling_matches_hf_generate(vlm):
    model, processor = vlm
    from copd.policy.vlm import encode_vlm_prompts

    examples = get_task("shapes").eval_examples(3)
    ours = sample_rollouts(
        model, processor, examples, Decoding(max_new_tokens=4, greedy=True), group_size=1
    )
    ids, mask, vision = encode_vlm_prompts(processor, examples, "cpu")
    tok = processor.tokenizer
    ref = model.generate(
        input_ids=ids, attention_mask=mask, **vision.tensors, max_new_tokens=4, do_sample=False,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )[:, ids.shape[1] :]  # fmt: skip
    mr = completion_mask(ref, tok.eos_token_id).bool()
    mo = ours.completion_mask_B_T.bool()
    for i in range(len(examples)):
        assert ours.completion_ids_B_T[i][mo[i]].tolist() == ref[i][mr[i]].tolist()


def test_text_prompts_on_a_vlm_take_the_text_path(vlm):
    model, processor = vlm
    examples = get_task("add", difficulty=1).eval_examples(2)
    kw = dict(group_size=2)
    dec = Decoding(temperature=1.0, max_new_tokens=3)
    a = sample_rollouts(
        model, processor, examples, dec, generator=torch.Generator().manual_seed(3), **kw
    )
    b = sample_rollouts(
        model, processor.tokenizer, examples, dec, generator=torch.Generator().manual_seed(3),
        **kw,
    )  # fmt: skip
    assert a.vision is None
    assert torch.equal(a.completion_ids_B_T, b.completion_ids_B_T)


# ----------------------------------------------------------------------------- CoPD
def test_one_copd_cycle_with_text_and_image_branches(tiny_vlm_dir, tmp_path):
    from test_engine import Recorder

    from copd.spec import presets
    from copd.train.algorithms.copd import train
    from copd.train.world import World

    cfg = apply_overrides(
        presets.get("demo"),
        tiny_overrides(tiny_vlm_dir)
        + [
            'branches=[{"name": "text", "task": "add", "device": "cpu"}, '
            '{"name": "image", "task": "shapes", "device": "cpu"}]',
            'task_options={"add": {"difficulty": 1}, "shapes": {"difficulty": 1}}',
            "schedule.cycles=1",
            "schedule.rl_steps=1",
            "schedule.opd_steps=1",
            "sampling.max_new_tokens=3",
            "eval.n_prompts=4",
            "diagnostics.n_prompts=2",
            "grpo.lr=1e-3",
        ],
    ).validate()
    rec = Recorder()
    world = World.build(cfg, rec)
    assert {b.name for b in world.branches} == {"text", "image"}
    # Parameters outside the forward's graph: LLaVA reads the vision tower's last hidden
    # state before its final norm, so CLIP's post_layernorm never gets a gradient.
    unused = {n for n, _ in world.base.module.named_parameters() if "post_layernorm" in n}
    before = {
        b.name: {n: p.detach().clone() for n, p in b.view.module.named_parameters()}
        for b in world.branches
    }
    scores = train(world, tmp_path)
    for b in world.branches:
        for n, p in b.view.module.named_parameters():
            changed = not torch.equal(before[b.name][n], p.detach())
            assert changed == (n not in unused), f"branch {b.name}: {n} changed={changed}"
    keys = rec.keys()
    assert {"pair/text~image/overlap_top10", "pair/image~text/overlap_top10"} <= keys
    assert {"branch/text/reward/mean", "branch/image/reward/mean"} <= keys
    assert "branch/text/opd/adv_mean/image" in keys and "branch/image/opd/adv_mean/text" in keys
    assert set(scores) == {"text", "image", "merged"}
    assert (tmp_path / "merged" / "processor_config.json").exists()
    # Samples of image prompts keep the text and name the image; each peer scored them.
    shapes = [r for _, _, r in rec.samples if r["domain"] == "shapes"]
    assert shapes and all("[media: " in r["prompt"] for r in shapes)
    assert all(len(r["peers"]) >= 1 and len(r["logp"]) == len(r["tokens"]) for r in shapes)


def test_multimodal_rope_positions_match_the_models_own(tmp_path):
    """Qwen2-VL (3-D multimodal RoPE): scoring with our explicit positions (the model's
    get_rope_index for the prompt, text after it continuing from its largest position)
    equals the model's own forward over prompt + completion. Built without a processor:
    Qwen-family processors need torchvision, which this environment lacks."""
    from PIL import Image
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from copd.policy.rollout import RolloutBatch, completion_logits
    from copd.policy.vlm import VisionInputs

    V, START, END, IMG, VID = 40, 4, 5, 6, 7
    text = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2, bos_token_id=1, eos_token_id=2,
                pad_token_id=0, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                 "mrope_section": [2, 3, 3]})  # fmt: skip
    vision = dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, patch_size=8,
                  spatial_merge_size=2, temporal_patch_size=2, mlp_ratio=2)  # fmt: skip
    cfg = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=IMG,
                        video_token_id=VID, vision_start_token_id=START,
                        vision_end_token_id=END)  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    ip = Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, temporal_patch_size=2,
                                  min_pixels=32 * 32, max_pixels=32 * 32)  # fmt: skip
    images = [Image.new("RGB", (32, 32), (200, 10 * i, 30)) for i in range(2)]
    enc = ip(images, return_tensors="pt")
    n_tok = int(enc["image_grid_thw"][0].prod()) // 4
    prompts = [
        [1, START] + [IMG] * n_tok + [END, 20, 21, 22],
        [1, 23, START] + [IMG] * n_tok + [END, 24],
    ]
    L = max(map(len, prompts))
    ids_P = torch.tensor([[0] * (L - len(p)) + p for p in prompts])
    mask_P = (torch.arange(L) >= torch.tensor([L - len(p) for p in prompts])[:, None]).long()
    types_P = (ids_P == IMG).int()
    G, T = 2, 4
    comp = torch.randint(10, V, (2 * G, T), generator=torch.Generator().manual_seed(1))
    cmask = torch.ones(2 * G, T)
    cmask[1, 2:] = 0  # a row that ended early
    batch = RolloutBatch(
        [], ids_P.repeat_interleave(G, 0), mask_P.repeat_interleave(G, 0), comp, cmask, [], G,
        vision=VisionInputs(dict(enc), types_P),
    )  # fmt: skip
    with torch.no_grad():
        ours = completion_logits(model, batch)
        ids = torch.cat([batch.prompt_ids_B_P, comp], 1)
        mask = torch.cat([batch.prompt_mask_B_P, cmask.long()], 1)
        D = enc["pixel_values"].shape[-1]
        pv = enc["pixel_values"].view(2, -1, D).repeat_interleave(G, 0).reshape(-1, D)
        ref = model(
            input_ids=ids, attention_mask=mask, pixel_values=pv,
            image_grid_thw=enc["image_grid_thw"].repeat_interleave(G, 0),
            mm_token_type_ids=torch.cat([types_P.repeat_interleave(G, 0),
                                         torch.zeros_like(comp, dtype=torch.int)], 1),
        ).logits[:, L - 1 : L + T - 1]  # fmt: skip
    m = cmask.bool()
    assert torch.allclose(ours[m], ref[m], atol=1e-4)
