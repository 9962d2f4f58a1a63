"""Tasks from local data files (JSONL, Parquet, CSV) with a field mapping and a verifier.

    task = from_file("data/gsm8k.jsonl", prompt_field="question", answer_field="answer",
                     verifier="numeric", name="gsm8k")
    task.sample(random.Random(0), 16); task.eval_examples(128); task.reward(ex, completion)

In a run config, a branch names the factory and `task_options` (keyed by the same task
string) holds its arguments. `dataset` is short for `copd.tasks.datasets:from_file`, and a
`#label` suffix tells two dataset branches apart:

    "branches": [{"name": "math", "task": "dataset#gsm8k"}, {"name": "mcq", "task": "dataset#mcq"}],
    "task_options": {"dataset#gsm8k": {"path": "gsm8k.jsonl", "prompt_field": "question",
                                       "answer_field": "answer", "verifier": "numeric"}, ...}

Files are read through the `datasets` library, offline (no hub access is ever needed for
local files). Every row is checked before any training starts: a missing field, an empty
prompt or an answer that cannot be turned into text is reported with the file, the line
(JSONL, CSV) or row (Parquet) and the fix, for all bad rows up to `max_errors`.

Held-out test split: a separate `eval_path`, or else a stable hash u of (name, prompt)
puts the rows with u < `eval_fraction` aside (the same rows in every process and run; equal
prompts always fall on the same side, so duplicates cannot leak into evaluation).
Validation split (settings are chosen on it; tables report test): a separate `val_path`,
or else the rows with `eval_fraction` <= u < `eval_fraction + val_fraction` (with
`eval_path`, u < `val_fraction` of the training file; with `eval_fraction=0`, the
training rows). An empty validation split (`val_fraction=0`, or too few rows) fails only
when something asks for validation examples, with the fix.
JSONL whose columns mix value types (answers 4 and "4"), which Arrow cannot hold, is
read row by row with `json` instead.

Media columns: `image_field` holds an image path or a list of paths; `video_field` holds,
per row, a video file, a directory of frame images (sorted by name), a list of frame image
paths (one video), or a list of videos (see `copd.tasks.media.videos_from_cell`). Relative
paths are taken from the data file's folder. Each video is read as at most `max_frames`
evenly spaced frames (default 8). Every video is checked at load time: it must exist, a
frame directory must hold images, and a video file (.mp4, ...) needs an importable decoder
(PyAV or decord); without one the task refuses to load and says how to fix it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copd.tasks.base import Example, Task, stable_fraction
from copd.tasks.data_files import DatasetError, listing, load_rows
from copd.tasks.media import (
    DECODER_FIX,
    DEFAULT_MAX_FRAMES,
    check_video,
    needs_decoder,
    videos_from_cell,
)
from copd.tasks.verifiers import VERIFIERS, get_verifier, gold_problem


@dataclass(frozen=True)
class FieldMap:
    """Which columns hold what. Only `prompt` and `answer` are required in every row."""

    prompt: str = "prompt"
    answer: str = "answer"
    system: str | None = None  # a per-row system prompt column (an empty cell = none)
    images: str | None = None  # a column of image paths (one string or a list)
    videos: str | None = None  # a column of videos (file, frame directory, frame list)


def _as_text(value: Any) -> str | None:
    """A cell as text: strings as they are, numbers written plainly (72.0 -> "72"); None
    for a missing cell; raises TypeError for anything else (lists, objects, booleans)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise TypeError(f"a {type(value).__name__}")


def _paths(value: Any, base: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) for v in items):
        raise TypeError("not a path or a list of paths")
    return tuple(str(v if Path(v).is_absolute() else base / v) for v in items)


def _read_row(
    row: dict,
    *,
    source: Path,
    fields: FieldMap,
    verifier: str,
    system_prompt: str | None,
    max_frames: int,
) -> tuple[dict[str, str | None], str | None, dict, list[str], list[str]]:
    """One row's prompt and answer texts, system prompt and media, with what is wrong with
    it (problems) and its video files no importable decoder reads."""
    no_decoder: list[str] = []
    present = sorted(k for k, v in row.items() if v is not None)
    problems = []
    texts: dict[str, str | None] = {}
    for role, column in (("prompt", fields.prompt), ("answer", fields.answer)):
        try:
            texts[role] = _as_text(row.get(column))
        except TypeError as e:
            problems.append(f"{role} field {column!r} is {e}, not text")
            continue
        if texts[role] is None:
            problems.append(
                f"missing field {column!r} (fields here: {present}); "
                f"set {role}_field to the right column"
            )
        elif role == "prompt" and not texts[role].strip():
            problems.append(f"empty prompt in field {column!r}")
    system = system_prompt
    if fields.system and row.get(fields.system) is not None:
        try:
            system = _as_text(row[fields.system]) or system_prompt
        except TypeError as e:
            problems.append(f"system field {fields.system!r} is {e}, not text")
    media = {}
    try:
        media["images"] = _paths(row.get(fields.images), source.parent) if fields.images else ()
    except TypeError as e:
        problems.append(f"images field {fields.images!r} is {e}")
    try:
        media["videos"] = (
            videos_from_cell(row.get(fields.videos), source.parent, max_frames)
            if fields.videos
            else ()
        )
    except TypeError as e:
        problems.append(f"videos field {fields.videos!r} is {e}")
    for v in media.get("videos", ()):
        if needs_decoder(v):
            no_decoder.append(v.source)
        elif why := check_video(v):
            problems.append(f"videos field {fields.videos!r}: {why}")
    if not problems and (why := gold_problem(verifier, texts["answer"])):
        problems.append(f"{why}; check answer_field or pick another verifier")
    return texts, system, media, problems, no_decoder


