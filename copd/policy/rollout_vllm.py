"""vLLM rollouts for a branch worker (`sampling.engine: "vllm"`), with weights synced from
the trainer after every update; the built-in decoder (copd/policy/rollout.py) where vLLM is absent.

    sampler, note = rollout_engine(world.vllm, tok, branch, in_process)  # None + why: fallback
    batch = sampler.sample(examples, group_size, generator=world.gens[branch.name])
    ...                                              # one optimizer update of the branch
    sampler.mark_stale()                             # the next sample() pushes new weights

One `VLLMSampler` per branch worker: a `vllm.LLM` built from the run's base model folder
on the branch's GPU, taking `sampling.vllm_gpu_memory_utilization` of it. Its batches have
the layout of `copd.policy.rollout.sample_rollouts`: prompts rendered and left-padded by the same
helpers and tokenizer, completions cut after the first eos and padded with the pad id,
completion masks and texts the same, so every loss and diagnostic downstream is unchanged.
vLLM only draws the tokens; log-probs are still computed by the trainer's model.

Determinism: each rollout draws one number from the branch's CPU generator (checkpointed),
and request i asks vLLM for its G samples with seed base + i*G (vLLM seeds sample j of a
request with seed + j), so a run and its resumption draw the same tokens given the same
vLLM build and GPU. They are not the HF decoder's tokens: the two engines use different
kernels and random streams.

Weights: `vllm.LLM.collective_rpc` runs a function on vLLM's worker, which calls the vLLM
model's `load_weights` with (Hugging Face name, tensor) pairs, in buckets, then the prefix
cache is reset (it holds keys/values of the old weights). Full branches send their state
dict; LoRA branches send base + scaling * B @ A for every adapted layer, computed from the
adapter without touching the trainer's module (`lora_merged_weights`). When the worker's
process holds a single branch (a Ray actor), vLLM's engine runs in that process and the
tensors go over on the GPU; otherwise each engine is a child process and they go through
the CPU.

Text prompts only: vision-language models keep the built-in decoder (with a warning).
Evaluation and the diagnostics probe stay on the built-in greedy/seeded decoder.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from copd.math.losses import completion_mask
from copd.policy.batch import RolloutBatch
from copd.policy.chat import render_prompts
from copd.policy.decoding import Decoding
from copd.policy.sampler import decode_completions, encode_prompts
from copd.spec import RunConfig
from copd.tasks import Example

FALLBACK = "vLLM not available: {reason}; sampling with the built-in decoder"
SYNC_BUCKET_BYTES = 256 * 2**20  # weights per load_weights call (bounds the extra memory)


# ---------------------------------------------------------------------- pure pieces
def request_seeds(generator: torch.Generator, n_prompts: int, group_size: int) -> list[int]:
    """One vLLM seed per prompt, drawn with a single number from `generator`: prompt i gets
    base + i*G, so the seeds vLLM derives for its G samples (seed + j) never collide."""
    base = int(torch.randint(0, 2**31, (1,), generator=generator))
    return [base + i * group_size for i in range(n_prompts)]


def completion_tensor(
    token_ids: Sequence[Sequence[int]],
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    stopped: Sequence[bool] | None = None,
) -> Tensor:
    """Completion ids [B, T] in the built-in decoder's layout from B token-id lists: each
    row cut after its first eos (kept), then padded with `pad_id`; T is the longest row.
    `stopped[b]`: row b ended on a stop token the engine left out of its ids (eos is then
    appended), as vLLM reports with finish_reason "stop"."""
    rows = []
    for b, ids in enumerate(token_ids):
        ids = list(ids)[:max_new_tokens]
        if eos_id in ids:
            ids = ids[: ids.index(eos_id) + 1]
        elif stopped is not None and stopped[b] and len(ids) < max_new_tokens:
            ids.append(eos_id)
        rows.append(ids)
    T = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), T), pad_id, dtype=torch.long)
    for b, ids in enumerate(rows):
        out[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def encode_text_prompts(
    tokenizer, examples: list[Example], group_size: int, device=None
) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and mask [B, P] for B = len(examples) x G rows, exactly as
    `copd.policy.rollout.sample_rollouts` builds them (chat template or plain, same padding)."""
    texts, templated = render_prompts(tokenizer, examples)
    ids, mask = encode_prompts(tokenizer, texts, device or "cpu", not templated)
    return ids.repeat_interleave(group_size, 0), mask.repeat_interleave(group_size, 0)


