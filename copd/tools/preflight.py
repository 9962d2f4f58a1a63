"""Checks that fail a run before it starts, with a message that names the fix.

    copd check demo --set model.path=/nonexistent     # exit 2: "model.path: ... does not exist"
    check_config(cfg)                                  # the same, in this process
    check_model_fits(world)                            # the loaded tokenizer vs the embeddings

`copd check` (and `check_config`) validates the config, builds every branch's task (a
dataset file is read and each row validated), and loads the model's config and tokenizer,
not its weights: a missing model, an unknown task, a malformed dataset row, or a tokenizer
whose ids do not fit the model's embedding rows are reported in seconds. The launcher runs
it in a child process when a run is submitted (the dashboard never imports torch), so a
run that could not start is refused at submit and nothing is recorded.

The guard inside the training loop (weights still finite after each step) is
copd/train/guard.py.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from copd.common.tags import control_char
from copd.spec import ConfigError

PROBE_PROMPTS = 8  # prompts per task whose token ids are checked against the embeddings


__all__ = [
    "check_config",
    "check_model_fits",
    "check_run_group",
    "check_run_name",
    "check_tokenizer_fits",
]


# The run store's columns for a run's name and group (storage/models.py: String(250)); a
# longer value fits SQLite but PostgreSQL refuses it, so every back end refuses it at submit.
MAX_LABEL_CHARS = 250


def _check_label(field: str, value: str) -> None:
    """No control characters (a tab or newline breaks tables and logs), at most 250 chars."""
    bad = control_char(value)
    if bad is not None:
        raise ConfigError(
            f"{field}: {value[:40]!r} holds the control character {bad!r}; use printable "
            "characters only"
        )
    if len(value) > MAX_LABEL_CHARS:
        raise ConfigError(
            f"{field}: {len(value)} characters, the run store holds at most {MAX_LABEL_CHARS}; "
            f"shorten it (it starts {value[:40]!r})"
        )


def check_run_name(name: str) -> str:
    """A run name becomes part of a folder name: no path separators, no '..'; it is stored
    too: no control characters, at most MAX_LABEL_CHARS characters."""
    if not name or "/" in name or "\\" in name or ".." in name or "\0" in name:
        raise ConfigError(
            f"name: {name!r} cannot name a run folder; use a name without '/', '\\' or '..' "
            "(letters, digits, '-', '_', '.', spaces)"
        )
    _check_label("name", name)
    return name


def check_run_group(group: str | None) -> str | None:
    """An ablation group is stored beside the name: the same limits (None: no group)."""
    if group is not None:
        _check_label("group", group)
    return group


def _text_tokenizer(tok):
    return getattr(tok, "tokenizer", tok)  # a multimodal processor wraps one


def _vocab_rows(model_config) -> int | None:
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else None
    return getattr(text or model_config, "vocab_size", None)


def check_tokenizer_fits(tok, rows: int, tasks: dict, where: str) -> None:
    """ConfigError unless every id the tokenizer can emit for the tasks' prompts (and its
    special tokens) is below `rows`, the model's embedding rows."""
    from copd.policy.chat import render_prompts

    t = _text_tokenizer(tok)
    worst, source = -1, ""
    for tid in (t.pad_token_id, t.eos_token_id, t.bos_token_id):
        if tid is not None and tid > worst:
            worst, source = tid, "its special tokens"
    for name, task in tasks.items():
        examples = task.sample(random.Random(0), PROBE_PROMPTS)
        texts, _ = render_prompts(tok, examples)
        for ids in t(texts, add_special_tokens=False)["input_ids"]:
            if ids and max(ids) > worst:
                worst, source = max(ids), f"task {name}'s prompts"
    if worst >= rows:
        raise ConfigError(
            f"model.path: the tokenizer of {where} gives token id {worst} ({source}; it has "
            f"{len(t)} tokens) but the model's embedding has {rows} rows (ids 0..{rows - 1}): "
            "use the tokenizer saved with this model, or resize the model's embeddings "
            "(model.resize_token_embeddings(len(tokenizer))) and save it again"
        )


def build_tasks(cfg) -> dict:
    """Every branch's task, built as World.build builds them; ConfigError naming the branch."""
    from copd.tasks import get_task
    from copd.tasks.media import check_task_media

    tasks = {}
    for b in cfg.branches:
        if b.task in tasks:
            continue
        try:
            options = cfg.task_options.get(b.task, {})
            tasks[b.task] = get_task(b.task, trust_task_code=cfg.trust_task_code, **options)
        except ConfigError:
            raise
        except (ValueError, TypeError, ImportError, AttributeError, OSError) as e:
            raise ConfigError(f"branches[{b.name}].task: {e}") from None
    check_task_media(tasks)
    return tasks


