"""Experiment trackers as loggers (`report_to`): TensorBoard, MLflow, W&B and Trackio get
the run's metrics, evaluations, samples and config, beside the run store.

    trackers = open_trackers(cfg, out, warn=print)   # one TrackerLogger per name in report_to
    logger = MultiLogger(jsonl, store_logger, *trackers)

Each tracker's package is imported here, when a run asks for it, never when copd is
imported: the engine still trains on a machine with only torch, transformers and peft. A
tracker that is not installed or cannot start gives one warning naming the extra to
install (`pip install 'copd[tensorboard]'`) and the run goes on without it; one that fails
later (a full disk, a server gone) is switched off with one warning. A tracker never stops
training.

Where each one writes (README, "Where your runs go"):

    tensorboard  <run_dir>/tensorboard                 tensorboard --logdir <run_dir>/tensorboard
    mlflow       $MLFLOW_TRACKING_URI, else sqlite:///<run_dir>/mlflow.db (artifacts in
                 <run_dir>/mlflow-artifacts); experiment $MLFLOW_EXPERIMENT_NAME, else the
                 run's group, else "copd"
    wandb        <run_dir>/wandb; offline unless WANDB_MODE says otherwise, or the user has a
                 key (WANDB_API_KEY, `wandb login`): then online; project $WANDB_PROJECT or
                 "copd", the run's group
    trackio      trackio's local store ($TRACKIO_DIR, default ~/.cache/huggingface/trackio);
                 project $TRACKIO_PROJECT or "copd"          trackio show --project copd

What each gets: every metric under its copd name (`branch/add/reward/mean`; every tracker
groups by the "/"), every evaluation as the metric `eval/<model>/<benchmark>` at its step,
the config flattened to dotted keys as hyper-parameters (`grpo.lr`), and the samples
(copd/train/samples.py) as a table: a W&B Table, an MLflow `log_table` artifact, a Trackio
Table, TensorBoard text. The step axis is copd's step (W&B: the metric `step`, because copd
may log an older step after a newer one, which W&B's own step would drop).

A resumed run (`--resume`) is a new run in each tracker, starting at the checkpoint's step
(what the killed process had sent after it stays there: trackers cannot delete it).

Keys a tracker forbids characters in are mapped (`tracker_key`): MLflow takes only letters,
digits, `_ - . : /` and space, so the pair separator `~` (`pair/add~rev/sym_kl`) becomes
`--` (`pair/add--rev/sym_kl`), `@` (validation benchmarks, `eval/merged/add@val`) becomes
`_`, and any other character `_`. TensorBoard, W&B and Trackio take copd's names as they are.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copd.common.query import flatten
from copd.train.logger import NullLogger

OUTCOMES = {"finished", "failed", "cancelled"}
MLFLOW_BAD = re.compile(r"[^\w.\- :/]")
MLFLOW_MAP = {"~": "--", "@": "_"}
# The columns of a sample row that a tracker's table shows (per-token lists stay in the
# run store and metrics.jsonl).
SAMPLE_COLUMNS = (
    "step", "kind", "branch", "domain", "prompt_index", "prompt", "completion", "reward",
    "correct", "disagreement", "overlap",
)  # fmt: skip


def tracker_key(tracker: str, key: str) -> str:
    """`key` as `tracker` accepts it: unchanged, except MLflow's character set (module doc).
    tracker_key("mlflow", "pair/add~rev/sym_kl") -> "pair/add--rev/sym_kl"."""
    if tracker != "mlflow":
        return key
    for a, b in MLFLOW_MAP.items():
        key = key.replace(a, b)
    return MLFLOW_BAD.sub("_", key)


def eval_key(model: str, benchmark: str) -> str:
    """The metric an evaluation becomes in a tracker: eval_key("merged", "add") ->
    "eval/merged/add"."""
    return f"eval/{model}/{benchmark}"


def hyperparameters(config: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """The config flattened to dotted keys with scalar values (lists and None as JSON text),
    as every tracker's hyper-parameter table takes them."""
    out: dict[str, str | int | float | bool] = {}
    for k, v in flatten(config).items():
        out[k] = v if isinstance(v, (str, int, float, bool)) else json.dumps(v, default=str)
    return out


def sample_table(rows: list[dict], step: int) -> dict[str, list]:
    """Sample rows as table columns (SAMPLE_COLUMNS), each cell a scalar."""
    return {c: [step if c == "step" else row.get(c) for row in rows] for c in SAMPLE_COLUMNS}


