"""The tiny vision-language test model: a random-init LLaVA, a short warm-up, a cache.

    from copd.builders.tiny_vlm import tiny_test_vlm
    path = tiny_test_vlm(".cache/test-models")   # built once (~20 s on one core), then reused
    model, processor = copd.policy.models.load_policy(str(path))

Videos (the `motion` task) reach it as frame images, one `<image>` each (copd/policy/vlm.py).

`build_tiny_vlm(out_dir)` saves a randomly initialised LLaVA (tiny CLIP vision tower + tiny
Qwen2 language model) with a character tokenizer and a PIL image processor: it loads back
through AutoProcessor + AutoModelForImageTextToText, for tests and CPU smoke runs. LLaVA,
not Qwen2-VL, because Qwen-family processors need torchvision (for their video processor).
"""

from __future__ import annotations

from pathlib import Path

import torch

from copd.policy.vlm import FRAMES_CAPTION, load_vlm, media_kwargs, prepare_vlm_prompt

TINY_VLM_VERSION = 2  # 2: vocabulary of the motion task and the frame caption


def build_tiny_vlm(
    out_dir: str | Path, hidden: int = 64, layers: int = 2, image_size: int = 32, seed: int = 0
) -> Path:
    """Save a random-init LLaVA (CLIP vision tower 32 wide, 1 layer, 8-pixel patches; Qwen2
    language model `hidden` x `layers`) with a character tokenizer over the built-in tasks'
    characters (text, shapes, motion, the frame caption) plus `<image>`, and a LlavaProcessor with a PIL CLIP image processor that
    resizes every image to `image_size` pixels ((image_size/8)^2 image tokens)."""
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from copd.builders.tiny import build_char_tokenizer, default_alphabet
    from copd.tasks.motion import MotionTask
    from copd.tasks.shapes import ShapesTask

    caption = FRAMES_CAPTION.format(n=1234567890)
    tok = build_char_tokenizer(
        default_alphabet() + ShapesTask.alphabet + MotionTask.alphabet + caption
    )
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_id = tok.convert_tokens_to_ids("<image>")
    size = {"height": image_size, "width": image_size}
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size=size),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",  # drop CLS: (image_size/8)^2 tokens
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        image_size=image_size, patch_size=8, projection_dim=32,
    )  # fmt: skip
    text = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=image_id,
        vision_feature_select_strategy="default", vision_feature_layer=-1,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.update(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def warmup_vlm(model, processor, tasks, steps: int, lr: float, batch_size: int, seed: int = 0):
    """Supervised warm-up on an equal mix of the tasks' training examples (answer + eos
    tokens only), so that base rewards sit above zero and RL has signal. Returns the loss
    of the last step."""
    import random

    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    tok, loss = processor.tokenizer, torch.tensor(float("nan"))
    model.train()
    for _ in range(steps):
        examples = [ex for t in tasks for ex in t.sample(rng, batch_size // len(tasks))]
        prepared = [prepare_vlm_prompt(processor, ex) for ex in examples]
        prompts = [p.text for p in prepared]
        full = [p + ex.answer + tok.eos_token for p, ex in zip(prompts, examples, strict=True)]
        media = media_kwargs(prepared)
        enc = processor(text=full, return_tensors="pt", padding=True, padding_side="right",
                        **media)  # fmt: skip
        n_prompt = [len(x) for x in processor(text=prompts, **media)["input_ids"]]
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        for i, n in enumerate(n_prompt):
            labels[i, :n] = -100
        loss = model(**{k: v for k, v in enc.items() if k not in ("mm_token_type_ids",)},
                     labels=labels).loss  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def tiny_test_vlm(
    cache_dir: str | Path, tasks=("add", "shapes", "motion"), steps: int = 150
) -> Path:
    """The tiny LLaVA briefly warmed up on `tasks` at difficulty 1; built once into
    `cache_dir` (keyed by the settings), then reused."""
    import hashlib
    import json
    import os
    import shutil
    import tempfile

    from copd.builders.tiny import file_lock
    from copd.tasks import get_task

    key = json.dumps([TINY_VLM_VERSION, list(tasks), steps])
    name = "vlm-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    root = Path(cache_dir)
    final = root / name
    if (final / "warmup.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f"{name}.lock"):
        if (final / "warmup.json").exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        threads = torch.get_num_threads()
        # One thread: on a busy small machine more threads make tiny matmuls far slower.
        torch.set_num_threads(1)
        try:
            build_tiny_vlm(tmp)
            model, processor = load_vlm(str(tmp))
            task_objs = [get_task(t, difficulty=1) for t in tasks]
            loss = warmup_vlm(model, processor, task_objs, steps, 3e-3, 32)
            model.save_pretrained(tmp)
            (tmp / "warmup.json").write_text(json.dumps({"loss": loss, "steps": steps}) + "\n")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            torch.set_num_threads(threads)
    return final