def rows_to_examples(
    rows: list[dict],
    where,
    *,
    source: Path,
    fields: FieldMap,
    domain: str,
    verifier: str,
    system_prompt: str | None = None,
    prompt_template: str | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_errors: int = 20,
) -> tuple[list[Example], list[str]]:
    """Validate every row; the Examples and each row's raw prompt (the held-out split's
    key, so changing `prompt_template` does not reshuffle the split). Raises
    DatasetError listing the bad rows."""
    out: list[Example] = []
    keys: list[str] = []  # the row's own prompt text (before the template): the split key
    bad: list[str] = []
    undecodable: list[str] = []  # rows with video files that no importable decoder reads
    for i, row in enumerate(rows):
        texts, system, media, problems, no_decoder = _read_row(
            row, source=source, fields=fields, verifier=verifier,
            system_prompt=system_prompt, max_frames=max_frames,
        )  # fmt: skip
        undecodable += [f"{where(i)}: {v}" for v in no_decoder]
        if problems:
            bad.append(f"{where(i)}: " + "; ".join(problems))
            if len(bad) > max_errors:
                break
            continue
        prompt = texts["prompt"]
        if prompt_template:
            prompt = prompt_template.replace("{prompt}", prompt)
        out.append(Example(prompt, texts["answer"], domain, system, **media))
        keys.append(texts["prompt"])
    if undecodable:
        raise DatasetError(
            f"{source}: {len(undecodable)} video file(s) and no video decoder (PyAV or decord) "
            f"is importable here, e.g. {undecodable[0]}.\nFix: {DECODER_FIX}"
        )
    if bad:
        raise DatasetError(
            listing(source, bad, max_errors)
            + "\nFix the rows above (or the field mapping) before training."
        )
    if not out:
        raise DatasetError(f"{source}: the file holds no rows")
    return out, keys


def _check_options(
    name: str,
    verifier: str,
    eval_fraction: float,
    val_fraction: float,
    eval_path: str | Path | None,
    prompt_template: str | None,
    max_frames: int,
) -> None:
    """Refuse a dataset task's options before any row is read."""
    if verifier not in VERIFIERS:
        raise DatasetError(
            f"task {name!r}: verifier={verifier!r} is unknown; use one of {sorted(VERIFIERS)}"
        )
    if not 0.0 <= eval_fraction < 1.0:
        raise DatasetError(
            f"task {name!r}: eval_fraction={eval_fraction!r} must be in [0, 1); "
            "0 evaluates on the training rows (no held-out split)"
        )
    if not 0.0 <= val_fraction < 1.0 - (0.0 if eval_path is not None else eval_fraction):
        raise DatasetError(
            f"task {name!r}: val_fraction={val_fraction!r} must be in [0, 1 - "
            "eval_fraction) so that training keeps rows; 0 means no validation split"
        )
    if prompt_template is not None and "{prompt}" not in prompt_template:
        raise DatasetError(
            f"task {name!r}: prompt_template must contain '{{prompt}}' where the "
            f"row's prompt goes, e.g. '{{prompt}}\\nGive the final answer after ####.'"
        )
    if not isinstance(max_frames, int) or max_frames < 1:
        raise DatasetError(
            f"task {name!r}: max_frames={max_frames!r} must be an int >= 1 "
            "(frames read per video, evenly spaced), e.g. 8"
        )


