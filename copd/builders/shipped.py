"""Where the shipped demo base model lives (no torch: `copd check` reads its config).

The files are written by `copd base --ship` (copd/builders/demo_base.py) and shipped in
the package (`assets/demo-base/`).
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_DEMO_BASE = Path(__file__).resolve().parent / "assets" / "demo-base"


def shipped_demo_base() -> Path | None:
    """The shipped demo base model folder, or None when the package lacks it."""
    ok = (SHIPPED_DEMO_BASE / "warmup.json").exists() and (
        SHIPPED_DEMO_BASE / "model.safetensors"
    ).exists()
    return SHIPPED_DEMO_BASE if ok else None