def check_config(cfg) -> str:
    """Validate `cfg` and check what a trainer would load, without the weights. Returns a
    one-line summary; raises ConfigError naming the fix."""
    check_run_name(cfg.name)
    check_run_group(cfg.group)
    cfg.validate()
    tasks = build_tasks(cfg)
    path = cfg.model.path
    if path == "demo":  # the built-in tiny model: built on first use; the shipped one's sizes
        from copd.builders.shipped import shipped_demo_base

        shipped = shipped_demo_base()
        if shipped is not None:
            check_workload_fits(cfg, json.loads((shipped / "config.json").read_text()))
        return f"ok: {len(tasks)} task(s), the built-in demo model"
    if cfg.model.gguf_file:
        return f"ok: {len(tasks)} task(s); {path} ({cfg.model.gguf_file}) is read at start"
    p = Path(path).expanduser()
    if not p.exists() and (path.startswith((".", "/", "~")) or p.suffix):
        raise ConfigError(f"model.path: {path} does not exist; give a model directory or 'demo'")
    from transformers import AutoConfig

    try:
        mc = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.path: {path}: no model config could be read ({e})") from None
    try:
        if getattr(mc, "vision_config", None) is not None:
            from transformers import AutoProcessor

            tok = AutoProcessor.from_pretrained(path)
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, AttributeError, ImportError) as e:
        raise ConfigError(f"model.path: {path}: its tokenizer does not load ({e})") from None
    rows = _vocab_rows(mc)
    if rows:
        check_tokenizer_fits(tok, rows, tasks, path)
    check_workload_fits(cfg, mc.to_dict())
    return f"ok: {len(tasks)} task(s); {path}: {mc.model_type}, {rows} embedding rows"


def machine_memory(cfg) -> tuple[int, str]:
    """(bytes, what) one branch may hold at most: a CUDA device's memory where the run
    will use one, else this machine's RAM (no torch import where no GPU can be used: a CPU
    run's `copd check` stays fast)."""
    import psutil

    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") == ""  # the launcher hides every GPU
    if any(b.device != "cpu" for b in cfg.branches) and not hidden:
        try:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(0)
                return int(props.total_memory), f"GPU 0 ({props.name})"
        except Exception:  # no usable CUDA: the run falls back to the CPU
            pass
    return int(psutil.virtual_memory().total), "this machine's RAM"


def check_workload_fits(cfg, model_config: dict) -> None:
    """Refuse, naming the setting, what cannot run on this model and machine: completions
    longer than the model's positions, and a training step whose activations alone
    (copd plan's estimate, a lower bound of what a branch holds) exceed the memory."""
    from copd.tools.plan import activation_bytes, arch_from_config

    text = model_config.get("text_config") or model_config
    positions = text.get("max_position_embeddings")
    sp, gp = cfg.sampling, cfg.grpo
    if positions and sp.max_new_tokens >= int(positions):
        raise ConfigError(
            f"sampling.max_new_tokens: {sp.max_new_tokens} new tokens do not fit the model's "
            f"{positions} positions (with the prompt); use fewer than {positions}"
        )
    try:
        arch = arch_from_config(model_config)
    except (KeyError, TypeError, ValueError):
        return  # not a decoder the planner knows: nothing to estimate
    rows = gp.prompts_per_step * gp.group_size
    if gp.micro_batch_rows:
        rows = min(rows, max(gp.micro_batch_rows, gp.group_size))
    prompt_len = min(int(positions or 128), 128)
    need = activation_bytes(arch, rows, prompt_len, sp.max_new_tokens, 4)
    have, where = machine_memory(cfg)
    if need > have:
        raise ConfigError(
            f"grpo.prompts_per_step: {gp.prompts_per_step} prompts x {gp.group_size} samples "
            f"x {sp.max_new_tokens} tokens need at least {need / 2**30:,.1f} GiB of "
            f"activations per branch, more than {where} ({have / 2**30:,.1f} GiB): lower "
            "grpo.prompts_per_step or sampling.max_new_tokens, or set grpo.micro_batch_rows"
        )


def check_model_fits(world) -> None:
    """The loaded tokenizer's ids against the loaded model's embedding rows (a model built
    or resized in code is not covered by `copd check`)."""
    module = world.base.module
    emb = module.get_input_embeddings() if hasattr(module, "get_input_embeddings") else None
    if emb is not None and hasattr(emb, "num_embeddings"):
        check_tokenizer_fits(world.tokenizer, emb.num_embeddings, world.tasks, world.base_path)
