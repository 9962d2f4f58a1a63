"""The demo's base model: shipped with the package, the same on every machine.

    from copd.builders.demo_base import demo_base_model
    path = demo_base_model()             # copd/builders/assets/demo-base/ (default settings)
    path = demo_base_model(hidden=64)    # other settings: built once here and cached
    ship_demo_base("copd/builders/assets/demo-base")   # `copd base --ship`: regenerate the shipped copy

A supervised warm-up of 500 steps is not reproducible across CPUs and thread counts, so
the default demo base is built once by `ship_demo_base` and shipped (2 MB of safetensors
with its settings, `warmup.json`, and its greedy test / validation scores, `scores.json`);
`tests/test_shipped_base.py` re-scores it. The builder itself is copd/builders/tiny.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from copd.builders import tiny
from copd.builders.shipped import SHIPPED_DEMO_BASE, shipped_demo_base
from copd.builders.tiny import DEMO_TASKS, Log, Recipe
from copd.tasks import get_task

if TYPE_CHECKING:
    from copd.spec import ModelConfig


def resolve_model_path(mcfg: ModelConfig, log: Log | None = None) -> str:
    """The base model a config names: its path, or for `demo` the cached built-in tiny
    model (built and warmed up on first use)."""
    if mcfg.path != "demo":
        return mcfg.path
    return str(
        demo_base_model(
            hidden=mcfg.demo_hidden,
            layers=mcfg.demo_layers,
            warmup_steps=mcfg.demo_warmup_steps,
            lr=mcfg.demo_warmup_lr,
            log=log,
            **({"tasks": mcfg.demo_tasks} if mcfg.demo_tasks else {}),
        )
    )


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
    (`copd/builders/assets/demo-base/`), identical on every machine: a warm-up of 500 steps is not
    reproducible across CPUs and thread counts (float reductions differ and the steps
    amplify it), so tables made elsewhere would start from another model. Other settings,
    or `rebuild=True` (`copd base --rebuild`, `COPD_DEMO_REBUILD=1`), build the model
    locally once and cache it. `warmup.json` inside records the settings, the final loss
    and the base reward per task (one T=1 sample on each of 128 held-out prompts)."""
    recipe = Recipe(
        tuple(tasks), task_options, hidden, layers, 4, warmup_steps, lr, batch_size, seed, 128,
        arch,
    )  # fmt: skip
    rebuild = rebuild or os.environ.get("COPD_DEMO_REBUILD", "") not in ("", "0")
    if not rebuild and (shipped := shipped_demo_base()) is not None:
        settings, _ = recipe.settings()
        recorded = json.loads((shipped / "warmup.json").read_text())
        if {k: recorded.get(k) for k in settings} == json.loads(json.dumps(settings)):
            return shipped
    return tiny.cached_base_model("demo", recipe, cache_dir, log)


def greedy_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[str] = DEMO_TASKS,
    n: int = 128,
    max_new_tokens: int = 8,
) -> dict[str, dict[str, float]]:
    """Greedy accuracy per task on the first `n` prompts of the test and validation splits
    (as the engine's evaluation decodes: `copd.policy.rollout.sample_rollouts`, greedy)."""
    from copd.policy.decoding import Decoding
    from copd.policy.rollout import accuracy

    greedy = Decoding(max_new_tokens=max_new_tokens, greedy=True)
    out: dict[str, dict[str, float]] = {"test": {}, "validation": {}}
    for name in tasks:
        task = get_task(name)
        for split in out:
            examples = task.split_examples(split, n)
            with torch.inference_mode():
                score = accuracy(model, tokenizer, task, examples, greedy)
            out[split][name] = round(score, 6)
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
    model, tok = tiny.load(out)
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
