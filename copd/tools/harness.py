"""Scores from lm-evaluation-harness (`lm-eval`, the extra `harness`) for a model folder.

    res = run_lm_eval("runs/3-copd-demo/merged", ["gsm8k"], limit=100)
    res.scores      # {"gsm8k:exact_match,strict-match": 0.41, ...}: one per task x metric
    copd eval 3 --harness lm-eval --tasks gsm8k --db sqlite:///copd.db   # stored too

The harness runs through its Python API (`lm_eval.simple_evaluate`, model "hf") on the
folder, greedy as its task configs say. A task is any the harness knows (with network
access the standard ones work unchanged) or a YAML of your own in `include_path` (a local
JSON/CSV data file: `dataset_path: json`, `dataset_kwargs: {data_files: ...}`), so a
benchmark can be scored offline. Benchmarks are named `<task>:<metric>` with the filter
after a comma where it is not the default ("none"): beside copd's own benchmarks in the
store, never mistaken for them. `copd/runner.harness_eval` records them as evaluations of
a run, with the harness's version and each task's config in the run's events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copd.common import names as N
from copd.errors import ConfigError

EXTRA = "harness"  # pip install 'copd[harness]'


@dataclass
class HarnessResult:
    version: str
    scores: dict[str, float]  # benchmark ("<task>:<metric>[,<filter>]") -> value
    n: dict[str, int]  # benchmark -> examples scored
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> its config


def benchmark_name(task: str, metric_key: str) -> str:
    """`("sums", "exact_match,none")` -> `sums:exact_match@bench`; another filter stays:
    `gsm8k:exact_match,strict-match@bench`. A benchmark's name (`names.bench_key`): the
    harness's scores sit with the configured benchmarks, never among the training domains
    and their Overall."""
    metric, _, filt = metric_key.partition(",")
    return N.bench_key(f"{task}:{metric}" + ("" if filt in ("", "none") else f",{filt}"))


def run_lm_eval(
    model_dir: str | Path,
    tasks: Sequence[str],
    *,
    include_path: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
) -> HarnessResult:
    """Every task's metrics (stderr left out) on the model in `model_dir`. ConfigError
    naming the fix when the harness is missing, the folder holds no model or a task is
    unknown; nothing is scored then."""
    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder}: no model here (config.json missing): pass a model folder")
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError(
            f"--harness lm-eval: lm-evaluation-harness is not installed; pip install 'copd[{EXTRA}]'"
        ) from None
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        where = f" (and none in {include_path})" if include_path else ""
        raise ConfigError(
            f"--tasks: lm-eval knows no task {unknown}{where}; name harness tasks, or put a "
            "task YAML in a folder given with --include-path"
        )
    out = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(folder), "dtype": "float32"},
        tasks=list(tasks), task_manager=manager, limit=limit, batch_size=batch_size,
        device=device, log_samples=False,
    )  # fmt: skip
    scores, n = {}, {}
    for task, metrics in out["results"].items():
        count = int(out.get("n-samples", {}).get(task, {}).get("effective", 0))
        for key, value in metrics.items():
            if key in ("alias", "name", "sample_len") or "_stderr" in key:
                continue
            if isinstance(value, int | float):
                name = benchmark_name(task, key)
                scores[name], n[name] = float(value), count or int(metrics.get("sample_len", 0))
    configs = {t: dict(c) for t, c in out.get("configs", {}).items()}
    return HarnessResult(str(getattr(lm_eval, "__version__", "?")), scores, n, configs)
