"""Reading a task's data file (JSONL, Parquet, CSV) into rows, offline, each row with the
line or row a message can name; a file that cannot be read fails with the fix
(copd/tasks/datasets.py turns the rows into examples).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from copd.errors import ConfigError

FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class DatasetError(ConfigError):
    """A data file cannot be used as given. The message names the file, the rows and the fix.
    A `ConfigError` (so a ValueError): the CLI prints it without a traceback."""


def format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("json", "parquet", "csv"):
            raise DatasetError(f"{path}: format={fmt!r} is unknown; use json, parquet or csv")
        return fmt
    if path.suffix.lower() not in FORMATS:
        raise DatasetError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; name the file "
            f"*.jsonl, *.parquet or *.csv, or pass format='json'|'parquet'|'csv'"
        )
    return FORMATS[path.suffix.lower()]


def scan_jsonl(path: Path, max_errors: int) -> list[int]:
    """Line numbers of the rows (blank lines are skipped, as `datasets` does); raises on
    lines that are not JSON objects, listing all of them up to `max_errors`."""
    lines, bad = [], []
    with path.open(encoding="utf-8") as f:
        for no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            lines.append(no)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append(f"line {no}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(obj, dict):
                bad.append(f"line {no}: a JSON {type(obj).__name__}, not an object")
    if bad:
        raise DatasetError(
            listing(path, bad, max_errors) + "\nFix: write one JSON object per line, e.g. "
            '{"prompt": "2+3=?", "answer": "5"}'
        )
    return lines


def load_rows(path: str | Path, fmt: str | None = None, max_errors: int = 20):
    """All rows of a data file as dicts, and a function row index -> location text."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(
            f"{p}: no such file; set the task's path in task_options, e.g. "
            "--set 'task_options.dataset#LABEL.path=/data/train.jsonl' (and eval_path)"
        )
    kind = format_of(p, fmt)
    line_of = scan_jsonl(p, max_errors) if kind == "json" else None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files never need the hub
    try:
        import datasets
    except ImportError as e:
        raise ImportError("dataset tasks need the datasets library: pip install -e .[data]") from e
    try:
        rows = datasets.load_dataset(kind, data_files=str(p), split="train").to_list()
    except Exception as e:
        if kind != "json":
            raise DatasetError(f"{p}: could not be read as {kind} ({type(e).__name__}: {e})") from e
        # Arrow needs one type per column; hand-written JSONL often mixes them (answers 4
        # and "4"). Every line already parsed above, so take the rows as parsed and let
        # the row checks below say what is wrong, line by line.
        with p.open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]

    def where(i: int) -> str:
        if line_of is not None:
            return f"line {line_of[i]}"
        if kind == "csv":  # the header is line 1 (cells with line breaks shift this)
            return f"line {i + 2}"
        return f"row {i}"

    return rows, where


def listing(path: Path, bad: list[str], max_errors: int) -> str:
    shown = bad[:max_errors]
    more = "" if len(bad) <= max_errors else f"\n  ... and more (only {max_errors} shown)"
    return f"{path}: {len(shown)}{'+' if more else ''} bad row(s):\n  " + "\n  ".join(shown) + more
