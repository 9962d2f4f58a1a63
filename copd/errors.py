"""Engine errors a user fixes by changing a setting (a leaf module: anything may import it).

Each has `user_error = True`, so `copd` prints its message as one line, not a traceback.
"""

from __future__ import annotations


class NonFiniteWeights(RuntimeError):
    """A policy's weights (or the probabilities they give) became inf/NaN: the updates
    diverged. copd.tools.preflight.diverged builds the message with the step and the fix."""

    user_error = True


class RunFolderBusy(RuntimeError):
    """Another live process writes the run folder (copd.runner.hold_run_folder); nothing
    of the run was touched."""

    user_error = True