@dataclass(frozen=True)
class RunInfo:
    """What a tracker is told about the run when it opens."""

    name: str
    method: str
    group: str | None
    out: Path  # the run folder
    config: dict[str, Any]  # RunConfig.to_dict()


EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb", "trackio": "trackio"}


class TensorBoardBackend:
    name = "tensorboard"

    def __init__(self, run: RunInfo):
        from torch.utils.tensorboard import SummaryWriter  # ImportError without tensorboard
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=str(run.out / "tensorboard"))
        hp = hyperparameters(run.config)
        for summary in hparams(hp, {}):
            self.writer.file_writer.add_summary(summary)
        text = json.dumps(run.config, indent=2)
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))

    def metrics(self, values: dict[str, float], step: int) -> None:
        # One event holding every value of the call (add_scalar writes one event per value).
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard.summary import scalar

        vals = [scalar(k, float(v)).value[0] for k, v in values.items()]
        self.writer.file_writer.add_summary(Summary(value=vals), step, time.time())

    def samples(self, rows: list[dict], step: int) -> None:
        cols = sample_table(rows, step)
        names = [c for c in SAMPLE_COLUMNS if c != "step"]
        head = "| " + " | ".join(names) + " |\n|" + "---|" * len(names) + "\n"
        body = "".join(
            "| " + " | ".join(md_cell(cols[c][i]) for c in names) + " |\n" for i in range(len(rows))
        )
        self.writer.add_text("samples", head + body, step)

    def flush(self) -> None:
        self.writer.flush()

    def finish(self, outcome: str) -> None:
        self.writer.close()


def md_cell(value: Any) -> str:
    """A value as one cell of a markdown table (pipes and newlines escaped)."""
    text = "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


