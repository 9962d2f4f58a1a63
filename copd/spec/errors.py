"""The config's one error type and the check that raises it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the field and the fix."""


def check(ok: bool, name: str, fix: str) -> None:
    """Raise `ConfigError("<name>: <fix>")` unless `ok`."""
    if not ok:
        raise ConfigError(f"{name}: {fix}")
