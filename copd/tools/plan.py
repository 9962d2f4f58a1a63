"""`copd plan`: GPU memory and FLOPs of a CoPD run, per branch, before renting the GPUs.

    copd plan --model /models/Qwen2.5-1.5B-Instruct --branches 2 --dtype bfloat16 \\
        --prompts 32 --samples 8 --prompt-len 256 --completion-len 1024
    copd plan --model DIR --lora --lora-rank 32          # LoRA branches on one shared base
    copd plan --arch hidden=896,layers=24,heads=14,kv_heads=2,vocab=151936,intermediate=4864

The architecture comes from the model folder's config.json (Llama / Qwen2 / Qwen3 /
Mistral-style decoders; hidden size, layers, heads, kv heads, head dim, vocabulary,
intermediate size, tied embeddings) or from `--arch`. `--params N` alone gives the
weights, gradients, optimizer and FLOPs but no activations.

What each figure counts (bytes; "dtype" is `--dtype`):

- weights: every parameter (full branch), or the LoRA adapters (peft keeps them in fp32);
- gradients: one per trainable parameter, in its dtype;
- optimizer: torch's AdamW: two moments in the parameter's dtype (torch keeps them in the
  parameter's dtype: fp32 for fp32 weights, bf16 for bf16 weights) + one fp32 step counter
  per tensor; `--adam-fp32` plans fp32 moments instead;
- activations: the tensors saved for backward by one training forward of a branch over
  its batch (native prompts x samples, plus in phase II the cross batches from each
  peer), counted op by op for the transformers implementation (per layer and token:
  eager attention 10h + 4i + heads x L + 2 elements, SDPA 8h + 2 kv_dim + 4i + heads + 2 (the attention output is the output projection's input);
  plus the final norm, the kept rows of the LM head input and the fp32 log-softmax over
  the completion tokens); no activation checkpointing;
- KV cache: the built-in decoder's cache for sampling the branch's batch (prompt +
  completion, every layer, keys and values);
- frozen base: LoRA branches read one shared frozen base (counted once, on the GPU that
  holds the branches); full branches keep the base on the CPU (diagnostics and merge);
- teacher scoring: the no-grad forward of a teacher over a cross batch (its logits and
  fp32 log-softmax); a `--teacher snapshot` adds a frozen copy of the branch's weights.

Measured against a real model on the CPU (tests/test_plan.py): weights, gradients and
optimizer state equal the measured bytes of a tiny Qwen2 + AdamW after one step exactly;
the activation estimate equals the bytes of the tensors autograd saves (eager and SDPA)
within 5%, and activations + gradients match the peak memory growth of a forward and
backward pass (torch.profiler's memory timeline) within 15%. GPUs hold more than
the sum: the CUDA context and the allocator's slack, planned here as 1.5 GiB per GPU.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
GPU_SIZES_GIB = (24, 40, 80, 141)
OVERHEAD_PER_GPU = int(1.5 * GIB)  # CUDA context, cuBLAS workspace, allocator slack
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Arch:
    """A Llama-family decoder: what the memory and FLOP counts need."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    intermediate: int
    tie: bool = True
    head_dim: int = 0  # 0: hidden // heads
    qkv_bias: bool = False  # Qwen2: True
    qk_norm: bool = False  # Qwen3: an RMSNorm on q and k per head

    @property
    def d(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection of one layer."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.d, self.kv_heads * self.d
        return {
            "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }  # fmt: skip

    def n_params(self) -> int:
        per_layer = sum(a * b for a, b in self.linear_shapes().values()) + 2 * self.hidden
        if self.qkv_bias:
            per_layer += (self.heads + 2 * self.kv_heads) * self.d
        if self.qk_norm:
            per_layer += 2 * self.d
        emb = self.vocab * self.hidden
        return emb * (1 if self.tie else 2) + self.layers * per_layer + self.hidden

    def n_tensors(self) -> int:
        per_layer = 7 + 2 + (3 if self.qkv_bias else 0) + (2 if self.qk_norm else 0)
        return (1 if self.tie else 2) + self.layers * per_layer + 1


def arch_from_config(config: dict) -> Arch:
    """An `Arch` from a transformers config.json (text part of a multimodal config)."""
    c = config.get("text_config") or config
    model_type = str(config.get("model_type", c.get("model_type", "")))
    if c.get("num_local_experts") or c.get("num_experts"):
        raise ValueError(f"{model_type}: mixture-of-experts models are not planned here")
    heads = int(c["num_attention_heads"])
    return Arch(
        hidden=int(c["hidden_size"]),
        layers=int(c["num_hidden_layers"]),
        heads=heads,
        kv_heads=int(c.get("num_key_value_heads") or heads),
        vocab=int(c["vocab_size"]),
        intermediate=int(c["intermediate_size"]),
        tie=bool(config.get("tie_word_embeddings", c.get("tie_word_embeddings", False))),
        head_dim=int(c.get("head_dim") or 0),
        qkv_bias=model_type.startswith("qwen2") or bool(c.get("attention_bias", False)),
        qk_norm=model_type.startswith("qwen3"),
    )


def parse_arch(text: str) -> Arch:
    """`hidden=896,layers=24,heads=14,kv_heads=2,vocab=151936,intermediate=4864[,tie=1]`."""
    kv = dict(part.split("=", 1) for part in text.split(",") if part)
    ints = {k: int(v) for k, v in kv.items() if k not in ("tie", "qkv_bias", "qk_norm")}
    flags = {
        k: kv[k].lower() in ("1", "true", "yes") for k in ("tie", "qkv_bias", "qk_norm") if k in kv
    }
    ints.setdefault("kv_heads", ints.get("heads", 1))
    try:
        return Arch(**ints, **flags)
    except TypeError as e:
        raise ValueError(
            f"--arch {text!r}: {e}; give hidden, layers, heads, vocab, intermediate "
            "(and kv_heads, head_dim, tie, qkv_bias, qk_norm)"
        ) from e


@dataclass(frozen=True)
class Workload:
    """One branch's batch per step and how its branches are trained."""

    branches: int = 2
    prompts: int = 16
    samples: int = 8
    prompt_len: int = 128
    completion_len: int = 512
    cross_prompts: int = 8  # phase II: prompts from each peer's domain
    cross_samples: int = 4
    dtype: str = "bfloat16"
    lora: bool = False
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = LORA_TARGETS
    attn: str = "sdpa"  # "eager" or "sdpa" (flash kernels save what SDPA saves)
    teacher: str = "live"  # "snapshot": a frozen copy per branch
    adam_fp32: bool = False
    micro_batch_rows: int = 0  # grpo.micro_batch_rows: rows per forward/backward (0 = all)

    @property
    def peers(self) -> int:
        return max(self.branches - 1, 0)

    @property
    def train_rows(self) -> int:
        """Rows in a branch's phase-II update: native + cross batches of every peer."""
        return self.prompts * self.samples + self.peers * self.cross_prompts * self.cross_samples

    @property
    def forward_rows(self) -> int:
        """Rows whose activations are held at once: a micro-batch (whole prompt groups)
        with gradient accumulation, else the whole update."""
        if not self.micro_batch_rows:
            return self.train_rows
        return min(self.train_rows, max(self.micro_batch_rows, self.samples))


def lora_params(arch: Arch, rank: int, targets: tuple[str, ...]) -> tuple[int, int]:
    """(parameters, tensors) of one LoRA adapter: A [r, in] and B [out, r] per target."""
    shapes = arch.linear_shapes()
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(f"unknown LoRA targets {sorted(unknown)}; use some of {sorted(shapes)}")
    n = sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)
    return arch.layers * n, arch.layers * 2 * len(targets)


def activation_bytes(arch: Arch, rows: int, prompt_len: int, completion_len: int, dtype_bytes: int,
                     attn: str = "sdpa", lora_rank: int = 0, lora_targets: int = 0) -> int:  # fmt: skip
    """Bytes autograd keeps from one training forward over `rows` sequences (docstring)."""
    h, i, L = arch.hidden, arch.intermediate, prompt_len + completion_len
    tokens = rows * L
    if attn == "eager":
        per_token = 10 * h + 4 * i + arch.heads * L + 2
    else:
        per_token = 8 * h + 2 * arch.kv_heads * arch.d + 4 * i + arch.heads + 2
    per_token += lora_rank * lora_targets  # each adapter's A output
    layers = arch.layers * tokens * per_token * dtype_bytes
    final = (tokens * (2 * h + 1) + rows * (completion_len + 1) * h) * dtype_bytes
    logprobs = rows * completion_len * arch.vocab * 4  # fp32 log-softmax output
    return layers + final + logprobs


@dataclass(frozen=True)
class Plan:
    """Per-branch bytes, shared bytes and FLOPs per step (see the module docstring)."""

    n_params: int
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int | None
    kv_cache: int | None
    teacher_scoring: int | None
    frozen_base: int  # LoRA: once per GPU holding the branches; full: 0 (kept on the CPU)
    flops_train: float
    flops_sample: float
    flops_score: float

    def per_branch(self) -> int:
        parts = (self.weights, self.gradients, self.optimizer, self.activations or 0,
                 self.kv_cache or 0, self.teacher_scoring or 0)  # fmt: skip
        return sum(parts)


def plan(w: Workload, arch: Arch | None = None, n_params: int | None = None) -> Plan:
    """The plan for `w` on a model given by `arch` and/or its parameter count."""
    if arch is None and n_params is None:
        raise ValueError("give a model directory, --arch or --params")
    n = n_params if n_params is not None else arch.n_params()
    n_tensors = arch.n_tensors() if arch is not None else 0
    b = DTYPE_BYTES[w.dtype]
    if w.lora:
        if arch is None:
            raise ValueError("LoRA plans need the architecture (--model or --arch)")
        trainable, tensors = lora_params(arch, w.lora_rank, w.lora_targets)
        p_bytes = 4  # peft keeps adapter weights in fp32 (autocast_adapter_dtype)
    else:
        trainable, tensors, p_bytes = n, n_tensors, b
    moment = 4 if w.adam_fp32 else p_bytes
    weights = trainable * p_bytes
    optimizer = 2 * trainable * moment + 4 * tensors
    act = kv = score = None
    if arch is not None:
        lt = len(w.lora_targets) if w.lora else 0
        act = activation_bytes(arch, w.forward_rows, w.prompt_len, w.completion_len, b, w.attn,
                               w.lora_rank if w.lora else 0, lt)  # fmt: skip
        sample_rows = w.prompts * w.samples + w.peers * w.cross_prompts * w.cross_samples
        kv = (
            2
            * arch.layers
            * arch.kv_heads
            * arch.d
            * sample_rows
            * (w.prompt_len + w.completion_len)
            * b
        )
        cross_rows = w.cross_prompts * w.cross_samples * w.peers
        score = cross_rows * (w.completion_len + 1) * arch.vocab * (b + 4)
    if w.teacher == "snapshot":
        score = (score or 0) + weights
    rows = w.train_rows
    tokens = rows * (w.prompt_len + w.completion_len)
    train_factor = 4 if w.lora else 6  # LoRA: no weight gradients for the frozen base
    return Plan(
        n_params=n,
        trainable=trainable,
        weights=weights,
        gradients=trainable * p_bytes,
        optimizer=optimizer,
        activations=act,
        kv_cache=kv,
        teacher_scoring=score,
        frozen_base=n * b if w.lora else 0,
        flops_train=float(train_factor * n * tokens),
        flops_sample=float(2 * n * tokens),
        flops_score=float(
            2 * n * w.cross_prompts * w.cross_samples * w.peers * (w.prompt_len + w.completion_len)
        ),  # fmt: skip
    )


def gpus_needed(p: Plan, w: Workload, gib: int) -> int | None:
    """GPUs of `gib` GiB this run needs (None: it does not fit).

    Branches sharing a GPU take turns within a step, so only their weights, gradients and
    optimizer state (and a snapshot teacher) stay: the working memory (activations, KV
    cache, scoring) is one branch's at a time."""
    cap = gib * GIB - OVERHEAD_PER_GPU
    working = (p.activations or 0) + (p.kv_cache or 0) + (p.teacher_scoring or 0)
    if w.lora:  # every branch on one GPU, around the shared base
        kept = p.weights + p.gradients + p.optimizer
        if w.teacher == "snapshot":
            kept += p.weights
        return 1 if p.frozen_base + w.branches * kept + working <= cap else None
    return w.branches if p.per_branch() <= cap else None


def _fmt(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / GIB:9.2f} GiB"


def report(p: Plan, w: Workload) -> str:
    """The plan as text: one line per figure, the GPUs it needs, FLOPs per step."""
    kind = f"LoRA r={w.lora_rank} on {','.join(w.lora_targets)}" if w.lora else "full weights"
    lines = [
        f"model: {p.n_params / 1e6:,.1f}M parameters, {w.dtype}; {w.branches} branches, {kind}",
        f"batch per branch: {w.prompts} prompts x {w.samples} samples + {w.peers} peer(s) x "
        f"{w.cross_prompts} x {w.cross_samples} cross; {w.prompt_len} + {w.completion_len} tokens",
        "",
        "per branch",
        f"  weights            {_fmt(p.weights)}   ({p.trainable / 1e6:,.2f}M trainable)",
        f"  gradients          {_fmt(p.gradients)}",
        f"  optimizer (AdamW)  {_fmt(p.optimizer)}",
        f"  activations        {_fmt(p.activations)}   (training forward/backward, {w.attn})",
        f"  KV cache           {_fmt(p.kv_cache)}   (sampling)",
        f"  teacher scoring    {_fmt(p.teacher_scoring)}   ({w.teacher} teacher)",
        f"  total              {_fmt(p.per_branch())}",
    ]
    if w.lora:
        lines.append(f"shared frozen base   {_fmt(p.frozen_base)}   (once, with every branch)")
    lines += ["", f"GPUs (each with {OVERHEAD_PER_GPU / GIB:.1f} GiB set aside for CUDA):"]
    for gib in GPU_SIZES_GIB:
        n = gpus_needed(p, w, gib)
        why = "reduce the batch or lengths" if w.lora else "shard a branch or reduce the batch"
        lines.append(f"  {gib:>3} GiB: " + (f"{n} x {gib} GiB" if n else f"does not fit ({why})"))
    lines += [
        "",
        "FLOPs per step per branch (dense matmuls; attention scores not counted)",
        f"  training   {p.flops_train:.3e}   ({'4' if w.lora else '6'} x N x tokens)",
        f"  sampling   {p.flops_sample:.3e}   (2 x N x tokens)",
        f"  scoring    {p.flops_score:.3e}   (2 x N x cross tokens, each teacher)",
    ]
    return "\n".join(lines)


def _arch_of(args: argparse.Namespace) -> Arch | None:
    if args.model:
        cfg_path = Path(args.model) / "config.json"
        if not cfg_path.exists():
            raise ValueError(f"--model {args.model}: no config.json there")
        return arch_from_config(json.loads(cfg_path.read_text()))
    return parse_arch(args.arch) if args.arch else None


def cmd_plan(args: argparse.Namespace) -> int:
    w = Workload(
        branches=args.branches, prompts=args.prompts, samples=args.samples,
        prompt_len=args.prompt_len, completion_len=args.completion_len,
        cross_prompts=args.cross_prompts, cross_samples=args.cross_samples, dtype=args.dtype,
        lora=args.lora, lora_rank=args.lora_rank,
        lora_targets=tuple(args.lora_targets.split(",")), attn=args.attn,
        teacher=args.teacher, adam_fp32=args.adam_fp32, micro_batch_rows=args.micro_batch_rows,
    )  # fmt: skip
    p = plan(w, _arch_of(args), args.params)
    print(report(p, w))
    if args.json:
        Path(args.json).write_text(
            json.dumps({**p.__dict__, "per_branch": p.per_branch()}, indent=2)
        )
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `copd plan` to a `copd` subparsers object."""
    d = Workload()
    p = subparsers.add_parser("plan", help="GPU memory and FLOPs per branch of a planned run")
    p.add_argument("--model", help="a local model directory (reads its config.json)")
    p.add_argument(
        "--arch", help="hidden=..,layers=..,heads=..,kv_heads=..,vocab=..,intermediate=..,tie=1"
    )
    p.add_argument("--params", type=int, help="parameter count N (overrides the architecture's)")
    p.add_argument("--branches", type=int, default=d.branches)
    p.add_argument("--dtype", default=d.dtype, choices=sorted(DTYPE_BYTES))
    p.add_argument("--lora", action="store_true", help="LoRA branches on a shared frozen base")
    p.add_argument("--lora-rank", type=int, default=d.lora_rank)
    p.add_argument("--lora-targets", default=",".join(LORA_TARGETS))
    p.add_argument("--prompts", type=int, default=d.prompts, help="prompts per step per branch")
    p.add_argument("--samples", type=int, default=d.samples, help="samples per prompt (G)")
    p.add_argument("--cross-prompts", type=int, default=d.cross_prompts)
    p.add_argument("--cross-samples", type=int, default=d.cross_samples)
    p.add_argument("--prompt-len", type=int, default=d.prompt_len)
    p.add_argument("--completion-len", type=int, default=d.completion_len)
    p.add_argument("--attn", default=d.attn, choices=["eager", "sdpa"])
    p.add_argument("--teacher", default=d.teacher, choices=["live", "snapshot"])
    p.add_argument("--adam-fp32", action="store_true", help="plan fp32 AdamW moments")
    p.add_argument(
        "--micro-batch-rows", type=int, default=0,
        help="grpo.micro_batch_rows: rows per forward/backward (gradient accumulation)",
    )  # fmt: skip
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_plan)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="copd")
    register(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["plan", *(argv or [])])
    return int(args.func(args) or 0)


__all__ = ["Arch", "Plan", "Workload", "arch_from_config", "plan", "report", "main", "register"]
