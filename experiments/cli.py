"""`copd reproduce | pilot | drift`: registered on the copd CLI by entry point."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    """Add the experiments' subcommands to copd's argparse subparsers (imports stay light)."""
    from experiments import drift, pilot, reproduce, study

    reproduce.add_parser(subparsers)
    pilot.add_parser(subparsers)
    drift.add_parser(subparsers)
    study.add_parser(subparsers)
