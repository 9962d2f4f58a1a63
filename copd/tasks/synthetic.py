"""Built-in synthetic domains, each calling on a distinct skill.

| name    | prompt -> answer  | skill                | difficulty knob (1..5)            | default       |
|---------|-------------------|----------------------|-----------------------------------|---------------|
| `add`   | `7+12=` -> `19`   | arithmetic           | operand range 0..9 up to 0..999   | 2: 0..19      |
| `rev`   | `abcd>` -> `dcba` | reversing a sequence | string length 2-3 up to 6-10      | 2: 3-5        |
| `sort`  | `dbca<` -> `abcd` | ordering             | string length 2-3 up to 6-10      | 2: 3-5        |
| `count` | `aabab#a:` -> `3` | counting occurrences | string length and letter pool     | 1: a-b, 3-5   |
| `mod`   | `17%5=` -> `2`    | remainders           | dividend range 0..19 up to 0..999 | 1 (untuned)   |
| `up`    | `+abcd:` -> `bcde` | each letter one on  | string length 2-3 up to 6-10      | 2: 3-5        |
| `down`  | `=abcd:` -> `jabc` | each letter one back | string length 2-3 up to 6-10     | 2: 3-5        |
| `fwd`   | `bcaj:` -> `cdba`  | one on, cue: a-e first | string length 2-3 up to 6-10   | 2: 3-5        |
| `back`  | `hcaj:` -> `gbji`  | one back, cue: f-j first | string length 2-3 up to 6-10 | 2: 3-5        |

Each domain has its own marker character (`+ > < # %`), so the domain is recognisable
from the prompt alone: one policy can be trained on all of them at once. Letters are
a-j throughout so that the character vocabulary stays small. Defaults are tuned so the
demo's warmed-up 128x2 model sits between "never right" and "always right" on each.

`up` and `down` are a conflicting pair: the same letter strings (one split for both, by
a hash of the string alone), the same copy-each-position skill, the same end marker `:`,
and opposite letter maps (a->b against a->j), told apart only by the tag that opens the
prompt (`+` or `=`), as far from the answer as the string is long. A single-domain expert
can ignore the tag; one policy for both must carry it to every answer position. Neither
is in the shipped base's warm-up: a run on them warms a base up on them
(`model.demo_tasks`, the `conflict` presets).

`fwd` and `back` are the same opposite maps with no tag at all: the direction is set by
the string itself (one on when it opens with a letter of a-e, one back when it opens
with f-j). Their prompts look alike (same letters, same end marker), so one policy for
both must compute the cue from the first letter, a letter it also has to shift, and carry
it to every answer position; a single-domain expert can ignore it.
"""

from __future__ import annotations

import random
from collections.abc import Hashable

from copd.tasks.base import Example, SyntheticTask, stable_fraction

LETTERS = "abcdefghij"
DIGITS = "0123456789"

# Per-difficulty parameters, index = difficulty - 1.
ADD_MAX = (9, 19, 49, 99, 999)
MOD_MAX = (19, 49, 99, 499, 999)
MOD_DIVISORS = (2, 9)
SEQ_LENGTHS = ((2, 3), (3, 5), (4, 6), (5, 8), (6, 10))
COUNT_SHAPES = (("ab", 3, 5), ("abc", 4, 6), ("abcd", 5, 8), ("abcde", 6, 10), (LETTERS, 8, 12))


class AddTask(SyntheticTask):
    """Addition of two non-negative integers: `a+b=` -> `a+b`."""

    name = "add"
    alphabet = DIGITS + "+="

    def __init__(
        self, difficulty: int = 2, holdout_fraction: float = 0.25, val_fraction: float = 0.125
    ) -> None:
        super().__init__(difficulty, holdout_fraction, val_fraction)
        self.max_operand = ADD_MAX[difficulty - 1]
        self.max_answer_chars = len(str(2 * self.max_operand))

    def draw(self, rng: random.Random) -> Hashable:
        return (rng.randint(0, self.max_operand), rng.randint(0, self.max_operand))

    def render(self, key: Hashable) -> Example:
        a, b = key  # type: ignore[misc]
        return Example(f"{a}+{b}=", str(a + b), self.name)


class ModTask(SyntheticTask):
    """Remainder of a division by a one-digit divisor: `17%5=` -> `2`."""

    name = "mod"
    alphabet = DIGITS + "%="
    max_answer_chars = 1

    def __init__(
        self, difficulty: int = 1, holdout_fraction: float = 0.25, val_fraction: float = 0.125
    ) -> None:
        super().__init__(difficulty, holdout_fraction, val_fraction)
        self.max_dividend = MOD_MAX[difficulty - 1]

    def draw(self, rng: random.Random) -> Hashable:
        return (rng.randint(0, self.max_dividend), rng.randint(*MOD_DIVISORS))

    def render(self, key: Hashable) -> Example:
        a, d = key  # type: ignore[misc]
        return Example(f"{a}%{d}=", str(a % d), self.name)


