"""The logger interface algorithms report through, plus console, JSONL and fan-out loggers.

Algorithms call `log_metrics({name: value}, step=, cycle=, phase=)` with namespaced names
from `copd.common.names`, `log_eval(...)` for held-out scores, `log_event(...)` for lines worth
showing in the UI and `log_samples([...], step=)` for recorded completions with their
per-token log-probs (copd/train/samples.py). The run store's logger (`storage.logger.StoreLogger`) implements the
same protocol structurally; `copd` never imports `storage`.

Phases: "warmup", "rl" (phase I), "opd" (phase II), "eval", "merge", "train" (baselines).
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Protocol, TextIO

from copd.common.names import PROGRESS


class Logger(Protocol):
    def log_metrics(
        self, metrics: dict[str, float], *, step: int, cycle: int = 0, phase: str = ""
    ) -> None: ...

    def log_eval(self, model: str, benchmark: str, score: float, n: int, *, step: int) -> None: ...

    def log_event(self, message: str, *, level: str = "info", step: int | None = None) -> None: ...

    def log_checkpoint(self, path: str, *, step: int) -> None: ...

    def log_samples(
        self, rows: list[dict], *, step: int, cycle: int = 0, phase: str = ""
    ) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class NullLogger:
    """Does nothing; stands in when logging is off."""

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        pass

    def log_eval(self, model, benchmark, score, n, *, step):
        pass

    def log_event(self, message, *, level="info", step=None):
        pass

    def log_checkpoint(self, path, *, step):
        pass

    def log_samples(self, rows, *, step, cycle=0, phase=""):
        pass

    def flush(self):
        pass

    def close(self):
        pass


class ConsoleLogger(NullLogger):
    """Prints events (and, when `verbose`, every metric batch) to a stream."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False):
        self.stream = stream or sys.stderr
        self.verbose = verbose

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        if self.verbose:
            body = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
            print(f"[step {step} c{cycle} {phase}] {body}", file=self.stream)

    def log_eval(self, model, benchmark, score, n, *, step):
        print(f"[eval step {step}] {model} {benchmark} = {score:.3f} (n={n})", file=self.stream)

    def log_event(self, message, *, level="info", step=None):
        print(f"[{level}] {message}", file=self.stream)


class JsonlLogger(NullLogger):
    """One JSON object per line: {"type": "metric"|"eval"|"event"|"checkpoint"|"sample", ...}
    (a "sample" line is one recorded completion, with the fields of copd/train/samples.py).

    NaN and infinity are written as the strings "NaN", "Infinity", "-Infinity" so the file
    stays valid JSON."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", buffering=1)

    def _write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, allow_nan=False, default=str) + "\n")

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        t = time.time()
        vals = {k: _finite_or_str(v) for k, v in metrics.items()}
        self._write(
            {
                "type": "metric",
                "step": step,
                "cycle": cycle,
                "phase": phase,
                "time": t,
                "values": vals,
            }
        )

    def log_eval(self, model, benchmark, score, n, *, step):
        self._write(
            {
                "type": "eval",
                "step": step,
                "model": model,
                "benchmark": benchmark,
                "score": _finite_or_str(score),
                "n": n,
                "time": time.time(),
            }
        )

    def log_event(self, message, *, level="info", step=None):
        self._write(
            {"type": "event", "level": level, "message": message, "step": step, "time": time.time()}
        )

    def log_checkpoint(self, path, *, step):
        self._write({"type": "checkpoint", "path": str(path), "step": step, "time": time.time()})

    def log_samples(self, rows, *, step, cycle=0, phase=""):
        t = time.time()
        for row in rows:
            self._write(
                {"type": "sample", "step": step, "cycle": cycle, "phase": phase, "time": t,
                 **{k: _finite_or_str(v) if isinstance(v, float) else v for k, v in row.items()}}
            )  # fmt: skip

    def flush(self):
        self._f.flush()

    def close(self):
        if not self._f.closed:
            self._f.close()


class MultiLogger(NullLogger):
    """Fans every call out to several loggers. Calls are serialised by a lock, so another
    thread (the system-metrics sampler, copd/train/system_metrics.py) may log too."""

    def __init__(self, *loggers: Logger):
        self.loggers = [lg for lg in loggers if lg is not None]
        self.lock = threading.RLock()

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        with self.lock:
            for lg in self.loggers:
                lg.log_metrics(metrics, step=step, cycle=cycle, phase=phase)

    def log_eval(self, model, benchmark, score, n, *, step):
        with self.lock:
            for lg in self.loggers:
                lg.log_eval(model, benchmark, score, n, step=step)

    def log_event(self, message, *, level="info", step=None):
        with self.lock:
            for lg in self.loggers:
                lg.log_event(message, level=level, step=step)

    def log_checkpoint(self, path, *, step):
        with self.lock:
            for lg in self.loggers:
                lg.log_checkpoint(path, step=step)

    def log_samples(self, rows, *, step, cycle=0, phase=""):
        with self.lock:
            for lg in self.loggers:
                lg.log_samples(rows, step=step, cycle=cycle, phase=phase)

    def flush(self):
        with self.lock:
            for lg in self.loggers:
                lg.flush()

    def close(self):
        for lg in self.loggers:
            lg.close()


def _finite_or_str(v: float) -> float | str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


class Progress(NullLogger):
    """Progress driven by the `run/progress` metric (a Logger): a tqdm bar on a terminal,
    plain one-line updates (no carriage returns) when stderr is a file such as train.log."""

    def __init__(self, total: int, stream=None, every_s: float = 10.0):
        self.stream = stream or sys.stderr
        self.total = total
        self.tracker = None  # the run store's tracker: its heartbeat carries progress
        self.bar = None
        self.every_s = every_s
        self._last = -1e9
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=self.stream)

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        if PROGRESS not in metrics:
            return
        frac = metrics[PROGRESS]
        if self.tracker is not None:
            self.tracker.progress = frac
        if frac > 0:  # a baseline's loop may be longer than the schedule
            self.total = max(self.total, round(step / frac))
        rewards = [v for k, v in metrics.items() if k.endswith("/reward/mean")]
        post = {"cycle": cycle, "phase": phase}
        if rewards:
            post["reward"] = f"{sum(rewards) / len(rewards):.3f}"
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.n = step
            self.bar.set_postfix(post, refresh=False)
            self.bar.refresh()
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or step >= self.total:
            self._last = now
            extra = " ".join(f"{k}={v}" for k, v in post.items())
            print(f"[progress] step {step}/{self.total} ({frac:.0%}) {extra}", file=self.stream)
            self.stream.flush()

    def log_event(self, message, *, level="info", step=None):
        line = f"[{level}] {message}"
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