class DatasetTask(Task):
    """A domain read from a data file; see the module docstring for the options."""

    def __init__(
        self,
        path: str | Path,
        *,
        prompt_field: str = "prompt",
        answer_field: str = "answer",
        verifier: str = "exact",
        name: str | None = None,
        system_prompt: str | None = None,
        system_field: str | None = None,
        image_field: str | None = None,
        video_field: str | None = None,
        prompt_template: str | None = None,
        max_frames: int = DEFAULT_MAX_FRAMES,
        eval_path: str | Path | None = None,
        eval_fraction: float = 0.1,
        val_path: str | Path | None = None,
        val_fraction: float = 0.1,
        format: str | None = None,
        verifier_options: dict[str, Any] | None = None,
        max_errors: int = 20,
    ) -> None:
        self.path = Path(path).expanduser()
        self.name = name or self.path.stem
        _check_options(
            self.name, verifier, eval_fraction, val_fraction, eval_path, prompt_template,
            max_frames,
        )  # fmt: skip
        self.verifier_name = verifier
        self.verify = get_verifier(verifier, **(verifier_options or {}))
        fields = FieldMap(prompt_field, answer_field, system_field, image_field, video_field)
        opts = dict(
            fields=fields,
            domain=self.name,
            verifier=verifier,
            system_prompt=system_prompt,
            prompt_template=prompt_template,
            max_frames=max_frames,
            max_errors=max_errors,
        )
        rows, where = load_rows(self.path, format, max_errors)
        examples, keys = rows_to_examples(rows, where, source=self.path, **opts)
        self.val_fraction, self.n_rows = val_fraction, len(examples)

        def side_file(path: str | Path) -> list[Example]:
            p = Path(path).expanduser()
            return rows_to_examples(*load_rows(p, format, max_errors), source=p, **opts)[0]

        if eval_path is None and eval_fraction == 0.0:  # evaluate on the training rows
            self.train = self.held_out = self.validation = list(examples)
        else:
            test_cut = 0.0 if eval_path is not None else eval_fraction
            val_cut = 0.0 if val_path is not None else val_fraction
            self._split(examples, keys, test_cut, val_cut)
        if eval_path is not None:
            self.held_out = side_file(eval_path)
        if val_path is not None:
            self.validation = side_file(val_path)
        if not self.train or not self.held_out:
            raise DatasetError(
                f"task {self.name!r}: {len(examples)} rows with eval_fraction="
                f"{eval_fraction} leave an empty {'training' if not self.train else 'eval'} "
                "split; give eval_path, change eval_fraction, or add rows"
            )
        every = self.train + self.held_out + self.validation
        self.alphabet = "".join(sorted({c for ex in every for c in ex.prompt + ex.answer}))
        self.max_answer_chars = max(len(ex.answer) for ex in every)

    def _split(
        self, examples: list[Example], keys: list[str], test_cut: float, val_cut: float
    ) -> None:
        """Test, validation and training rows by the stable hash u of (name, row key): u <
        test_cut is test, the next val_cut validation, the rest training (a split given as
        a side file has a cut of 0 here and is read from its file)."""
        u = [stable_fraction(self.name, k) for k in keys]

        def pick(lo: float, hi: float) -> list[Example]:
            return [ex for ex, x in zip(examples, u, strict=True) if lo <= x < hi]

        self.held_out = pick(0.0, test_cut)
        self.validation = pick(test_cut, test_cut + val_cut)
        self.train = pick(test_cut + val_cut, 1.0)

    def sample(self, rng: random.Random, n: int) -> list[Example]:
        """`n` training rows: without repeats while `n` fits the split, then with repeats."""
        if n <= len(self.train):
            return [self.train[i] for i in rng.sample(range(len(self.train)), n)]
        return [self.train[rng.randrange(len(self.train))] for _ in range(n)]

    def eval_examples(self, n: int) -> list[Example]:
        """The first `n` held-out test rows in file order (fewer when the split is smaller)."""
        return self.held_out[:n]

    def val_examples(self, n: int) -> list[Example]:
        """The first `n` validation rows in file order (fewer when the split is smaller)."""
        if not self.validation:
            raise DatasetError(
                f"task {self.name!r} has no validation split (val_fraction={self.val_fraction} "
                f"of {self.n_rows} rows is empty); give val_path or a larger val_fraction"
            )
        return self.validation[:n]

    def reward(self, example: Example, completion: str) -> float:
        return float(self.verify(completion, example.answer))

    def __repr__(self) -> str:
        return (
            f"DatasetTask(name={self.name!r}, path={str(self.path)!r}, "
            f"verifier={self.verifier_name!r}, train={len(self.train)}, "
            f"validation={len(self.validation)}, held_out={len(self.held_out)})"
        )


def from_file(path: str | Path, **options: Any) -> DatasetTask:
    """Factory for `get_task("copd.tasks.datasets:from_file", path=..., ...)` (alias
    `dataset`); the options are `DatasetTask`'s keyword arguments."""
    return DatasetTask(path, **options)