class _LetterSequenceTask(SyntheticTask):
    """A string of letters a-j whose length range grows with the difficulty."""

    marker: str

    def __init__(
        self, difficulty: int = 2, holdout_fraction: float = 0.25, val_fraction: float = 0.125
    ) -> None:
        super().__init__(difficulty, holdout_fraction, val_fraction)
        self.min_len, self.max_len = SEQ_LENGTHS[difficulty - 1]
        self.max_answer_chars = self.max_len

    def draw(self, rng: random.Random) -> Hashable:
        length = rng.randint(self.min_len, self.max_len)
        return "".join(rng.choice(LETTERS) for _ in range(length))

    def render(self, key: Hashable) -> Example:
        s = str(key)
        return Example(f"{s}{self.marker}", self.transform(s), self.name)

    def transform(self, s: str) -> str:
        raise NotImplementedError


class RevTask(_LetterSequenceTask):
    """Reverse a string: `abcd>` -> `dcba`."""

    name = "rev"
    marker = ">"
    alphabet = LETTERS + ">"

    def transform(self, s: str) -> str:
        return s[::-1]


class SortTask(_LetterSequenceTask):
    """Sort the letters of a string (repeats kept): `dbca<` -> `abcd`."""

    name = "sort"
    marker = "<"
    alphabet = LETTERS + "<"

    def transform(self, s: str) -> str:
        return "".join(sorted(s))


class _ShiftTask(_LetterSequenceTask):
    """Shift every letter by `step` places along a-j (wrapping round)."""

    step: int

    def split_fraction(self, key: Hashable) -> float:
        # one split for the pair: a held-out string is held out under either tag
        return stable_fraction("shift", key)

    def render(self, key: Hashable) -> Example:
        s = str(key)
        return Example(f"{self.marker}{s}:", self.transform(s), self.name)

    def transform(self, s: str) -> str:
        return "".join(LETTERS[(LETTERS.index(c) + self.step) % len(LETTERS)] for c in s)


class UpTask(_ShiftTask):
    """Each letter one on: `+abcj:` -> `bcda`."""

    name = "up"
    marker = "+"
    alphabet = LETTERS + "+:"
    step = 1


class DownTask(_ShiftTask):
    """Each letter one back: `=abcj:` -> `jabi` (the opposite map to `up`'s, same strings)."""

    name = "down"
    marker = "="
    alphabet = LETTERS + "=:"
    step = -1


class _CueShiftTask(_ShiftTask):
    """A letter shift whose direction is cued by the string's first letter, not by a tag:
    the first letter is drawn from `cue` (half the alphabet), the rest from all of it."""

    cue: str

    def draw(self, rng: random.Random) -> Hashable:
        s = str(super().draw(rng))
        return rng.choice(self.cue) + s[1:]

    def render(self, key: Hashable) -> Example:
        s = str(key)
        return Example(f"{s}:", self.transform(s), self.name)


class FwdTask(_CueShiftTask):
    """Each letter one on, for strings opening with a-e: `bcaj:` -> `cdba`."""

    name = "fwd"
    alphabet = LETTERS + ":"
    step = 1
    cue = LETTERS[:5]


class BackTask(_CueShiftTask):
    """Each letter one back, for strings opening with f-j: `hcaj:` -> `gbji`."""

    name = "back"
    alphabet = LETTERS + ":"
    step = -1
    cue = LETTERS[5:]


class CountTask(SyntheticTask):
    """Count the occurrences of a letter: `aabab#a:` -> `3` (the answer may be 0)."""

    name = "count"
    alphabet = LETTERS + DIGITS + "#:"

    # Default 1: at 2 the demo warm-up leaves the model at the guessing rate (~0.25).
    def __init__(
        self, difficulty: int = 1, holdout_fraction: float = 0.25, val_fraction: float = 0.125
    ) -> None:
        super().__init__(difficulty, holdout_fraction, val_fraction)
        self.pool, self.min_len, self.max_len = COUNT_SHAPES[difficulty - 1]
        self.max_answer_chars = len(str(self.max_len))

    def draw(self, rng: random.Random) -> Hashable:
        length = rng.randint(self.min_len, self.max_len)
        s = "".join(rng.choice(self.pool) for _ in range(length))
        return (s, rng.choice(self.pool))

    def render(self, key: Hashable) -> Example:
        s, letter = key  # type: ignore[misc]
        return Example(f"{s}#{letter}:", str(s.count(letter)), self.name)


BUILTIN_TASKS: dict[str, type[SyntheticTask]] = {
    cls.name: cls
    for cls in (AddTask, RevTask, SortTask, CountTask, ModTask, UpTask, DownTask, FwdTask, BackTask)
}


def builtin_alphabet() -> str:
    """Every character any built-in task can produce, sorted (deterministic)."""
    return "".join(sorted(set("".join(cls.alphabet for cls in BUILTIN_TASKS.values()))))
