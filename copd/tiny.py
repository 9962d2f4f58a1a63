"""The tiny character-level demo model: tokenizer, builder, supervised warm-up, cache.

No pretrained model fits a 2-core CPU budget, so the demo builds its own: a random-init
Qwen2 (or Llama) with a ~30-token character vocabulary, then a short supervised warm-up
on the built-in tasks so that its base rewards sit between 0 and 1 (RL needs both
successes and failures in a group to learn anything).

    from copd.tiny import demo_base_model
    path = demo_base_model()            # built once (~30 s), then cached under $COPD_HOME/models
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)

`tiny_test_model(cache_dir)` is a smaller, faster variant for the test suite.
The cache key hashes every argument and `BUILD_VERSION`; bump it when the recipe changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from copd.tasks import Example, Task, builtin_alphabet, get_task

BUILD_VERSION = 2
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = SPECIAL_TOKENS
DEMO_TASKS = ("add", "rev", "sort", "count")

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- tokenizer
def default_alphabet() -> str:
    """Every built-in task character plus space, sorted: the demo vocabulary."""
    return "".join(sorted(set(builtin_alphabet() + " ")))


def build_char_tokenizer(alphabet: str | None = None) -> PreTrainedTokenizerFast:
    """A one-token-per-character tokenizer over `alphabet` (default: `default_alphabet()`).

    Ids: <pad>=0 <bos>=1 <eos>=2 <unk>=3, then the sorted characters. Encoding prepends
    <bos> (a post-processor, so `add_special_tokens=False` leaves it out); padding is on
    the left, as generation needs. Unknown characters map to <unk>.
    """
    chars = sorted(set(alphabet if alphabet is not None else default_alphabet()))
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *chars])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()  # join characters back without separators
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
    )


# ----------------------------------------------------------------------------- model
def build_tiny_model(
    out_dir: str | Path,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    intermediate: int | None = None,
    max_position: int = 64,
    seed: int = 0,
    arch: str = "qwen2",
) -> Path:
    """Save a random-init causal LM with tied embeddings and the char tokenizer to `out_dir`.

    `arch` is "qwen2" or "llama". The folder loads with `AutoModelForCausalLM` and
    `AutoTokenizer`; its generation config carries the bos/eos/pad ids.
    """
    model, tokenizer = _new_model(hidden, layers, heads, intermediate, max_position, seed, arch)
    _save(model, tokenizer, Path(out_dir))
    return Path(out_dir)


def _new_model(
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int | None,
    max_position: int,
    seed: int,
    arch: str,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    if hidden % heads:
        raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
    tokenizer = build_char_tokenizer()
    tokenizer.model_max_length = max_position
    common: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate or 4 * hidden,
        max_position_embeddings=max_position,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    archs = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    if arch not in archs:
        raise ValueError(f"arch={arch!r} is not supported; use one of {sorted(archs)}")
    config_cls, model_cls = archs[arch]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**common))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model, tokenizer


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# ----------------------------------------------------------------------------- warm-up
def _sft_batch(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded <bos> prompt answer <eos> rows; labels only on answer + eos.

    Returns input_ids_B_T, attention_mask_B_T, labels_B_T (-100 where no loss)."""
    prompts = tokenizer([e.prompt for e in examples])["input_ids"]
    answers = tokenizer([e.answer for e in examples], add_special_tokens=False)["input_ids"]
    rows = [p + a + [tokenizer.eos_token_id] for p, a in zip(prompts, answers, strict=True)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, p) in enumerate(zip(rows, prompts, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, len(p) : len(row)] = ids[i, len(p) : len(row)]
    return ids, mask, labels


def warmup(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[Task],
    steps: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    log: Log | None = None,
) -> dict[str, float]:
    """Supervised warm-up on an equal mix of the tasks' training examples (never the
    held-out split); loss on answer tokens and the end token only; AdamW at constant `lr`.

    Returns {"loss": mean loss over the last 10% of steps, "seconds": wall time}."""
    if not tasks:
        raise ValueError("warmup needs at least one task")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    # Equal shares; the remainder goes to the first tasks so every batch has batch_size rows.
    shares = [batch_size // len(tasks) + (i < batch_size % len(tasks)) for i in range(len(tasks))]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    t0, losses = time.perf_counter(), []
    for step in range(steps):
        examples = [ex for task, k in zip(tasks, shares, strict=True) for ex in task.sample(rng, k)]
        ids, mask, labels = _sft_batch(tokenizer, examples)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log and (step + 1) % max(1, steps // 5) == 0:
            log(f"warm-up step {step + 1}/{steps} loss {losses[-1]:.3f}")
    model.eval()
    tail = losses[-max(1, steps // 10) :] if losses else [float("nan")]
    return {"loss": sum(tail) / len(tail), "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def sample_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Plain softmax sampling (no top-k/top-p) of one completion per prompt, decoded and
    cut before the first <eos>. Special tokens sampled mid-answer stay in the text (so
    they count as wrong)."""
    torch.manual_seed(seed)
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    out = model.generate(
        **enc,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    texts = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        # generate pads after eos, and <pad> can also be sampled: cut at eos only.
        cut = row.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row else len(row)
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=False))
    return texts


def sampled_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    n: int = 128,
    temperature: float = 1.0,
    seed: int = 0,
) -> float:
    """Mean reward of one T-sampled completion on each of the first `n` held-out prompts."""
    examples = task.eval_examples(n)
    completions = sample_completions(
        model, tokenizer, [e.prompt for e in examples], task.max_answer_chars + 1, temperature, seed
    )
    rewards = [task.reward(e, c) for e, c in zip(examples, completions, strict=True)]
    return sum(rewards) / len(rewards)


# ----------------------------------------------------------------------------- cache
def copd_home() -> Path:
    """$COPD_HOME, default ~/.copd."""
    return Path(os.environ.get("COPD_HOME") or Path.home() / ".copd")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never build the same model at once."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_settings(
    tasks: Sequence[str],
    task_options: Mapping[str, Mapping[str, Any]] | None,
    hidden: int,
    layers: int,
    heads: int,
    warmup_steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    eval_n: int,
    arch: str,
) -> tuple[dict[str, Any], list[Task]]:
    """Every setting that determines a built model (the cache key, and the record a
    shipped model is matched against), and the task objects it warms up on."""
    options = {t: dict((task_options or {}).get(t, {})) for t in tasks}
    task_objs = [get_task(t, **options[t]) for t in tasks]
    # Key on the effective difficulty, so changing a task's default rebuilds the model.
    for t, obj in zip(tasks, task_objs, strict=True):
        if hasattr(obj, "difficulty"):
            options[t]["difficulty"] = obj.difficulty
    settings = dict(
        build_version=BUILD_VERSION,
        tasks=list(tasks),
        task_options=options,
        hidden=hidden,
        layers=layers,
        heads=heads,
        warmup_steps=warmup_steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        eval_n=eval_n,
        arch=arch,
    )
    return settings, task_objs


def cached_base_model(
    prefix: str,
    tasks: Sequence[str],
    task_options: Mapping[str, Mapping[str, Any]] | None,
    hidden: int,
    layers: int,
    heads: int,
    warmup_steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    eval_n: int,
    arch: str,
    cache_dir: str | Path | None,
    log: Log | None,
) -> Path:
    """Build, warm up and evaluate a tiny model once; later calls return the cached folder.

    The folder is `<cache_dir or $COPD_HOME/models>/<prefix>-<hash of all arguments>`. It is
    built in a temporary sibling folder and renamed into place, under a file lock, so a
    reader never sees a half-written model and concurrent callers build it only once."""
    settings, task_objs = build_settings(
        tasks, task_options, hidden, layers, heads, warmup_steps, lr, batch_size, seed,
        eval_n, arch,
    )  # fmt: skip
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir is not None else copd_home() / "models"
    final = root / f"{prefix}-{key}"
    if (final / "warmup.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f"{prefix}-{key}.lock"):
        if (final / "warmup.json").exists():  # another process built it while we waited
            return final
        say = log or (lambda _msg: None)
        say(f"building {final.name} (once; cached afterwards)")
        model, tokenizer = _new_model(hidden, layers, heads, None, 64, seed, arch)
        stats = warmup(model, tokenizer, task_objs, warmup_steps, lr, batch_size, seed, log)
        rewards = {t.name: sampled_accuracy(model, tokenizer, t, eval_n) for t in task_objs}
        say("base reward (T=1): " + ", ".join(f"{k} {v:.2f}" for k, v in rewards.items()))
        tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-{key}-", dir=root))
        try:
            _save(model, tokenizer, tmp)
            info = dict(
                settings,
                final_loss=stats["loss"],
                warmup_seconds=round(stats["seconds"], 2),
                base_reward=rewards,
                base_reward_n=eval_n,
                parameters=sum(p.numel() for p in model.parameters()),
                torch=torch.__version__,
            )
            (tmp / "warmup.json").write_text(json.dumps(info, indent=2) + "\n")
            if final.exists():  # a stale, incomplete folder (no warmup.json): replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def demo_base_model(
    tasks: Sequence[str] = DEMO_TASKS,
    hidden: int = 128,
    layers: int = 2,
    warmup_steps: int = 500,
    lr: float = 3e-3,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    log: Log | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int = 64,
    arch: str = "qwen2",
    rebuild: bool = False,
) -> Path:
    """The demo's warmed-up base model folder.

    With the default settings this is the model shipped with the package
    (`copd/assets/demo-base/`), identical on every machine: a warm-up of 500 steps is not
    reproducible across CPUs and thread counts (float reductions differ and the steps
    amplify it), so tables made elsewhere would start from another model. Other settings,
    or `rebuild=True` (`copd base --rebuild`, `COPD_DEMO_REBUILD=1`), build the model
    locally once and cache it. `warmup.json` inside records the settings, the final loss
    and the base reward per task (one T=1 sample on each of 128 held-out prompts)."""
    rebuild = rebuild or os.environ.get("COPD_DEMO_REBUILD", "") not in ("", "0")
    if not rebuild and (shipped := shipped_demo_base()) is not None:
        settings, _ = build_settings(
            tasks, task_options, hidden, layers, 4, warmup_steps, lr, batch_size, seed, 128, arch
        )
        recorded = json.loads((shipped / "warmup.json").read_text())
        if {k: recorded.get(k) for k in settings} == json.loads(json.dumps(settings)):
            return shipped
    return cached_base_model(
        "demo", tasks, task_options, hidden, layers, 4, warmup_steps, lr, batch_size, seed,
        128, arch, cache_dir, log,
    )  # fmt: skip


SHIPPED_DEMO_BASE = Path(__file__).resolve().parent / "assets" / "demo-base"


def shipped_demo_base() -> Path | None:
    """The shipped demo base model folder, or None when the package lacks it."""
    ok = (SHIPPED_DEMO_BASE / "warmup.json").exists() and (
        SHIPPED_DEMO_BASE / "model.safetensors"
    ).exists()
    return SHIPPED_DEMO_BASE if ok else None


def greedy_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[str] = DEMO_TASKS,
    n: int = 128,
    max_new_tokens: int = 8,
) -> dict[str, dict[str, float]]:
    """Greedy accuracy per task on the first `n` prompts of the test and validation splits
    (as the engine's evaluation decodes: `copd.rollout.sample_rollouts`, greedy)."""
    from copd.rollout import sample_rollouts

    out: dict[str, dict[str, float]] = {"test": {}, "validation": {}}
    for name in tasks:
        task = get_task(name)
        for split in out:
            examples = task.split_examples(split, n)
            with torch.inference_mode():
                batch = sample_rollouts(
                    model, tokenizer, examples, group_size=1, temperature=1.0,
                    max_new_tokens=max_new_tokens, greedy=True,
                )  # fmt: skip
            rewards = [task.reward(e, t) for e, t in zip(batch.examples, batch.texts, strict=True)]
            out[split][name] = round(sum(rewards) / len(rewards), 6)
    return out


def ship_demo_base(out_dir: str | Path = SHIPPED_DEMO_BASE, log: Log | None = print) -> Path:
    """Build the demo base with the default settings on this machine and write it, with
    its greedy test/validation scores (`scores.json`), to `out_dir` (by default the
    package's shipped copy, `copd base --ship`). The build always runs afresh."""
    import platform

    with tempfile.TemporaryDirectory() as tmp:
        built = demo_base_model(cache_dir=tmp, log=log, rebuild=True)
        out = Path(out_dir)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(built, out)
    model, tok = load(out)
    scores = greedy_scores(model, tok)
    meta = {
        "scores": scores,
        "n": 128,
        "decoding": "greedy, max_new_tokens 8 (the demo's sampling.max_new_tokens)",
        "built_with": {
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor() or "",
            "threads": torch.get_num_threads(),
        },
    }
    (out / "scores.json").write_text(json.dumps(meta, indent=2) + "\n")
    if log:
        log(f"shipped demo base -> {out}: {scores}")
    return out


def tiny_test_model(cache_dir: str | Path, seed: int = 0) -> Path:
    """A 64x2 model warmed up briefly on the four demo tasks at difficulty 1, for tests:
    builds in a few seconds and is cached in `cache_dir`."""
    return cached_base_model(
        "test", DEMO_TASKS, {t: {"difficulty": 1} for t in DEMO_TASKS}, 64, 2, 4, 100, 3e-3,
        32, seed, 32, "qwen2", cache_dir, None,
    )  # fmt: skip


def load(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a saved tiny model and its tokenizer (float32, eval mode)."""
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path)
