"""The Task interface: training prompts, a fixed held-out split and a verifier.

A task is one domain (one branch's skill). Everything an algorithm needs from it:

    task = get_task("add", difficulty=2)
    train = task.sample(random.Random(0), 64)    # never drawn from the held-out split
    held_out = task.eval_examples(128)            # fixed, seeded, disjoint from training
    r = task.reward(held_out[0], "19")            # 1.0 or 0.0

`SyntheticTask` implements the split for generated inputs: every input is assigned to the
held-out split by a stable hash of (task name, input), so membership does not depend on
the difficulty, the seed or the process, and training sampling simply rejects held-out
inputs. Subclasses only say how to draw an input and how to render it.
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
    copd/chat.py); `images` holds image file paths or drawable objects (`to_pil()`), and
    `videos` holds videos (`copd.tasks.media.Video`, a path, a list of frames, or any
    object with `frames()`), read when a prompt is encoded (copd/vlm.py). Text-only models
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
        """The first `n` examples of the fixed held-out split (same on every call)."""

    def reward(self, example: Example, completion: str) -> float:
        """Exact match: 1.0 if the completion (already cut at the end token by the caller)
        equals the answer after stripping surrounding whitespace, else 0.0. No partial
        credit is given: a near-miss is as wrong as noise, which keeps the verifier honest."""
        return 1.0 if completion.strip() == example.answer else 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _stable_fraction(*parts: object) -> float:
    """A number in [0, 1) from a hash of `parts` that is stable across processes
    (Python's `hash` of str is salted per process, so it cannot be used here)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SyntheticTask(Task):
    """A generated task with a hash-based held-out split.

    Subclasses implement `draw(rng) -> key` (a hashable input drawn from the training
    distribution at `self.difficulty`) and `render(key) -> Example`.
    """

    def __init__(self, difficulty: int, holdout_fraction: float = 0.25) -> None:
        if difficulty not in DIFFICULTIES:
            raise ValueError(
                f"{self.name}: difficulty={difficulty!r} is out of range; use an int in 1..5"
            )
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(
                f"{self.name}: holdout_fraction={holdout_fraction!r} must be in (0, 1), e.g. 0.25"
            )
        self.difficulty = difficulty
        self.holdout_fraction = holdout_fraction

    @abstractmethod
    def draw(self, rng: random.Random) -> Hashable:
        """One input from the task's distribution at this difficulty (held out or not)."""

    @abstractmethod
    def render(self, key: Hashable) -> Example:
        """The prompt and answer for an input drawn by `draw`."""

    def is_held_out(self, key: Hashable) -> bool:
        """Whether an input belongs to the evaluation split (independent of difficulty)."""
        return _stable_fraction(self.name, key) < self.holdout_fraction

    def _draw_split(self, rng: random.Random, held_out: bool) -> Hashable:
        # Rejection sampling keeps the split's input distribution equal to the task's.
        for _ in range(10_000):
            key = self.draw(rng)
            if self.is_held_out(key) == held_out:
                return key
        raise RuntimeError(
            f"{self.name}: could not draw a {'held-out' if held_out else 'training'} input at "
            f"difficulty {self.difficulty}; change holdout_fraction ({self.holdout_fraction})"
        )

    def sample(self, rng: random.Random, n: int) -> list[Example]:
        return [self.render(self._draw_split(rng, held_out=False)) for _ in range(n)]

    def eval_examples(self, n: int) -> list[Example]:
        # Seeded by name and difficulty so every run evaluates on the same prompts. Distinct
        # inputs first; a small input space (add at difficulty 1 holds out ~25 pairs) is
        # then repeated in the same order rather than failing.
        rng = random.Random(f"eval|{self.name}|{self.difficulty}")
        keys: list[Hashable] = []
        seen: set[Hashable] = set()
        for _ in range(50 * n):
            if len(keys) == n:
                break
            key = self._draw_split(rng, held_out=True)
            if key not in seen:
                seen.add(key)
                keys.append(key)
        keys = [keys[i % len(keys)] for i in range(n)] if keys else []
        return [self.render(k) for k in keys]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(difficulty={self.difficulty})"
