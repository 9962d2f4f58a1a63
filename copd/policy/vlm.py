"""Vision-language policies: load, encode image prompts, sample with a KV cache, score.

    model, processor = load_vlm("path/to/vlm_dir")   # AutoProcessor + AutoModelForImageTextToText
    batch = sample_rollouts(model, processor, examples, decoding, group_size=8)  # .rollout
    logits_B_T_V = completion_logits(model, batch)                               # .rollout

`copd.policy.models.load_policy` returns (model, processor) for a directory whose config has a
`vision_config`; the world then carries the processor where a text run carries a tokenizer,
and `copd.policy.rollout` sends every batch whose prompts hold images here. Text-only prompts on a
vision-language model (the text branch) take the text path with the processor's tokenizer,
unchanged.

How an image batch runs:
- Prompts: an example's images (`Example.images`: file paths opened lazily, PIL images, or
  objects with `to_pil()` such as `copd.tasks.shapes.Scene`), then its videos, go before
  its text: through the processor's chat template when it has one (typed `image`/`video`
  content parts), else as the processor's placeholder tokens in front of the prompt.
- The processor runs once on the distinct prompts (P = B/G rows); its vision tensors
  (`pixel_values`, `image_grid_thw`, ...) ride on `RolloutBatch.vision` for those P prompts.
- Sampling and scoring both prefill the P prompts once with the vision tensors, repeat the
  KV cache G times, then run only text tokens (no vision input after the prefill).
- Positions: 1-D (mask cumsum) for models with plain RoPE (LLaVA family); for models with
  multimodal RoPE (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) the model's own `get_rope_index` gives
  the prompt's 3-D positions, and text tokens after it continue from its largest position.

Video: each entry of `Example.videos` (a `copd.tasks.media.Video`: a file, a frame
directory or a frame list; or a generated clip such as `copd.tasks.motion.Clip`) is read as
at most `max_frames` evenly spaced frames. A processor that takes `videos=` (it has a video
processor: the Qwen-VL family, ...) gets the frames there, one video placeholder each; an
image-only processor (LLaVA) gets them as images, one image placeholder per frame in order,
after a short caption ("Frames 1-N:"). Qwen-family processors need torchvision to load.

LoRA on a vision-language model: `lora_targets` restricts the adapters to the language
model's projections (the vision tower and projector stay frozen base weights).
MOPD routes parts of a batch to different teachers: `VisionInputs.select` cuts the vision
tensors of whole prompts out (per image, per patch span, or per prompt).

copd/builders/tiny_vlm.py builds a tiny LLaVA test model that loads through the same Auto classes.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from copd.math.losses import completion_mask
from copd.policy.batch import RolloutBatch
from copd.policy.decoding import Decoding
from copd.policy.hf_cache import cache_kw, hf_model
from copd.policy.sampler import decode, decode_completions, device_generator, prefill
from copd.tasks.media import load_image, video_frames

# Before the frames of a video on a model without video input (one image per frame).
FRAMES_CAPTION = "Frames 1-{n}:"

# Processor outputs aligned with tokens (everything else is a vision input of the prompts).
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass
class VisionInputs:
    """Processor vision tensors for the P distinct prompts of a batch (rows grouped by G).

    `tensors` go to the model's forward on the prompt prefill (e.g. `pixel_values`,
    `image_grid_thw`); `token_types_P_L` marks image (1) / video (2) tokens of the padded
    prompts where the processor returns them (multimodal RoPE needs them). `images_P` and
    `videos_P` count what each prompt gave the processor's `images=` (video frames included
    on image-only models) and `videos=`, so that `select` can cut out whole prompts."""

    tensors: dict[str, Tensor]
    token_types_P_L: Tensor | None = None
    images_P: tuple[int, ...] = ()
    videos_P: tuple[int, ...] = ()

    def to(self, device) -> VisionInputs:
        tt = None if self.token_types_P_L is None else self.token_types_P_L.to(device)
        tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return VisionInputs(tensors, tt, self.images_P, self.videos_P)

    def select(self, prompts: list[int]) -> VisionInputs | None:
        """The vision inputs of the prompts `prompts` (indices into the P prompts, in the
        order given); None when those prompts hold no image and no video. Per-image tensors
        (`pixel_values` [n_images, ...], `image_grid_thw`, `image_sizes`) keep the rows of
        the chosen prompts' images; variable-length `pixel_values` [n_patches, D] that come
        with an `image_grid_thw` keep each chosen image's span of t*h*w patches (the same
        for `pixel_values_videos` / `video_grid_thw`); other tensors are per prompt."""
        if len(self.images_P) != len(self.videos_P) or not self.images_P:
            raise ValueError("VisionInputs.select needs images_P and videos_P (one per prompt)")
        if not any(self.images_P[p] or self.videos_P[p] for p in prompts):
            return None
        units = {
            "image": _unit_rows(self.images_P, prompts),
            "video": _unit_rows(self.videos_P, prompts),
        }
        out = {}
        for k, v in self.tensors.items():
            unit = "video" if "video" in k or k == "second_per_grid_ts" else "image"
            grid = self.tensors.get(f"{unit}_grid_thw")
            if k.startswith("pixel_values") and grid is not None:
                rows = _span_rows(grid.prod(-1).tolist(), units[unit])
            elif "video" in k or "pixel" in k or "image" in k or k == "second_per_grid_ts":
                n = sum(self.videos_P if unit == "video" else self.images_P)
                if v.shape[0] != n:
                    raise ValueError(
                        f"vision input {k!r} has {v.shape[0]} rows, expected one per {unit} "
                        f"({n}); cannot select prompts from it"
                    )
                rows = units[unit]
            else:
                if v.shape[0] != len(self.images_P):
                    raise ValueError(
                        f"vision input {k!r} has {v.shape[0]} rows, expected one per prompt "
                        f"({len(self.images_P)}); cannot select prompts from it"
                    )
                rows = prompts
            out[k] = v[torch.tensor(rows, dtype=torch.long, device=v.device)]
        tt = self.token_types_P_L
        if tt is not None:
            tt = tt[torch.tensor(prompts, dtype=torch.long, device=tt.device)]
        images = tuple(self.images_P[p] for p in prompts)
        return VisionInputs(out, tt, images, tuple(self.videos_P[p] for p in prompts))


def _unit_rows(counts_P: tuple[int, ...], prompts: list[int]) -> list[int]:
    """Indices of the images (or videos) of `prompts`, given how many each prompt has."""
    starts = [sum(counts_P[:p]) for p in range(len(counts_P))]
    return [starts[p] + j for p in prompts for j in range(counts_P[p])]


def _span_rows(lengths: list[int], units: list[int]) -> list[int]:
    """Row indices of the spans `units` when unit i owns the next `lengths[i]` rows."""
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    return [r for u in units for r in range(starts[u], starts[u] + lengths[u])]


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


def supports_video(processor) -> bool:
    """Whether the processor takes `videos=` (it has a video processor: Qwen-VL family,
    LLaVA-NeXT-Video, ...); otherwise videos go in as frame images."""
    return getattr(processor, "video_processor", None) is not None


@dataclass
class VLMPrompt:
    """One prompt ready for the processor: its text with one placeholder per image / video,
    and the media in placeholder order (PIL images; frame lists for `videos=`)."""

    text: str
    images: list
    videos: list[list]


def prepare_vlm_prompt(processor, example) -> VLMPrompt:
    """Text and media of one example: its images, then its videos, then its text. A video
    goes to `videos=` when the processor takes videos; else its frames are images, one
    placeholder each, in order, after the caption FRAMES_CAPTION (frame-sampling input for
    image-only models)."""
    images = [load_image(im) for im in example.images]
    clips = [video_frames(v) for v in example.videos]
    as_video = supports_video(processor)
    parts: list[dict] = [{"type": "image"}] * len(images)
    for frames in clips:
        if as_video:
            parts.append({"type": "video"})
        else:
            parts.append({"type": "text", "text": FRAMES_CAPTION.format(n=len(frames))})
            parts += [{"type": "image"}] * len(frames)
            images += frames
    videos = clips if as_video else []
    if getattr(processor, "chat_template", None):
        msgs = [{"role": "user", "content": [*parts, {"type": "text", "text": example.prompt}]}]
        if example.system:
            msgs.insert(
                0, {"role": "system", "content": [{"type": "text", "text": example.system}]}
            )
        text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return VLMPrompt(text, images, videos)
    token = {"image": processor.image_token, "video": getattr(processor, "video_token", "")}
    media = "".join(p["text"] if p["type"] == "text" else token[p["type"]] for p in parts)
    text = f"{example.system}\n\n{example.prompt}" if example.system else example.prompt
    return VLMPrompt(media + text, images, videos)


def render_vlm_prompt(processor, example) -> str:
    """The prompt text with its placeholders (see `prepare_vlm_prompt`)."""
    return prepare_vlm_prompt(processor, example).text


def media_kwargs(prompts: list[VLMPrompt]) -> dict:
    """The processor's `images=` / `videos=` arguments for these prompts (only those used)."""
    images = [im for p in prompts for im in p.images]
    videos = [v for p in prompts for v in p.videos]
    return {**({"images": images} if images else {}), **({"videos": videos} if videos else {})}


