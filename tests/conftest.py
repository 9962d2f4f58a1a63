"""Shared fixtures. Everything runs offline: no hub downloads, loopback only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    """A 64x2 char-level Qwen2 warmed up briefly on the built-in tasks. Built once and
    cached in .cache/test-models (keyed by a hash of its settings), so later sessions and
    the subprocess tests reuse it."""
    from pathlib import Path

    from copd.tiny import tiny_test_model

    return str(tiny_test_model(Path(__file__).resolve().parent.parent / ".cache" / "test-models"))


def tiny_overrides(model_dir: str) -> list[str]:
    """`--set` overrides that make any preset run in seconds on the tiny test model."""
    return [
        f"model.path={model_dir}",
        "threads=1",
        "schedule.cycles=2",
        "schedule.rl_steps=2",
        "schedule.opd_steps=1",
        "schedule.diag_every=0",
        "schedule.eval_every_cycles=1",
        "grpo.prompts_per_step=4",
        "grpo.group_size=4",
        "opd.cross_prompts_per_step=4",
        "opd.cross_group_size=2",
        "sampling.max_new_tokens=4",
        "eval.n_prompts=8",
        "diagnostics.n_prompts=4",
        'task_options={"add": {"difficulty": 1}, "rev": {"difficulty": 1}, '
        '"sort": {"difficulty": 1}, "count": {"difficulty": 1}}',
    ]


@pytest.fixture
def tiny_cfg(tiny_model_dir):
    """Factory: a validated preset config shrunk to the tiny test model."""
    from copd import presets
    from copd.config import apply_overrides

    def make(preset: str = "demo", *extra: str):
        return apply_overrides(
            presets.get(preset), tiny_overrides(tiny_model_dir) + list(extra)
        ).validate()

    return make
