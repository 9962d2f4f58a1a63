"""reasoning-gym datasets as tasks: `rg:<dataset>` (needs `pip install -e .[rg]`).

    task = get_task("rg:basic_arithmetic?num_terms=2&max_digits=1")  # options in the name
    task = get_task("rg:leg_counting", max_animals=3)                # or as keyword options
    # in a run config: BranchSpec("legs", "rg:leg_counting"), task_options={"rg:leg_counting": {...}}

The options after `?` (`k=v` pairs joined by `&`, values read as JSON where they parse:
`3`, `0.5`, `true`, `[1,2]`) and the keyword options are merged (keywords win) and go
to `reasoning_gym.create_dataset(<dataset>, **options)`, except for these, which are
copd's own:

- `holdout_fraction` (0.25) and `val_fraction` (0.125): shares of questions in the
  held-out test split and the validation split;
- `pool_size` (100000) and `seed` (0): the procedural dataset drawn from (item i is
  generated from `seed` and i, so the pool is the same in every process);
- `system_prompt` ("default"): one of reasoning-gym's `SYSTEM_PROMPTS` names, any other
  text used as is, or "" for none; it asks for the answer inside `<answer>...</answer>`;
- `strict` (false): reward 1.0 only for a full score (otherwise the scorer's own partial
  credit, e.g. 0.01 for a well-formed wrong answer on some datasets, is the reward);
- `name`: the domain name (default: the dataset's name).

The split follows copd's rule for every task (copd/tasks/base.py): a question is held out
(test, then validation) by a stable hash of (task name, question text), so
membership depends neither on the seed nor on the pool. The verifier is the dataset's
own `score_answer`, applied to the text inside the last `<answer>` tags of the
completion (the whole completion when there are none).
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Hashable
from typing import Any
from urllib.parse import parse_qsl

from copd.errors import ConfigError
from copd.tasks.base import Example, SyntheticTask, stable_fraction

PREFIX = "rg:"
COPD_OPTIONS = (
    "holdout_fraction",
    "val_fraction",
    "pool_size",
    "seed",
    "system_prompt",
    "strict",
    "name",
)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`"rg:leg_counting?max_animals=3"` -> `("leg_counting", {"max_animals": 3})`."""
    body = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    dataset, _, query = body.partition("?")
    options: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return dataset, options


class ReasoningGymTask(SyntheticTask):
    """One reasoning-gym procedural dataset, split by question hash (module docstring)."""

    alphabet = (
        string.printable
    )  # real tokenizers only; the demo's character model maps the rest to <unk>

    def __init__(
        self,
        dataset: str,
        *,
        holdout_fraction: float = 0.25,
        val_fraction: float = 0.125,
        pool_size: int = 100_000,
        seed: int = 0,
        system_prompt: str = "default",
        strict: bool = False,
        name: str | None = None,
        **dataset_options: Any,
    ) -> None:
        try:
            import reasoning_gym
            from reasoning_gym.utils import SYSTEM_PROMPTS
        except ImportError as e:
            raise ValueError(
                f"task 'rg:{dataset}' needs reasoning-gym: pip install -e '.[rg]' ({e})"
            ) from e
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS:
            raise ValueError(
                f"task 'rg:{dataset}': reasoning-gym has no dataset {dataset!r}; "
                f"some it has: {', '.join(sorted(DATASETS)[:12])}, ..."
            )
        if pool_size < 1:
            raise ValueError(f"task 'rg:{dataset}': pool_size={pool_size} must be >= 1")
        self.name = name or dataset
        self.dataset_name = dataset
        self.dataset_options = dict(dataset_options)
        try:
            self.dataset = reasoning_gym.create_dataset(
                dataset, size=pool_size, seed=seed, **dataset_options
            )
        except (TypeError, AssertionError, ValueError) as e:
            raise ConfigError(
                f"task 'rg:{dataset}': bad options {sorted(dataset_options)} ({e}); see the "
                f"fields of its config class in reasoning-gym"
            ) from e
        self.pool_size = pool_size
        self.system = SYSTEM_PROMPTS.get(system_prompt, system_prompt) or None
        self.strict = strict
        self._entries: dict[int, dict[str, Any]] = {}
        self._by_prompt: dict[str, dict[str, Any]] = {}
        # Sets the split fractions (checked there); `difficulty` only labels the eval seed.
        super().__init__(difficulty=1, holdout_fraction=holdout_fraction, val_fraction=val_fraction)
        self.difficulty = json.dumps(
            {"seed": seed, "pool": pool_size, **dataset_options}, sort_keys=True, default=str
        )
        self.max_answer_chars = max(
            len(self._entry(i)["answer"]) for i in range(min(pool_size, 64))
        )

    def _entry(self, index: int) -> dict[str, Any]:
        if index not in self._entries:
            entry = self.dataset[index]
            self._entries[index] = entry
            self._by_prompt[entry["question"]] = entry
        return self._entries[index]

    def draw(self, rng: random.Random) -> Hashable:
        return rng.randrange(self.pool_size)

    def split_fraction(self, key: Hashable) -> float:
        # By the question's text, not the pool index: the split does not depend on the seed.
        return stable_fraction(self.name, self._entry(key)["question"])

    def render(self, key: Hashable) -> Example:
        entry = self._entry(key)
        return Example(entry["question"], str(entry["answer"]), self.name, system=self.system)

    def reward(self, example: Example, completion: str) -> float:
        from reasoning_gym.utils import extract_answer

        entry = self._by_prompt.get(example.prompt) or {
            "question": example.prompt,
            "answer": example.answer,
            "metadata": {},
        }
        answer = extract_answer(completion)
        answer = completion.strip() if answer is None else answer
        try:
            score = float(self.dataset.score_answer(answer=answer, entry=entry))
        except Exception:  # a scorer that chokes on malformed text: that answer is wrong
            score = 0.0
        return (1.0 if score >= 1.0 else 0.0) if self.strict else score

    def __repr__(self) -> str:
        return f"ReasoningGymTask({self.dataset_name!r}, {self.dataset_options})"


def from_spec(spec: str, **options: Any) -> ReasoningGymTask:
    """The task for `rg:<dataset>?k=v&...` with keyword `options` merged over the query."""
    dataset, query = parse_spec(spec)
    return ReasoningGymTask(dataset, **{**query, **options})
