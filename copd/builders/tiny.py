"""The tiny character-level demo model: tokenizer, builder, supervised warm-up, cache.

No pretrained model fits a 2-core CPU budget, so the demo builds its own: a random-init
Qwen2 (or Llama) with a ~30-token character vocabulary, then a short supervised warm-up
on the built-in tasks so that its base rewards sit between 0 and 1 (RL needs both
successes and failures in a group to learn anything).

    path = cached_base_model("demo", Recipe(hidden=64), cache_dir=None, log=print)
    model, tok = load(path)             # built once, then cached under $COPD_HOME/models

The demo's default base is shipped with the package (copd/builders/demo_base.py). `tiny_test_model
(cache_dir)` is a smaller, faster variant for the test suite. The cache key hashes every
`Recipe` setting and `BUILD_VERSION`; bump it when the recipe changes.
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
from dataclasses import dataclass
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
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never build the same model at once."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Recipe:
    """Every setting that determines a built tiny base model: the cache key, and the record
    a shipped model is matched against."""

    tasks: tuple[str, ...] = DEMO_TASKS
    task_options: Mapping[str, Mapping[str, Any]] | None = None
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    warmup_steps: int = 500
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    eval_n: int = 128
    arch: str = "qwen2"

    def settings(self) -> tuple[dict[str, Any], list[Task]]:
        """The settings as recorded in warmup.json, and the task objects it warms up on."""
        options = {t: dict((self.task_options or {}).get(t, {})) for t in self.tasks}
        task_objs = [get_task(t, **options[t]) for t in self.tasks]
        # Key on the effective difficulty, so changing a task's default rebuilds the model.
        for t, obj in zip(self.tasks, task_objs, strict=True):
            if hasattr(obj, "difficulty"):
                options[t]["difficulty"] = obj.difficulty
        settings = dict(
            build_version=BUILD_VERSION,
            tasks=list(self.tasks),
            task_options=options,
            hidden=self.hidden,
            layers=self.layers,
            heads=self.heads,
            warmup_steps=self.warmup_steps,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=self.seed,
            eval_n=self.eval_n,
            arch=self.arch,
        )
        return settings, task_objs


def cached_base_model(
    prefix: str, recipe: Recipe, cache_dir: str | Path | None, log: Log | None
) -> Path:
    """Build, warm up and evaluate a tiny model once; later calls return the cached folder.

    The folder is `<cache_dir or $COPD_HOME/models>/<prefix>-<hash of all arguments>`. It is
    built in a temporary sibling folder and renamed into place, under a file lock, so a
    reader never sees a half-written model and concurrent callers build it only once."""
    settings, task_objs = recipe.settings()
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir is not None else copd_home() / "models"
    final = root / f"{prefix}-{key}"
    if (final / "warmup.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f"{prefix}-{key}.lock"):
        if (final / "warmup.json").exists():  # another process built it while we waited
            return final
        say = log or (lambda _msg: None)
        say(f"building {final.name} (once; cached afterwards)")
        model, tokenizer = _new_model(
            recipe.hidden, recipe.layers, recipe.heads, None, 64, recipe.seed, recipe.arch
        )
        stats = warmup(
            model,
            tokenizer,
            task_objs,
            recipe.warmup_steps,
            recipe.lr,
            recipe.batch_size,
            recipe.seed,
            log,
        )
        rewards = {t.name: sampled_accuracy(model, tokenizer, t, recipe.eval_n) for t in task_objs}
        say("base reward (T=1): " + ", ".join(f"{k} {v:.2f}" for k, v in rewards.items()))
        tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-{key}-", dir=root))
        try:
            _save(model, tokenizer, tmp)
            info = dict(
                settings,
                final_loss=stats["loss"],
                warmup_seconds=round(stats["seconds"], 2),
                base_reward=rewards,
                base_reward_n=recipe.eval_n,
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


def tiny_test_model(cache_dir: str | Path, seed: int = 0) -> Path:
    """A 64x2 model warmed up briefly on the four demo tasks at difficulty 1, for tests:
    builds in a few seconds and is cached in `cache_dir`."""
    recipe = Recipe(
        task_options={t: {"difficulty": 1} for t in DEMO_TASKS}, hidden=64, warmup_steps=100,
        batch_size=32, seed=seed, eval_n=32,
    )  # fmt: skip
    return cached_base_model("test", recipe, cache_dir, None)


def load(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a saved tiny model and its tokenizer (float32, eval mode)."""
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path)
