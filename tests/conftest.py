"""Shared fixtures. Everything runs offline: no hub downloads, loopback only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from pg_support import pg_server  # noqa: E402, F401  (the session's PostgreSQL cluster)
from tiny_support import tiny_overrides  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    """A 64x2 char-level Qwen2 warmed up briefly on the built-in tasks. Built once and
    cached in .cache/test-models (keyed by a hash of its settings), so later sessions and
    the subprocess tests reuse it."""
    from pathlib import Path

    from copd.builders.tiny import tiny_test_model

    return str(tiny_test_model(Path(__file__).resolve().parent.parent / ".cache" / "test-models"))


@pytest.fixture
def tiny_cfg(tiny_model_dir):
    """Factory: a validated preset config shrunk to the tiny test model."""
    from copd.spec import apply_overrides, presets

    def make(preset: str = "demo", *extra: str):
        return apply_overrides(
            presets.get(preset), tiny_overrides(tiny_model_dir) + list(extra)
        ).validate()

    return make