def encode_vlm_prompts(processor, examples, device) -> tuple[Tensor, Tensor, VisionInputs]:
    """Left-padded ids and mask [P, L] of the prompts with their images expanded into
    placeholder tokens, and the vision tensors of those P prompts."""
    prompts = [prepare_vlm_prompt(processor, ex) for ex in examples]
    templated = bool(getattr(processor, "chat_template", None))
    enc = processor(
        text=[p.text for p in prompts],
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=not templated,
        **media_kwargs(prompts),
    )
    tensors = {k: v.to(device) for k, v in enc.items() if k not in TOKEN_KEYS}
    tt = enc.get("mm_token_type_ids")
    vision = VisionInputs(
        tensors,
        None if tt is None else tt.to(device),
        tuple(len(p.images) for p in prompts),
        tuple(len(p.videos) for p in prompts),
    )
    return enc["input_ids"].to(device), enc["attention_mask"].to(device), vision


def lora_targets(model, names) -> list[str] | str:
    """LoRA `target_modules` for `model`: the module names `names` for a text model; for a
    vision-language model a regex (peft full-matches it) that reaches those names inside
    its language model only, so the vision tower and the projector stay as they are."""
    if getattr(model.config, "vision_config", None) is None:
        return list(names)
    inner = hf_model(model)
    lm = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    prefix = next((n for n, m in inner.named_modules() if m is lm and n), None)
    if prefix is None:
        raise ValueError(
            f"model.lora: cannot find the language model inside {type(inner).__name__} "
            "(no get_decoder()); use model.branch_kind=full for this model"
        )
    alternatives = "|".join(re.escape(n) for n in names)
    return rf"{re.escape(prefix)}\.(?:.*\.)?(?:{alternatives})"


