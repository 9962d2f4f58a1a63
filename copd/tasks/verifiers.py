"""Answer verifiers for real datasets: pure functions `(completion, answer) -> reward in [0, 1]`.

    from copd.tasks.verifiers import get_verifier
    check = get_verifier("numeric")                 # or "exact", "choice", "math"
    check("So she has 72 apples.", "#### 72")      # 1.0
    check = get_verifier("exact", ignore_case=False)

- `exact`:   whitespace-collapsed, case-folded string equality (both options can be turned off).
- `numeric`: the last number in the completion against the gold number; GSM8K golds
             ("...#### 72") keep only what follows `####`; thousands separators ("1,234"),
             a leading `$` and a trailing `%` are accepted; equality within a tolerance.
- `choice`:  a multiple-choice letter A-J: "Answer: B", "(B)", "B)", or a final standalone
             letter; the last explicit statement wins.
- `math`:    symbolic equivalence through math-verify (boxed answers, fractions, LaTeX):
             `verify(parse(gold), parse(pred))`, gold first.

math-verify's own time limits use `signal.alarm`, which only works on the main thread of a
POSIX process. There (a trainer scoring its rollouts) they are on, `MATH_TIMEOUT_S` each for
parsing and for verifying, so one pathological completion (a power tower, a huge
factorial) scores 0 instead of hanging the trainer; an alarm that was already pending (a
test runner's timeout) is re-armed afterwards, since math-verify cancels it. In a worker
thread (a Streamlit page script) signals cannot work, so the limits are off there. Inputs
are also cut to their last `MATH_MAX_CHARS` characters, which bounds the parser's work; the
answer is near the end of a reasoning trace.
"""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

Verifier = Callable[[str, str], float]

CHOICE_LETTERS = "ABCDEFGHIJ"
MATH_MAX_CHARS = 2000
MATH_TIMEOUT_S = 5  # per parse and per verify, where signals work (the main thread)

# "1,234,567.5", "-3", "0.25", ".5", with the sign kept; thousands groups need exactly 3 digits.
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


# ----------------------------------------------------------------------------- exact
def exact_match(
    completion: str, answer: str, *, ignore_case: bool = True, collapse_whitespace: bool = True
) -> float:
    """1.0 when the completion equals the answer after stripping the ends (and, by default,
    collapsing inner whitespace runs to one space and folding case), else 0.0."""

    def norm(s: str) -> str:
        s = " ".join(s.split()) if collapse_whitespace else s.strip()
        return s.casefold() if ignore_case else s

    return 1.0 if norm(completion) == norm(answer) else 0.0


# ----------------------------------------------------------------------------- numeric
def gold_text(answer: str) -> str:
    """The final answer inside a gold string: what follows the last `####` (GSM8K keeps its
    worked solution before it), else the whole string, stripped."""
    return answer.rsplit("####", 1)[-1].strip() if "####" in answer else answer.strip()


def parse_number(text: str) -> float | None:
    """A number from one token-like string ("1,234", "$72", "50%", "-0.5"), else None."""
    s = text.strip().replace("$", "").rstrip("%").strip().rstrip(".")
    if re.fullmatch(_NUMBER.pattern, s):
        return float(s.replace(",", ""))
    return None


def last_number(text: str) -> float | None:
    """The last number written in `text` ("The answer is 1,234." -> 1234.0), else None."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def numeric_match(
    completion: str, answer: str, *, rel_tol: float = 1e-6, abs_tol: float = 1e-6
) -> float:
    """1.0 when the last number in the completion equals the gold number within tolerance.

    The gold is the text after `####` when present; it may itself be a short sentence,
    whose last number is taken. A completion without any number scores 0.0."""
    gold = gold_text(answer)
    target = parse_number(gold)
    if target is None:
        target = last_number(gold)
    pred = last_number(completion)
    if target is None or pred is None:
        return 0.0
    return 1.0 if math.isclose(pred, target, rel_tol=rel_tol, abs_tol=abs_tol) else 0.0


# ----------------------------------------------------------------------------- choice
_L = f"[{CHOICE_LETTERS}]"
# Ordered by how explicit the statement is; within a pattern the last occurrence wins.
_CHOICE_PATTERNS = (
    # "Answer: B", "the answer is (B)", "final answer = option C". The cue ignores case; the
    # letter must be upper case ("the answer is a bit long" names no choice).
    re.compile(rf"(?i:answer)\s*(?:(?i:is)|:|=)?\s*(?:(?i:option)\s*)?\(?({_L})\)?(?![A-Za-z])"),
    re.compile(rf"\(({_L})\)"),  # "(B)"
    re.compile(rf"(?<![A-Za-z])({_L})\)"),  # "B)"
    re.compile(rf"(?:^|\s)({_L})[.:]?\s*$"),  # a final standalone letter: "... B" / "B."
)


def extract_choice(text: str) -> str | None:
    """The chosen letter (upper case) in `text`, or None when no choice is stated."""
    for pattern in _CHOICE_PATTERNS:
        found = pattern.findall(text)
        if found:
            return found[-1].upper()
    return None


def choice_match(completion: str, answer: str) -> float:
    """1.0 when the completion's chosen letter equals the gold letter ("B", "(B)", "b")."""
    gold = gold_text(answer).strip().strip("()").upper()
    if gold not in CHOICE_LETTERS or len(gold) != 1:
        gold = extract_choice(answer) or ""
    pred = extract_choice(completion)
    return 1.0 if pred is not None and pred == gold else 0.0


