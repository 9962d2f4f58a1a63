"""The Task interface: training prompts, a validation split, a held-out test split and a
verifier.

A task is one domain (one branch's skill). Everything an algorithm needs from it:

    task = get_task("add", difficulty=2)
    train = task.sample(random.Random(0), 64)    # never drawn from validation or test
    val = task.val_examples(128)                  # fixed, seeded: choose settings on this
    test = task.eval_examples(128)                # fixed, seeded: report on this
    r = task.reward(test[0], "19")                # 1.0 or 0.0

Three disjoint splits. `SyntheticTask` assigns every input by a stable hash u in [0, 1)
of (task name, input): u < holdout_fraction is the test split (the same inputs as before
validation existed), the next `val_fraction` is validation, the rest is training. So
membership does not depend on the difficulty, the seed or the process, and sampling a
split simply rejects inputs of the others. Subclasses only say how to draw an input and
how to render it.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

DIFFICULTIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Example:
    """One prompt with its reference answer. `domain` is the task name.

    Optional: `system` is a system prompt (rendered through the chat template, see
    copd/policy/chat.py); `images` holds image file paths or drawable objects (`to_pil()`), and
    `videos` holds videos (`copd.tasks.media.Video`, a path, a list of frames, or any
    object with `frames()`), read when a prompt is encoded (copd/policy/vlm.py). Text-only models
    ignore both."""

    prompt: str
    answer: str
    domain: str
    system: str | None = None
    images: tuple[Any, ...] = ()
    videos: tuple[Any, ...] = ()


class Task(ABC):
    """A verifiable domain. Subclasses set `name` and `alphabet` and implement the methods.

    `alphabet` lists every character a prompt or an answer can contain (the character
    tokenizer is built from the union of the built-in tasks' alphabets).
    `max_answer_chars` bounds the answer length, so callers can size `max_new_tokens`.
    """

    name: str
    alphabet: str
    max_answer_chars: int

    @abstractmethod
    def sample(self, rng: random.Random, n: int) -> list[Example]:
        """`n` training examples drawn with `rng`; never from the held-out split."""

    @abstractmethod
    def eval_examples(self, n: int) -> list[Example]:
        """The first `n` examples of the fixed held-out test split (same on every call)."""

    def val_examples(self, n: int) -> list[Example]:
        """The first `n` examples of the fixed validation split (same on every call),
        disjoint from training and test: settings are chosen on it, tables report test."""
        raise NotImplementedError(
            f"task {self.name!r} has no validation split; implement val_examples(n)"
        )

    def split_examples(self, split: str, n: int) -> list[Example]:
        """`eval_examples` for split "test", `val_examples` for "validation"."""
        if split == "test":
            return self.eval_examples(n)
        if split == "validation":
            return self.val_examples(n)
        raise ValueError(f"split {split!r}: use 'validation' or 'test'")

    def reward(self, example: Example, completion: str) -> float:
        """Exact match: 1.0 if the completion (already cut at the end token by the caller)
        equals the answer after stripping surrounding whitespace, else 0.0. No partial
        credit is given: a near-miss is as wrong as noise, which keeps the verifier honest."""
        return 1.0 if completion.strip() == example.answer else 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) from a hash of `parts` that is stable across processes
    (Python's `hash` of str is salted per process, so it cannot be used here)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


SPLITS = ("train", "validation", "test")
# The standard test prompts a fresh draw leaves out: the first SCORED distinct inputs of
# each task's test stream (every earlier table scored at most eval.n_prompts = 128 of them).
SCORED = 512


class SyntheticTask(Task):
    """A generated task with hash-based validation and test splits.

    Subclasses implement `draw(rng) -> key` (a hashable input drawn from the training
    distribution at `self.difficulty`) and `render(key) -> Example`.
    """

    def __init__(
        self, difficulty: int, holdout_fraction: float = 0.25, val_fraction: float = 0.125
    ) -> None:
        if difficulty not in DIFFICULTIES:
            raise ValueError(
                f"{self.name}: difficulty={difficulty!r} is out of range; use an int in 1..5"
            )
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(
                f"{self.name}: holdout_fraction={holdout_fraction!r} must be in (0, 1), e.g. 0.25"
            )
        if not 0.0 < val_fraction < 1.0 - holdout_fraction:
            raise ValueError(
                f"{self.name}: val_fraction={val_fraction!r} must be in (0, "
                f"{1.0 - holdout_fraction:g}) so that training keeps some inputs, e.g. 0.125"
            )
        self.difficulty = difficulty
        self.holdout_fraction = holdout_fraction
        self.val_fraction = val_fraction
        self._fresh_keys: dict[int, list[Hashable]] = {}  # n -> fresh_examples' inputs
        self._keys: dict[tuple[str, str, int], list[Hashable]] = {}  # _fixed_keys, drawn once

    @abstractmethod
    def draw(self, rng: random.Random) -> Hashable:
        """One input from the task's distribution at this difficulty (held out or not)."""

    @abstractmethod
    def render(self, key: Hashable) -> Example:
        """The prompt and answer for an input drawn by `draw`."""

    def split_fraction(self, key: Hashable) -> float:
        """The input's stable position u in [0, 1) (override to hash a canonical form)."""
        return stable_fraction(self.name, key)

    def split_of(self, key: Hashable) -> str:
        """ "test", "validation" or "train" (independent of difficulty, seed and process)."""
        u = self.split_fraction(key)
        if u < self.holdout_fraction:
            return "test"
        return "validation" if u < self.holdout_fraction + self.val_fraction else "train"

    def is_held_out(self, key: Hashable) -> bool:
        """Whether an input belongs to the test split."""
        return self.split_of(key) == "test"

    def _draw_split(self, rng: random.Random, split: str) -> Hashable:
        # Rejection sampling keeps each split's input distribution equal to the task's.
        for _ in range(10_000):
            key = self.draw(rng)
            if self.split_of(key) == split:
                return key
        raise RuntimeError(
            f"{self.name}: could not draw a {split} input at difficulty {self.difficulty}; "
            f"change holdout_fraction ({self.holdout_fraction}) or val_fraction "
            f"({self.val_fraction})"
        )

    def sample(self, rng: random.Random, n: int) -> list[Example]:
        return [self.render(self._draw_split(rng, "train")) for _ in range(n)]

    def eval_examples(self, n: int) -> list[Example]:
        # Seeded by name and difficulty so every run evaluates on the same prompts. Distinct
        # inputs first; a small input space (add at difficulty 1 holds out ~25 pairs) is
        # then repeated in the same order rather than failing.
        return self._fixed(f"eval|{self.name}|{self.difficulty}", "test", n)

    def val_examples(self, n: int) -> list[Example]:
        return self._fixed(f"val|{self.name}|{self.difficulty}", "validation", n)

    def scored_keys(self) -> list[Hashable]:
        """The standard test stream's first SCORED distinct inputs: every test prompt any
        table before the fresh draw scored (fewer when the test split holds fewer)."""
        return self._fixed_keys(f"eval|{self.name}|{self.difficulty}", "test", SCORED)

    def test_split_exhausted(self) -> bool:
        """Whether every test input was already scored: the standard stream found fewer
        than SCORED distinct inputs in 50 x SCORED draws (add at the demo's difficulty
        holds out 110), so no fresh draw exists."""
        return len(self.scored_keys()) < SCORED

    def fresh_examples(self, n: int) -> list[Example]:
        """`n` test-split examples none of which `eval_examples` gives for any n up to
        SCORED (every table before the fresh draw scored at most 128), drawn from a stream
        of their own. Held out like the test split, but not its distribution: the inputs
        left out are the most probable ones, so the draw leans to the rarer inputs. Drawn
        once per task and n. Raises ValueError when the test split holds too few inputs
        beyond the scored ones."""
        if n not in self._fresh_keys:
            stream = f"fresh|{self.name}|{self.difficulty}"
            skip = set(self.scored_keys())
            self._fresh_keys[n] = self._fixed_keys(stream, "test", n, skip)
        keys = self._fresh_keys[n]
        if len(keys) < n:
            raise ValueError(
                f"{self.name}: the test split holds {len(keys)} inputs beyond the {SCORED} "
                f"already scored, fewer than {n}; lower eval.n_prompts, raise the difficulty, "
                "or use eval.test_draw=fresh_or_whole (the whole split where it is exhausted)"
            )
        return [self.render(k) for k in keys]

    def fresh_or_whole_examples(self, n: int) -> list[Example]:
        """`eval.test_draw=fresh_or_whole`: `fresh_examples(n)`, or, where the test split is
        exhausted (`test_split_exhausted`), the whole split, every input once: no prompt
        beyond the scored ones exists, so the best a fresh table can do is score all of
        them (the same prompts every earlier table scored; a report says which)."""
        if self.test_split_exhausted():
            return [self.render(k) for k in self.scored_keys()]
        return self.fresh_examples(n)

    def _fixed_keys(
        self, seed: str, split: str, n: int, skip: set[Hashable] = frozenset()
    ) -> list[Hashable]:
        """Up to `n` distinct inputs of `split` from the stream seeded by `seed` (a prefix
        of the same stream for a smaller n), leaving out `skip`. Drawn once per (seed,
        split, n) without `skip`: an evaluation asks for the same prompts of every model at
        every evaluation, and a small split (add's 110 test inputs) costs 50 x n draws."""
        if not skip:
            if (seed, split, n) not in self._keys:
                self._keys[seed, split, n] = self._draw_keys(seed, split, n, frozenset())
            return list(self._keys[seed, split, n])
        return self._draw_keys(seed, split, n, skip)

    def _draw_keys(self, seed: str, split: str, n: int, skip: set[Hashable]) -> list[Hashable]:
        rng = random.Random(seed)
        keys: list[Hashable] = []
        seen: set[Hashable] = set(skip)
        for _ in range(50 * n):
            if len(keys) == n:
                break
            key = self._draw_split(rng, split)
            if key not in seen:
                seen.add(key)
                keys.append(key)
        return keys

    def _fixed(self, seed: str, split: str, n: int) -> list[Example]:
        keys = self._fixed_keys(seed, split, n)
        keys = [keys[i % len(keys)] for i in range(n)] if keys else []
        return [self.render(k) for k in keys]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(difficulty={self.difficulty})"