class MlflowBackend:
    name = "mlflow"
    STATUS = {"finished": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}

    def __init__(self, run: RunInfo):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        # MLflow retries a dead server for minutes (7 tries, backoff): a run must start.
        # Two tries 10 s apart at most, unless the user set MLflow's own variables.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        artifacts = None
        if not uri:  # the run's own database and artifact folder, inside the run folder
            uri = f"sqlite:///{(run.out / 'mlflow.db').resolve()}"
            artifacts = (run.out / "mlflow-artifacts").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or run.group or "copd"
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(name, artifacts)
        tags = {"copd.method": run.method, "copd.run_dir": str(run.out.resolve())}
        if run.group:
            tags["copd.group"] = run.group
        self.run_id = self.client.create_run(exp_id, run_name=run.name, tags=tags).info.run_id
        params = [Param(k[:250], str(v)[:6000]) for k, v in hyperparameters(run.config).items()]
        for i in range(0, len(params), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ms = int(time.time() * 1000)
        rows = [Metric(tracker_key("mlflow", k), float(v), ms, step) for k, v in values.items()]
        for i in range(0, len(rows), 1000):  # queued: MLflow's own thread writes (flush waits)
            self.client.log_batch(self.run_id, metrics=rows[i : i + 1000], synchronous=False)

    def samples(self, rows: list[dict], step: int) -> None:
        self.client.log_table(
            self.run_id,
            data=sample_table(rows, step),
            artifact_file=f"samples/step-{step:06d}.json",
        )

    def flush(self) -> None:
        import mlflow

        mlflow.flush_async_logging()

    def finish(self, outcome: str) -> None:
        self.flush()
        self.client.set_terminated(self.run_id, self.STATUS.get(outcome, "FINISHED"))


def wandb_mode() -> str:
    """W&B's mode: $WANDB_MODE when set; "online" when the user has a key (WANDB_API_KEY, or
    `wandb login`'s entry in ~/.netrc); else "offline" (the run stays in <run_dir>/wandb
    until `wandb sync`)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return "online" if netrc.netrc().authenticators(host or "") else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


class WandbBackend:
    name = "wandb"

    def __init__(self, run: RunInfo):
        import wandb

        self.wandb = wandb
        mode = wandb_mode()
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "copd"), name=run.name, group=run.group,
            job_type=run.method, dir=str(run.out), config=run.config, mode=mode,
            reinit="create_new", settings=wandb.Settings(console="off", silent=True),
        )  # fmt: skip
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log({**{k: float(v) for k, v in values.items()}, "step": step})

    def samples(self, rows: list[dict], step: int) -> None:
        cols = sample_table(rows, step)
        data = [[cols[c][i] for c in SAMPLE_COLUMNS] for i in range(len(rows))]
        table = self.wandb.Table(columns=list(SAMPLE_COLUMNS), data=data)
        self.run.log({"samples": table, "step": step})

    def flush(self) -> None:
        pass

    def finish(self, outcome: str) -> None:
        self.run.finish(exit_code=0 if outcome != "failed" else 1)


class TrackioBackend:
    name = "trackio"

    def __init__(self, run: RunInfo):
        import trackio

        self.trackio = trackio
        # copd samples the machine itself (system/...): trackio's own sampler stays off.
        self.run = trackio.init(
            project=os.environ.get("TRACKIO_PROJECT", "copd"), name=run.name, group=run.group,
            config=hyperparameters(run.config), auto_log_cpu=False, auto_log_gpu=False,
        )  # fmt: skip

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log({k: float(v) for k, v in values.items()}, step=step)

    def samples(self, rows: list[dict], step: int) -> None:
        import pandas as pd

        frame = pd.DataFrame(sample_table(rows, step))
        self.run.log({"samples": self.trackio.Table(dataframe=frame)}, step=step)

    def flush(self) -> None:
        pass

    def finish(self, outcome: str) -> None:
        self.run.finish()


BACKENDS = {
    "tensorboard": TensorBoardBackend,
    "mlflow": MlflowBackend,
    "wandb": WandbBackend,
    "trackio": TrackioBackend,
}


class TrackerLogger(NullLogger):
    """The engine's Logger on one tracker backend. The first error switches the tracker
    off with one warning (`warn`); training goes on. `outcome` ("finished", "failed",
    "cancelled") is what `close` reports to the tracker."""

    def __init__(self, backend: Any, warn: Callable[[str], None]):
        self.backend = backend
        self.name = backend.name
        self.warn = warn
        self.failed = False
        self.closed = False
        self.outcome = "finished"

    def call(self, what: str, fn: Callable, *args: Any) -> None:
        if self.failed:
            return
        try:
            fn(*args)
        except Exception as e:  # a tracker never stops training
            self.failed = True
            self.warn(
                f"report_to {self.name}: {what} failed ({type(e).__name__}: {e}); the run "
                f"goes on without {self.name}"
            )

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        if metrics:
            self.call("logging metrics", self.backend.metrics, dict(metrics), int(step))

    def log_eval(self, model, benchmark, score, n, *, step):
        self.call(
            "logging an evaluation",
            self.backend.metrics,
            {eval_key(model, benchmark): float(score)},
            int(step),
        )

    def log_samples(self, rows, *, step, cycle=0, phase=""):
        if rows:
            self.call("logging samples", self.backend.samples, list(rows), int(step))

    def flush(self):
        self.call("flushing", self.backend.flush)

    def close(self):
        if not self.closed:
            self.closed = True
            self.call("closing", self.backend.finish, self.outcome)


def open_tracker(name: str, run: RunInfo, warn: Callable[[str], None]) -> TrackerLogger | None:
    """A TrackerLogger for tracker `name`, or None (with one warning) when its package is
    missing or it cannot start."""
    try:
        return TrackerLogger(BACKENDS[name](run), warn)
    except ImportError as e:
        warn(
            f"report_to {name}: not installed ({e}); install it with pip install "
            f"'copd[{EXTRAS[name]}]'. The run goes on without {name}"
        )
    except Exception as e:
        warn(
            f"report_to {name}: could not start ({type(e).__name__}: {e}); the run goes on without it"
        )
    return None


def open_trackers(cfg, out: Path, warn: Callable[[str], None], method: str | None = None) -> list:
    """One TrackerLogger per tracker in `cfg.report_to` that could start."""
    run = RunInfo(cfg.name, method or cfg.method, cfg.group, Path(out), cfg.to_dict())
    opened = (open_tracker(name, run, warn) for name in cfg.report_to)
    return [t for t in opened if t is not None]


def set_outcome(logger: Any, outcome: str) -> None:
    """Tell every TrackerLogger under `logger` (a MultiLogger or one logger) how the run
    ended, before it is closed."""
    assert outcome in OUTCOMES, outcome
    for lg in getattr(logger, "loggers", [logger]):
        if isinstance(lg, TrackerLogger):
            lg.outcome = outcome
