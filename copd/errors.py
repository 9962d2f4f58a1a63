"""Errors a user fixes by changing a setting, in one place (a leaf module: anything in
the engine may import it; `copd.spec` re-exports ConfigError).

ConfigError is a ValueError (raised while a config is read or checked); the others have
`user_error = True`. `copd` prints each as one line, not a traceback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the field and the fix."""


def check(ok: bool, name: str, fix: str) -> None:
    """Raise `ConfigError("<name>: <fix>")` unless `ok`."""
    if not ok:
        raise ConfigError(f"{name}: {fix}")


class NonFiniteWeights(RuntimeError):
    """A policy's weights (or the probabilities they give) became inf/NaN: the updates
    diverged. copd.train.guard.diverged builds the message with the step and the fix."""

    user_error = True


class RunFolderBusy(RuntimeError):
    """Another live process writes the run folder (copd.train.folders.hold_run_folder); nothing
    of the run was touched."""

    user_error = True