# ----------------------------------------------------------------------------- forward
def prompt_positions(model, ids_P_L: Tensor, mask_P_L: Tensor, vision: VisionInputs):
    """Positions of the prompt tokens ([P, L], or [3, P, L] for multimodal RoPE) and the
    position of the first token after each prompt, [P]."""
    core = getattr(hf_model(model), "model", None)
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


def vision_prefill(model, ids_P_L: Tensor, mask_P_L: Tensor, vision: VisionInputs, group_size: int):
    """Run the P prompts once with their vision inputs (`copd.policy.sampler.prefill`) and
    repeat the KV cache G times.

    Returns (last-position logits [P, V], cache with P*G rows, prompt positions, next
    position per row [P*G]). Differentiable, as copd.policy.sampler's shared prefill."""
    pos, nxt = prompt_positions(model, ids_P_L, mask_P_L, vision)
    dtype = next(model.parameters()).dtype
    kw = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in vision.tensors.items()}
    last, cache = prefill(model, ids_P_L, mask_P_L, pos, **kw)
    if not hasattr(cache, "batch_repeat_interleave"):
        raise TypeError(
            f"{type(cache).__name__} cannot repeat along the batch; image rollouts need a "
            "DynamicCache (the default for transformers models)"
        )
    cache.batch_repeat_interleave(group_size)
    return last, cache, pos, nxt.repeat_interleave(group_size)


@torch.no_grad()
def sample_vlm_rollouts(
    model,
    processor,
    examples,
    decoding: Decoding,
    *,
    group_size: int,
    generator: torch.Generator | None = None,
    device=None,
):
    """`copd.policy.rollout.sample_rollouts` for prompts with images (see the module docstring)."""
    device = device or next(model.parameters()).device
    G = group_size
    tok = processor.tokenizer
    eos_id, pad_id = tok.eos_token_id, tok.pad_token_id
    ids_P, mask_P, vision = encode_vlm_prompts(processor, examples, device)
    generator = device_generator(generator, device)
    logits, cache, pos, nxt_B = vision_prefill(model, ids_P, mask_P, vision, G)
    logits = logits.float().repeat_interleave(G, dim=0)
    mask_B = mask_P.repeat_interleave(G, dim=0)
    comp = decode(
        model, logits, cache, mask_B, nxt_B, decoding, eos_id=eos_id, pad_id=pad_id,
        generator=generator, positions=lambda p_B: _text_positions(p_B, 1, pos),
    )  # fmt: skip
    cmask = completion_mask(comp, eos_id).float()
    texts = decode_completions(tok, comp, cmask)
    rep = [ex for ex in examples for _ in range(G)]
    ids_B = ids_P.repeat_interleave(G, dim=0)
    return RolloutBatch(rep, ids_B, mask_B, comp, cmask, texts, G, vision=vision)


def vlm_completion_logits(model, batch) -> Tensor:
    """Logits [B, T, V] predicting each completion token of an image batch: the P prompts
    once with their vision inputs, the cache repeated G times, then the completions."""
    G = batch.group_size
    ids_P, mask_P = batch.prompt_ids_B_P[::G], batch.prompt_mask_B_P[::G]
    last, cache, pos, nxt_B = vision_prefill(model, ids_P, mask_P, batch.vision, G)
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
        **{cache_kw(model): cache},
    )
    return torch.cat([first, out.logits], dim=1)