def batch_from_token_ids(
    tokenizer,
    examples: list[Example],
    group_size: int,
    prompt_ids_B_P: Tensor,
    prompt_mask_B_P: Tensor,
    token_ids: Sequence[Sequence[Sequence[int]]],
    max_new_tokens: int,
    stopped: Sequence[Sequence[bool]] | None = None,
) -> RolloutBatch:
    """A RolloutBatch from an engine's samples: `token_ids[i][j]` is sample j of prompt i
    (len(examples) lists of G lists). Rows are grouped per prompt, as everywhere."""
    if len(token_ids) != len(examples) or any(len(s) != group_size for s in token_ids):
        raise ValueError(
            f"expected {len(examples)} prompts x {group_size} samples, got "
            f"{[len(s) for s in token_ids]}"
        )
    flat = [ids for samples in token_ids for ids in samples]
    flat_stop = None if stopped is None else [s for row in stopped for s in row]
    comp = completion_tensor(
        flat, tokenizer.eos_token_id, tokenizer.pad_token_id, max_new_tokens, flat_stop
    ).to(prompt_ids_B_P.device)
    cmask = completion_mask(comp, tokenizer.eos_token_id).float()
    texts = decode_completions(tokenizer, comp, cmask)
    rep = [ex for ex in examples for _ in range(group_size)]
    return RolloutBatch(rep, prompt_ids_B_P, prompt_mask_B_P, comp, cmask, texts, group_size)


# ---------------------------------------------------------------------- weights
def _plain_name(key: str) -> str:
    """A peft state-dict key as the plain model names it (what vLLM's loader expects)."""
    return key.removeprefix("base_model.model.").replace(".base_layer.", ".")