# ----------------------------------------------------------------------------- math
def _math_verify():
    try:
        from math_verify import parse, verify
    except ImportError as e:  # the `data` extra
        raise ImportError("the 'math' verifier needs math-verify: pip install -e .[data]") from e
    return parse, verify


def math_match(completion: str, answer: str) -> float:
    """1.0 when math-verify finds the completion's final answer equivalent to the gold.

    The gold may be bare LaTeX ("\\frac{1}{2}"), boxed, a number or a GSM8K "#### 72";
    bare LaTeX is wrapped in `$...$` so the parser finds it without an anchor."""
    parse, verify = _math_verify()
    gold = gold_text(answer)
    with _outer_alarm_kept() as limit:
        gold_parsed = parse(gold, parsing_timeout=limit)
        if not gold_parsed and "$" not in gold and "\\boxed" not in gold:
            gold_parsed = parse(f"${gold}$", parsing_timeout=limit)
        if not gold_parsed:
            return 0.0
        pred_parsed = parse(completion[-MATH_MAX_CHARS:], parsing_timeout=limit)
        if not pred_parsed:
            return 0.0
        return 1.0 if verify(gold_parsed, pred_parsed, timeout_seconds=limit) else 0.0


def math_time_limit() -> int | None:
    """math-verify's time limit in seconds where its SIGALRM can work (the main thread of
    a POSIX process), else None (off)."""
    main = threading.current_thread() is threading.main_thread()
    return MATH_TIMEOUT_S if main and hasattr(signal, "setitimer") else None


@contextmanager
def _outer_alarm_kept() -> Iterator[int | None]:
    """The time limit to give math-verify; an alarm already pending is not lost (math-verify
    ends with alarm(0)): the limit is cut to what it has left, and it is re-armed after."""
    limit = math_time_limit()
    if limit is None:
        yield None
        return
    left, interval = signal.getitimer(signal.ITIMER_REAL)
    t0 = time.monotonic()
    try:
        yield limit if left <= 0 else max(1, min(limit, int(left)))
    finally:
        if left > 0:
            signal.setitimer(
                signal.ITIMER_REAL, max(1e-3, left - (time.monotonic() - t0)), interval
            )


# ----------------------------------------------------------------------------- registry
VERIFIERS: dict[str, Callable[..., float]] = {
    "exact": exact_match,
    "numeric": numeric_match,
    "choice": choice_match,
    "math": math_match,
}


def get_verifier(name: str, **options: object) -> Verifier:
    """The verifier called `name`, with keyword options bound (e.g. `rel_tol` for numeric,
    `ignore_case` for exact). Raises ValueError naming the choices."""
    if name not in VERIFIERS:
        raise ValueError(f"verifier {name!r} is unknown; use one of {sorted(VERIFIERS)}")
    fn = VERIFIERS[name]
    if name == "math":
        _math_verify()  # fail at configuration time, not at the first reward
    return partial(fn, **options) if options else fn


def gold_problem(name: str, answer: str) -> str | None:
    """Why `answer` cannot serve as a gold for verifier `name` (None when it can). Cheap
    checks only: a choice gold must be one letter A-J, a numeric gold must hold a number."""
    if name == "choice":
        g = gold_text(answer).strip().strip("()").upper()
        if not (len(g) == 1 and g in CHOICE_LETTERS) and extract_choice(answer) is None:
            return f"choice answer {answer!r} is not a letter A-J"
    if name == "numeric":
        g = gold_text(answer)
        if parse_number(g) is None and last_number(g) is None:
            return f"numeric answer {answer!r} holds no number"
    return None
