"""Vision-language policies: load, encode image prompts, sample with a KV cache, score.

    model, processor = load_vlm("path/to/vlm_dir")   # AutoProcessor + AutoModelForImageTextToText
    batch = sample_rollouts(model, processor, examples, group_size=8, ...)  # copd.rollout
    logits_B_T_V = completion_logits(model, batch)                         # copd.rollout

`copd.models.load_policy` returns (model, processor) for a directory whose config has a
`vision_config`; the world then carries the processor where a text run carries a tokenizer,
and `copd.rollout` sends every batch whose prompts hold images here. Text-only prompts on a
vision-language model (the text branch) take the text path with the processor's tokenizer,
unchanged.

How an image batch runs:
- Prompts: an example's images (`Example.images`: file paths opened lazily, PIL images, or
  objects with `to_pil()` such as `copd.tasks.shapes.Scene`) go before its text: through
  the processor's chat template when it has one (typed `image` content parts), else as the
  processor's image token, one per image, in front of the prompt.
- The processor runs once on the distinct prompts (P = B/G rows); its vision tensors
  (`pixel_values`, `image_grid_thw`, ...) ride on `RolloutBatch.vision` for those P prompts.
- Sampling and scoring both prefill the P prompts once with the vision tensors, repeat the
  KV cache G times, then run only text tokens (no vision input after the prefill).
- Positions: 1-D (mask cumsum) for models with plain RoPE (LLaVA family); for models with
  multimodal RoPE (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) the model's own `get_rope_index` gives
  the prompt's 3-D positions, and text tokens after it continue from its largest position.

Video: `Example.videos` (a path, or a list of frames) goes to the processor's `videos=`
argument. Qwen-family processors need torchvision for that (and for their video processor
at all); without it, `AutoProcessor` cannot load them and video prompts are unsupported.

copd/tiny_vlm.py builds a tiny LLaVA test model that loads through the same Auto classes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

# Processor outputs aligned with tokens (everything else is a vision input of the prompts).
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass
class VisionInputs:
    """Processor vision tensors for the P distinct prompts of a batch (rows grouped by G).

    `tensors` go to the model's forward on the prompt prefill (e.g. `pixel_values`,
    `image_grid_thw`); `token_types_P_L` marks image (1) / video (2) tokens of the padded
    prompts where the processor returns them (multimodal RoPE needs them)."""

    tensors: dict[str, Tensor]
    token_types_P_L: Tensor | None = None

    def to(self, device) -> VisionInputs:
        tt = None if self.token_types_P_L is None else self.token_types_P_L.to(device)
        return VisionInputs({k: v.to(device) for k, v in self.tensors.items()}, tt)


# ----------------------------------------------------------------------------- loading
def is_vlm_dir(path: str) -> bool:
    """Whether the model directory holds a vision-language model (its config has a
    `vision_config`). False when the config cannot be read here (a GGUF file, say)."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(path)
    except Exception:
        return False
    return getattr(cfg, "vision_config", None) is not None


def is_processor(obj) -> bool:
    """A multimodal processor (an image processor plus a tokenizer), not a tokenizer."""
    return hasattr(obj, "image_processor") and hasattr(obj, "tokenizer")


def load_vlm(path: str, dtype: torch.dtype = torch.float32, device="cpu"):
    """Model (AutoModelForImageTextToText) and processor (AutoProcessor) from a local
    directory; the tokenizer pads on the left and has a pad token (the eos if missing)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(path)
    except (AttributeError, ImportError, ValueError) as e:
        raise RuntimeError(
            f"model.path: the processor of {path} does not load here ({e}); Qwen-family "
            "vision-language processors need torchvision: pip install torchvision"
        ) from e
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
    tok = processor.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.config.pad_token_id = tok.pad_token_id
    return model.to(device), processor


# ----------------------------------------------------------------------------- prompts
def has_media(examples) -> bool:
    return any(ex.images or ex.videos for ex in examples)


def load_image(item):
    """A PIL image from a file path (opened now), a PIL image, or an object with `to_pil()`."""
    if isinstance(item, str | Path):
        from PIL import Image

        with Image.open(item) as im:
            return im.convert("RGB")
    if hasattr(item, "to_pil"):
        return item.to_pil()
    return item


def render_vlm_prompt(processor, example) -> str:
    """The prompt text with one placeholder per image/video, before the answer."""
    n_img, n_vid = len(example.images), len(example.videos)
    if getattr(processor, "chat_template", None):
        parts = [{"type": "image"}] * n_img + [{"type": "video"}] * n_vid
        content = [*parts, {"type": "text", "text": example.prompt}]
        msgs = [{"role": "user", "content": content}]
        if example.system:
            msgs.insert(
                0, {"role": "system", "content": [{"type": "text", "text": example.system}]}
            )
        return processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    media = processor.image_token * n_img + getattr(processor, "video_token", "") * n_vid
    text = f"{example.system}\n\n{example.prompt}" if example.system else example.prompt
    return media + text


def encode_vlm_prompts(processor, examples, device) -> tuple[Tensor, Tensor, VisionInputs]:
    """Left-padded ids and mask [P, L] of the prompts with their images expanded into
    placeholder tokens, and the vision tensors of those P prompts."""
    texts = [render_vlm_prompt(processor, ex) for ex in examples]
    images = [load_image(im) for ex in examples for im in ex.images]
    videos = [[load_image(f) for f in v] if isinstance(v, list | tuple) else v
              for ex in examples for v in ex.videos]  # fmt: skip
    kw = {"images": images} if images else {}
    if videos:
        kw["videos"] = videos
    templated = bool(getattr(processor, "chat_template", None))
    enc = processor(
        text=texts,
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=not templated,
        **kw,
    )
    tensors = {k: v.to(device) for k, v in enc.items() if k not in TOKEN_KEYS}
    tt = enc.get("mm_token_type_ids")
    vision = VisionInputs(tensors, None if tt is None else tt.to(device))
    return enc["input_ids"].to(device), enc["attention_mask"].to(device), vision


# ----------------------------------------------------------------------------- forward
def _inner(model):
    """The HF model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def prompt_positions(model, ids_P_L: Tensor, mask_P_L: Tensor, vision: VisionInputs):
    """Positions of the prompt tokens ([P, L], or [3, P, L] for multimodal RoPE) and the
    position of the first token after each prompt, [P]."""
    core = getattr(_inner(model), "model", None)
    rope_index = getattr(core, "get_rope_index", None)
    if rope_index is not None and vision.token_types_P_L is not None:
        params = inspect.signature(rope_index).parameters
        kw = {k: v for k, v in vision.tensors.items() if k in params and k.endswith("grid_thw")}
        pos, _ = rope_index(
            ids_P_L, mm_token_type_ids=vision.token_types_P_L, attention_mask=mask_P_L, **kw
        )
        nxt = pos.amax(dim=(0, 2)) + 1
        return pos, nxt
    pos = (mask_P_L.long().cumsum(-1) - 1).clamp(min=0)
    return pos, pos[:, -1] + 1