@torch.no_grad()
def lora_merged_weights(peft_model, adapter: str) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) for every weight of the base model with `adapter` merged in: W +
    scaling * B @ A on each adapted layer (peft's own `get_delta_weight`), the base's
    tensor elsewhere. LoRA factors of any adapter are left out. The module is not changed
    (no merge/unmerge): a merged tensor is a new one, the others are the live ones."""
    from peft.tuners.lora import LoraLayer

    layers = {n: m for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)}
    for key, value in peft_model.state_dict().items():
        if ".lora_" in key or "lora_magnitude_vector" in key:
            continue
        owner, _, leaf = key.rpartition(".base_layer.")
        layer = layers.get(owner) if leaf == "weight" else None
        if layer is not None and adapter in layer.lora_A.keys() | layer.lora_embedding_A.keys():
            value = value + layer.get_delta_weight(adapter).to(value.dtype)
        yield _plain_name(key), value.detach()


def branch_weights(branch) -> Iterator[tuple[str, Tensor]]:
    """The branch's current policy as full weights, named like the base model's checkpoint."""
    if branch.kind == "lora":
        yield from lora_merged_weights(branch.view.module, branch.view.adapter)
    else:
        for k, v in branch.view.module.state_dict().items():
            yield k, v.detach()


def buckets(
    weights: Iterable[tuple[str, Tensor]], max_bytes: int
) -> Iterator[list[tuple[str, Tensor]]]:
    """Group (name, tensor) pairs into lists of at most `max_bytes` (one tensor at least)."""
    bucket: list[tuple[str, Tensor]] = []
    size = 0
    for name, t in weights:
        n = t.numel() * t.element_size()
        if bucket and size + n > max_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, t))
        size += n
    if bucket:
        yield bucket


def _load_on_worker(worker, weights: list[tuple[str, Tensor]]) -> None:
    """Runs inside vLLM's worker (via collective_rpc): load weights into its model."""
    model = worker.get_model() if hasattr(worker, "get_model") else worker.model_runner.model
    model.load_weights(weights=weights)


# ---------------------------------------------------------------------- the engine
def unavailable_reason(device: torch.device, tokenizer=None) -> str | None:
    """Why this worker cannot sample with vLLM, or None when it can."""
    from copd.policy.vlm import is_processor

    if tokenizer is not None and is_processor(tokenizer):
        return "image-text models keep image and video prompts on the built-in decoder"
    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed (pip install 'copd[vllm]')"
    if not torch.cuda.is_available():
        return "no CUDA device"
    if torch.device(device).type != "cuda":
        return f"the branch is on {device}, not a CUDA device"
    return None


@dataclass(frozen=True)
class VLLMSettings:
    """A run's vLLM engines (`sampling.engine: "vllm"`), built once with the world: the
    base model folder each engine loads (`model_path`, resolved), its `dtype` and `seed`,
    the share of the branch's GPU it may take (`gpu_memory_utilization`), whether it
    sleeps while the branch trains (`sleep`), and the `decoding` it samples with (the
    training rollouts')."""

    model_path: str
    dtype: str
    seed: int
    gpu_memory_utilization: float
    sleep: bool
    decoding: Decoding

    @classmethod
    def from_config(
        cls, cfg: RunConfig, model_path: str, decoding: Decoding
    ) -> VLLMSettings | None:
        """The settings when the run samples with vLLM; None for the built-in decoder."""
        s = cfg.sampling
        if s.engine != "vllm":
            return None
        return cls(
            model_path, cfg.model.dtype, cfg.seed, s.vllm_gpu_memory_utilization, s.vllm_sleep,
            decoding,
        )  # fmt: skip


class VLLMSampler:
    """A vLLM engine for one branch: samples text rollouts, takes weight updates."""

    def __init__(self, settings: VLLMSettings, tokenizer, device, in_process: bool) -> None:
        self.settings = settings
        self.decoding = settings.decoding
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.stale = False
        self.asleep = False
        # Callables cross to vLLM's worker by pickle; in-process, tensors stay on the GPU.
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        if in_process:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # What vLLM will do (a user's own setting wins).
        self.in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        from vllm import LLM

        kw = dict(
            model=settings.model_path,
            dtype=settings.dtype,
            seed=settings.seed,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enable_sleep_mode=settings.sleep,
            skip_tokenizer_init=True,  # prompts go in as ids; texts come from our tokenizer
            generation_config="vllm",  # ignore the folder's sampling defaults: ours only
        )
        with _visible_device(self.device, self.in_process):
            self.llm = LLM(**kw)

    def sample(
        self,
        examples: list[Example],
        group_size: int,
        generator: torch.Generator,
        greedy: bool = False,
    ) -> RolloutBatch:
        """G samples per example; the same RolloutBatch layout as the built-in decoder."""
        from vllm import SamplingParams

        s = self.decoding
        self.wake()
        prompt_ids, prompt_mask = encode_text_prompts(
            self.tokenizer, examples, group_size, self.device
        )
        distinct = [
            prompt_ids[i][prompt_mask[i].bool()].tolist()
            for i in range(0, prompt_ids.shape[0], group_size)
        ]
        seeds = request_seeds(generator, len(examples), group_size)
        params = [
            SamplingParams(
                n=group_size,
                seed=seed,
                temperature=0.0 if greedy or s.greedy else s.temperature,
                top_p=s.top_p,
                max_tokens=s.max_new_tokens,
                stop_token_ids=[self.tokenizer.eos_token_id],
                detokenize=False,
            )
            for seed in seeds
        ]
        prompts = [{"prompt_token_ids": ids} for ids in distinct]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        token_ids = [[list(c.token_ids) for c in o.outputs] for o in outs]
        stopped = [[c.finish_reason == "stop" for c in o.outputs] for o in outs]
        batch = batch_from_token_ids(
            self.tokenizer, examples, group_size, prompt_ids, prompt_mask,
            token_ids, s.max_new_tokens, stopped,
        )  # fmt: skip
        self.sleep()
        return batch

    def sync_weights(self, weights: Iterable[tuple[str, Tensor]]) -> None:
        """Load the trainer's current weights into the engine (then clear its prefix cache,
        which holds keys and values computed with the old ones). The engine stays awake:
        a rollout follows, and puts it back to sleep."""
        self.wake()
        for bucket in buckets(weights, SYNC_BUCKET_BYTES):
            if not self.in_process:  # to a child process: through the CPU
                bucket = [(n, t.to("cpu", copy=True)) for n, t in bucket]
            self.llm.collective_rpc(_load_on_worker, args=(bucket,))
        self.llm.reset_prefix_cache()
        self.stale = False

    def mark_stale(self) -> None:
        """The trainer's weights changed: sync before the next sample."""
        self.stale = True

    def sleep(self) -> None:
        if self.settings.sleep and not self.asleep:
            self.llm.sleep(level=1)  # weights to host memory, KV cache freed
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False


class _visible_device:
    """vLLM's engine takes "the" GPU of its process: cuda:0 in-process (a Ray actor sees
    only its own GPU), and for a child engine process the branch's GPU is made the only
    visible one while the child starts."""

    def __init__(self, device: torch.device, in_process: bool) -> None:
        self.device, self.in_process, self.old = device, in_process, None

    def __enter__(self):
        idx = self.device.index or 0
        if self.in_process:
            if idx != 0:
                raise RuntimeError(
                    f"sampling.engine=vllm: an in-process engine runs on cuda:0, the branch "
                    f"is on {self.device}; use backend.kind=ray (one GPU per branch)"
                )
            return self
        self.old = os.environ.get("CUDA_VISIBLE_DEVICES")
        visible = self.old.split(",") if self.old else [str(i) for i in range(idx + 1)]
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[idx]
        return self

    def __exit__(self, *exc):
        if not self.in_process:
            if self.old is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = self.old
        return False


# ---------------------------------------------------------------------- worker wiring
def rollout_engine(
    settings: VLLMSettings | None, tokenizer, branch, in_process: bool
) -> tuple[VLLMSampler | None, str]:
    """The branch's vLLM sampler when the run samples with vLLM (`settings`, None for
    the built-in decoder) and it can run here, and a note: "hf", "vllm", or the fallback
    warning. The worker that samples for the branch builds it once and owns it
    (copd/train/workers/local.py `LocalWorker`, a Ray actor): one engine per branch
    worker, held nowhere else. `in_process`: the process holds this branch alone (a Ray
    actor), so the engine runs inside it."""
    if settings is None:
        return None, "hf"
    reason = unavailable_reason(branch.device, tokenizer)
    sampler = None
    if reason is None:
        try:
            sampler = VLLMSampler(settings, tokenizer, branch.device, in_process)
        except ImportError as e:  # installed but broken (CUDA/torch mismatch, ...)
            reason = f"importing vllm failed ({e})"
    return sampler, "vllm" if sampler else FALLBACK.format(reason=reason)


def report_engines(log_event: Callable[..., None], notes: dict[str, str], step: int) -> None:
    """Log each distinct fallback warning once (notes: branch -> engine note) through
    `log_event` (a `Logger`'s), when a worker group is built (once per run)."""
    for note in dict.fromkeys(notes.values()):
        if note not in ("hf", "vllm"):
            log_event(note, level="warning", step=step)
