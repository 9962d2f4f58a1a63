"""Verifiable tasks: prompts, a fixed held-out split and an exact-match verifier.

    from copd.tasks import get_task, builtin_task_names
    task = get_task("add", difficulty=2)          # a built-in domain
    task = get_task("mypkg.tasks:make_task", n=3)  # or your own: factory(**options) -> Task
    task = get_task("dataset#gsm8k", path="gsm8k.jsonl", verifier="numeric")  # a data file
    task = get_task("rg:leg_counting?max_animals=3")  # a reasoning-gym dataset (extra `rg`)

A `#label` suffix is ignored when resolving the task; it lets two branches use the same
factory with different `task_options` (which are keyed by the full task string).
`dataset` is short for `copd.tasks.datasets:from_file` (see copd/tasks/datasets.py).

See `copd.tasks.base` for the interface and `copd.tasks.synthetic` for the built-ins;
`shapes` (images) and `motion` (video clips) are the built-in multimodal domains, and
`copd.tasks.media` reads images and video frames.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from copd.tasks.base import DIFFICULTIES, Example, SyntheticTask, Task
from copd.tasks.datasets import DatasetError, DatasetTask, from_file
from copd.tasks.media import Video
from copd.tasks.motion import MotionTask
from copd.tasks.shapes import ShapesTask
from copd.tasks.synthetic import BUILTIN_TASKS, builtin_alphabet
from copd.tasks.verifiers import VERIFIERS, get_verifier

ALIASES = {"dataset": "copd.tasks.datasets:from_file"}
# Built-in domains whose prompts carry images (shapes) or video clips (motion): for
# vision-language models only, so they stay out of `builtin_task_names()` and of the
# character vocabulary of the text demo model.
IMAGE_TASKS = {"shapes": ShapesTask, "motion": MotionTask}

__all__ = [
    "ALIASES",
    "IMAGE_TASKS",
    "DIFFICULTIES",
    "VERIFIERS",
    "DatasetError",
    "DatasetTask",
    "Example",
    "SyntheticTask",
    "MotionTask",
    "ShapesTask",
    "Task",
    "TRUSTED_FACTORIES",
    "UntrustedTaskCode",
    "Video",
    "builtin_alphabet",
    "builtin_task_names",
    "from_file",
    "get_task",
    "get_verifier",
    "needs_trust",
]


def builtin_task_names() -> list[str]:
    """Names of the built-in synthetic domains, sorted."""
    return sorted(BUILTIN_TASKS)


def needs_trust(spec: str) -> bool:
    """Whether `spec` names a custom `module:factory` (code the config names), which loads
    only with `trust_task_code`; built-in domains, `rg:` datasets and `dataset` do not."""
    spec = ALIASES.get(spec.split("#", 1)[0], spec.split("#", 1)[0])
    return ":" in spec and not spec.startswith("rg:") and spec not in TRUSTED_FACTORIES


def get_task(spec: str, *, trust_task_code: bool = False, **options: Any) -> Task:
    """A task from a built-in name or an import path `package.module:factory`.

    `options` go to the task's constructor (built-ins take `difficulty` and
    `holdout_fraction`) or to the factory, which must return a `Task`. A `#label` suffix
    is dropped first; `dataset` stands for `copd.tasks.datasets:from_file`.

    An import path runs code named by the config (`os:system` would run a shell command),
    so it needs `trust_task_code=True` (RunConfig.trust_task_code, `--trust-task-code`);
    the built-in domains, `rg:` datasets and `dataset` never do.
    """
    spec = spec.split("#", 1)[0]
    if spec.startswith("rg:"):  # a reasoning-gym dataset (copd/tasks/reasoning_gym.py)
        from copd.tasks.reasoning_gym import from_spec

        return from_spec(spec, **options)
    spec = ALIASES.get(spec, spec)
    if spec in BUILTIN_TASKS or spec in IMAGE_TASKS:
        cls = BUILTIN_TASKS.get(spec) or IMAGE_TASKS[spec]
        try:
            return cls(**options)
        except TypeError as e:
            raise ValueError(
                f"task {spec!r}: bad options {sorted(options)} ({e}); built-in tasks accept "
                "difficulty (1..5) and holdout_fraction"
            ) from e
    if ":" not in spec:
        raise ValueError(
            f"unknown task {spec!r}: use a built-in name "
            f"({', '.join(builtin_task_names() + sorted(IMAGE_TASKS))}) "
            "or an import path 'package.module:factory' where factory(**options) returns a Task"
        )
    if spec not in TRUSTED_FACTORIES and not trust_task_code:
        raise UntrustedTaskCode(
            f"task {spec!r} is a custom factory (module:factory), which imports and runs code "
            "named by the config; pass --trust-task-code if "
            "you trust it"
        )
    factory = _factory(spec)
    task = factory(**options)
    if not isinstance(task, Task):
        raise TypeError(
            f"task {spec!r}: the factory returned {type(task).__name__}, not a Task; "
            "return a copd.tasks.Task subclass"
        )
    return task


class UntrustedTaskCode(ValueError):
    """A `module:factory` task without the opt-in (`trust_task_code`)."""

    user_error = True  # one line in the CLI: the message names the flag


# Factories of this package: no user code runs, so no opt-in is asked for.
TRUSTED_FACTORIES = frozenset(ALIASES.values())


def _factory(spec: str) -> Any:
    """The callable that `spec` names, checked before it sees any option: a Task subclass
    or a Python function (a builtin such as os.system, or a class that builds something
    else, is no task factory), whose return annotation, when it has one, is a Task."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"task {spec!r}: cannot import module {module_name!r} ({e}); check that it is on "
            "sys.path (installed, or run from the directory that contains it)"
        ) from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"task {spec!r}: module {module_name!r} has no callable {attr!r}")
    if inspect.isclass(factory):
        ok = issubclass(factory, Task)
    else:
        ok = inspect.isfunction(factory) or inspect.ismethod(factory)
        returns = inspect.signature(factory).return_annotation if ok else None
        if ok and inspect.isclass(returns) and returns is not inspect.Signature.empty:
            ok = issubclass(returns, Task)
    if not ok:
        raise TypeError(
            f"task {spec!r}: {attr!r} is a {type(factory).__name__}, not a task factory; "
            "name a Python function that returns a copd.tasks.Task (or a Task subclass)"
        )
    return factory