def _text_positions(start_B: Tensor, n: int, like: Tensor) -> Tensor:
    """Positions start..start+n-1 per row: [B, n], or [3, B, n] when `like` is 3-D."""
    pos = start_B[:, None] + torch.arange(n, device=start_B.device)
    return pos.expand(3, -1, -1) if like.dim() == 3 else pos


def prefill(model, ids_P_L: Tensor, mask_P_L: Tensor, vision: VisionInputs, group_size: int):
    """Run the P prompts once with their vision inputs and repeat the KV cache G times.

    Returns (last-position logits [P, V], cache with P*G rows, prompt positions, next
    position per row [P*G]). Differentiable, as copd.rollout's shared prefill."""
    from copd.rollout import _out_cache

    pos, nxt = prompt_positions(model, ids_P_L, mask_P_L, vision)
    dtype = next(model.parameters()).dtype
    kw = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in vision.tensors.items()}
    out = model(
        input_ids=ids_P_L,
        attention_mask=mask_P_L,
        position_ids=pos,
        use_cache=True,
        logits_to_keep=1,
        **kw,
    )
    cache = _out_cache(out)
    if not hasattr(cache, "batch_repeat_interleave"):
        raise TypeError(
            f"{type(cache).__name__} cannot repeat along the batch; image rollouts need a "
            "DynamicCache (the default for transformers models)"
        )
    cache.batch_repeat_interleave(group_size)
    return out.logits[:, -1], cache, pos, nxt.repeat_interleave(group_size)


@torch.no_grad()
def sample_vlm_rollouts(
    model,
    processor,
    examples,
    *,
    group_size: int,
    temperature: float,
    max_new_tokens: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    top_p: float = 1.0,
    device=None,
):
    """`copd.rollout.sample_rollouts` for prompts with images (see the module docstring)."""
    from copd.losses import completion_mask
    from copd.rollout import RolloutBatch, decode, decode_completions, device_generator

    device = device or next(model.parameters()).device
    G = group_size
    tok = processor.tokenizer
    eos_id, pad_id = tok.eos_token_id, tok.pad_token_id
    ids_P, mask_P, vision = encode_vlm_prompts(processor, examples, device)
    generator = device_generator(generator, device)
    logits, cache, pos, nxt_B = prefill(model, ids_P, mask_P, vision, G)
    logits = logits.float().repeat_interleave(G, dim=0)
    mask_B = mask_P.repeat_interleave(G, dim=0)
    comp = decode(
        model, logits, cache, mask_B, nxt_B, max_new_tokens=max_new_tokens,
        temperature=temperature, eos_id=eos_id, pad_id=pad_id, generator=generator,
        greedy=greedy, top_p=top_p, positions=lambda p_B: _text_positions(p_B, 1, pos),
    )  # fmt: skip
    cmask = completion_mask(comp, eos_id).float()
    texts = decode_completions(tok, comp, cmask)
    rep = [ex for ex in examples for _ in range(G)]
    ids_B = ids_P.repeat_interleave(G, dim=0)
    return RolloutBatch(rep, ids_B, mask_B, comp, cmask, texts, G, vision=vision)


def vlm_completion_logits(model, batch) -> Tensor:
    """Logits [B, T, V] predicting each completion token of an image batch: the P prompts
    once with their vision inputs, the cache repeated G times, then the completions."""
    from copd.rollout import _cache_kw

    G = batch.group_size
    ids_P, mask_P = batch.prompt_ids_B_P[::G], batch.prompt_mask_B_P[::G]
    last, cache, pos, nxt_B = prefill(model, ids_P, mask_P, batch.vision, G)
    first = last.repeat_interleave(G, dim=0)[:, None]  # predicts completion token 0
    T = batch.completion_ids_B_T.shape[1]
    if T <= 1:
        return first[:, :T]
    mask = torch.cat(
        [batch.prompt_mask_B_P, batch.completion_mask_B_T.to(batch.prompt_mask_B_P.dtype)], 1
    )
    out = model(
        input_ids=batch.completion_ids_B_T[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=_text_positions(nxt_B, T - 1, pos),
        use_cache=True,
        **{_cache_kw(model): cache},
    )
    return torch.cat([first, out.logits], dim=1)
