"""`report_to`: a short demo run reported to TensorBoard, MLflow, W&B and Trackio, each read
back with the tracker's own reader (TensorBoard's EventAccumulator, MLflow's client on the
run's sqlite database, W&B's offline run file, Trackio's local store) against the run's
metrics.jsonl. A tracker whose package is not installed is skipped here (and warned about
in the run); without any of them the run still trains (tested with every package hidden).
"""

from __future__ import annotations

import glob
import json
import os
import socket
import struct
import sys
from pathlib import Path

import pytest
from tiny_support import tiny_overrides

from copd.runner import train_run
from copd.spec import ConfigError, apply_overrides, presets
from copd.train import trackers as T

ALL = ["tensorboard", "mlflow", "wandb", "trackio"]
KEY = "branch/add/reward/mean"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def metric_series(out: Path, key: str) -> dict[int, float]:
    return {
        r["step"]: r["values"][key]
        for r in jsonl(out / "metrics.jsonl")
        if r["type"] == "metric" and key in r["values"]
    }


def evals(out: Path) -> dict[tuple[str, str, int], float]:
    return {
        (r["model"], r["benchmark"], r["step"]): r["score"]
        for r in jsonl(out / "metrics.jsonl")
        if r["type"] == "eval"
    }


@pytest.fixture(scope="module")
def reported(tiny_model_dir, tmp_path_factory):
    """One demo run on the tiny model reported to every tracker, recorded in a store."""
    root = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_API_KEY", "WANDB_DIR"):
        mp.delenv(var, raising=False)
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("TRACKIO_DIR", str(root / "trackio"))
    cfg = apply_overrides(
        presets.get("demo"),
        [
            *tiny_overrides(tiny_model_dir),
            f"report_to={json.dumps(ALL)}",
            "group=trackers",
            "diagnostics.samples_every=1",
            "diagnostics.system_every_s=0.2",
        ],
    ).validate()
    out = root / "run"
    try:
        scores = train_run(cfg, out, db=f"sqlite:///{root / 'runs.db'}")
    finally:
        mp.undo()
    assert scores is not None and "merged" in scores
    return out, root


def installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_report_to_is_checked_with_a_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        apply_overrides(presets.get("demo"), ['report_to=["tensorbord"]'])
    with pytest.raises(ConfigError, match="name each tracker once"):
        apply_overrides(presets.get("demo"), ['report_to=["wandb","wandb"]']).validate()
    # a bare name or a comma list is a list too, as on the command line
    cfg = apply_overrides(presets.get("demo"), ["report_to=mlflow,wandb"])
    assert cfg.report_to == ("mlflow", "wandb")
    assert presets.get("demo").report_to == ()  # default: nothing leaves the run folder

    from copd.cli import build_parser, with_report_to

    args = build_parser().parse_args(
        ["train", "demo", "--report-to", "tensorboard,mlflow", "--report-to", "wandb"]
    )
    assert with_report_to(args, []) == ['report_to=["tensorboard", "mlflow", "wandb"]']


def test_keys_are_mapped_only_where_a_tracker_forbids_characters():
    assert T.tracker_key("mlflow", "pair/add~rev/sym_kl") == "pair/add--rev/sym_kl"
    assert T.tracker_key("mlflow", "eval/merged/add@val") == "eval/merged/add_val"
    assert T.tracker_key("mlflow", "x/a+b=c") == "x/a_b_c"
    for name in ("tensorboard", "wandb", "trackio"):
        assert T.tracker_key(name, "pair/add~rev/sym_kl") == "pair/add~rev/sym_kl"
    if installed("mlflow"):  # MLflow's own rule accepts every mapped key
        from mlflow.utils.validation import validate_param_and_metric_name as ok

        assert not ok("pair/add~rev/sym_kl")
        assert ok(T.tracker_key("mlflow", "pair/add~rev/sym_kl"))
        assert ok(T.tracker_key("mlflow", "eval/merged/overall@val"))


def test_a_missing_tracker_warns_once_naming_the_extra_and_the_run_trains(
    tiny_cfg, tmp_path, monkeypatch
):
    for mod in ("torch.utils.tensorboard", "mlflow", "mlflow.tracking", "wandb", "trackio"):
        monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    cfg = tiny_cfg("demo", f"report_to={json.dumps(ALL)}", "schedule.cycles=1")
    scores = train_run(cfg, tmp_path / "run", db=f"sqlite:///{tmp_path / 'runs.db'}")
    assert scores is not None and "merged" in scores
    warnings = [
        r["message"]
        for r in jsonl(tmp_path / "run" / "metrics.jsonl")
        if r["type"] == "event" and r["level"] == "warning"
    ]
    for name in ALL:
        mine = [w for w in warnings if w.startswith(f"report_to {name}:")]
        assert len(mine) == 1, warnings
        assert f"pip install 'copd[{name}]'" in mine[0]
    from storage import RunStore

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'runs.db'}")
    run = store.list_runs()[0]
    assert run.status == "finished"
    assert sum("report_to" in e.message for e in store.events(run.id)) == 4


def test_a_tracker_that_fails_later_is_switched_off_with_one_warning():
    class Flaky:
        name = "tensorboard"
        calls = 0

        def metrics(self, values, step):
            Flaky.calls += 1
            raise OSError("No space left on device")

        def finish(self, outcome):
            Flaky.finished = outcome

    said: list[str] = []
    lg = T.TrackerLogger(Flaky(), said.append)
    for step in range(3):
        lg.log_metrics({"a": 1.0}, step=step)
        lg.log_eval("merged", "add", 0.5, 8, step=step)
    lg.close()
    assert Flaky.calls == 1 and len(said) == 1
    assert "No space left on device" in said[0] and "goes on without tensorboard" in said[0]
    assert not hasattr(Flaky, "finished")  # switched off: nothing more is sent


def test_tensorboard_event_files_hold_the_run(reported):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = reported
    ea = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    tags = ea.Tags()
    got = {e.step: e.value for e in ea.Scalars(KEY)}
    want = metric_series(out, KEY)
    assert got.keys() == want.keys() and len(want) >= 4
    assert all(got[s] == pytest.approx(want[s], rel=1e-6) for s in want)
    assert "pair/add~rev/overlap_top10" in tags["scalars"]  # TensorBoard keeps copd's names
    for (model, bench, step), score in evals(out).items():
        vals = {e.step: e.value for e in ea.Scalars(T.eval_key(model, bench))}
        assert vals[step] == pytest.approx(score)
    assert "system/host/cpu_percent" in tags["scalars"]
    assert {"config/text_summary", "samples/text_summary"} <= set(tags["tensors"])
    assert "_hparams_/experiment" in ea.PluginTagToContent("hparams")


def test_mlflow_run_in_the_run_folder_holds_metrics_params_evals_and_samples(reported):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, _ = reported
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("trackers")  # the run's group
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "copd-demo"
    assert run.data.params["grpo.group_size"] == "4"
    assert run.data.params["report_to"] == json.dumps(ALL)
    hist = {m.step: m.value for m in client.get_metric_history(run.info.run_id, KEY)}
    want = metric_series(out, KEY)
    assert hist.keys() == want.keys()
    assert all(hist[s] == pytest.approx(want[s]) for s in want)
    assert "pair/add--rev/overlap_top10" in run.data.metrics  # "~" mapped
    assert run.data.metrics["eval/merged/overall_val"] == pytest.approx(
        evals(out)[("merged", "overall@val", max(want))]
    )
    tables = client.list_artifacts(run.info.run_id, "samples")
    assert tables, "no sample tables"
    rows = json.loads(Path(client.download_artifacts(run.info.run_id, tables[0].path)).read_text())
    assert "completion" in rows["columns"] and rows["data"]


def wandb_records(path: str):
    """The records of a W&B run file (`run-<id>.wandb`): a 7-byte header, then LevelDB-log
    blocks of 32 KiB whose chunks (crc32, length, type) carry protobuf `Record`s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # block padding
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a FULL record or the LAST chunk of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def test_wandb_offline_run_holds_config_metrics_and_sample_tables(reported):
    pytest.importorskip("wandb")
    out, _ = reported
    (path,) = glob.glob(str(out / "wandb" / "offline-run-*" / "run-*.wandb"))
    history, config, run = [], {}, None
    for rec in wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            # a name with "/" arrives split into nested_key
            history.append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.history.item
                }
            )
        elif kind == "run":
            run = rec.run
            config = {i.key: json.loads(i.value_json) for i in rec.run.config.update}
    assert run.display_name == "copd-demo" and run.run_group == "trackers"
    assert config["grpo"]["group_size"] == 4 and config["report_to"] == ALL
    got = {h["step"]: h[KEY] for h in history if KEY in h}
    want = metric_series(out, KEY)
    assert got.keys() == want.keys()
    assert all(got[s] == pytest.approx(want[s]) for s in want)
    assert any("pair/add~rev/sym_kl" in h for h in history)
    assert any("eval/merged/overall" in h for h in history)
    tables = [h for h in history if h.get("samples/_type") == "table-file"]
    assert tables
    table = json.loads((Path(path).parent / "files" / tables[0]["samples/path"]).read_text())
    assert "completion" in table["columns"] and table["data"]


def test_trackio_local_store_holds_the_run(reported):
    pytest.importorskip("trackio")
    import sqlite3

    out, root = reported
    db = sqlite3.connect(root / "trackio" / "copd.db")
    rows = db.execute("SELECT step, metrics FROM metrics WHERE run_name = 'copd-demo'").fetchall()
    steps: dict[int, dict] = {}
    for step, blob in rows:
        steps.setdefault(step, {}).update(json.loads(blob))
    want = metric_series(out, KEY)
    got = {s: m[KEY] for s, m in steps.items() if KEY in m}
    assert got.keys() == want.keys()
    assert all(got[s] == pytest.approx(want[s]) for s in want)
    assert any(m.get("samples", {}).get("_type") == "trackio.table" for m in steps.values())
    (cfg,) = db.execute("SELECT config FROM configs WHERE run_name = 'copd-demo'").fetchall()
    assert json.loads(cfg[0])["grpo.group_size"] == 4


def test_system_metrics_of_the_run_are_one_row_per_step(reported):
    out, _ = reported
    seen: dict[tuple[str, int], int] = {}
    for r in jsonl(out / "metrics.jsonl"):
        if r["type"] == "metric":
            for k in r["values"]:
                if k.startswith("system/host/"):
                    seen[k, r["step"]] = seen.get((k, r["step"]), 0) + 1
    assert seen and max(seen.values()) == 1
    assert {k for k, _ in seen} == {
        "system/host/cpu_percent",
        "system/host/ram_used_mb",
        "system/host/ram_percent",
    }


def test_the_launch_form_offers_report_to_as_a_list_of_names():
    from app.dashboard import forms

    (field,) = [f for f in forms.run_fields().fields if f.path == "report_to"]
    assert field.kind == "list" and "trackers" in field.help
    base = presets.get("demo").to_dict()
    values = {"report_to": forms.parse_list("tensorboard, mlflow", field.item_type, "report_to")}
    assert forms.build_config(base, values).report_to == ("tensorboard", "mlflow")
    with pytest.raises(ConfigError, match="did you mean 'wandb'"):
        forms.build_config(base, {"report_to": ["wand"]})


def test_wandb_stays_offline_unless_the_user_configured_it(tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert T.wandb_mode() == "offline"  # no ~/.netrc
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine example.org login u password p\n")
    netrc.chmod(0o600)
    assert T.wandb_mode() == "offline"
    netrc.write_text("machine api.wandb.ai login user password k\n")
    assert T.wandb_mode() == "online"  # `wandb login` was run
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert T.wandb_mode() == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    netrc.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert T.wandb_mode() == "online"


def test_copd_launch_takes_report_to_too(tmp_path, monkeypatch):
    from app.control.launcher import Launcher
    from copd.cli import main
    from storage import RunStore

    monkeypatch.setattr(Launcher, "tick", lambda self: [])  # queue only: start no trainer
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    argv = ["launch", "demo", "--no-wait", "--db", url, "--runs-root", str(tmp_path / "runs")]
    assert main([*argv, "--report-to", "wandb,tensorbord"]) == 2  # nothing queued
    assert RunStore.from_url(url).list_runs() == []
    assert main([*argv, "--report-to", "wandb", "--report-to", "mlflow"]) == 0
    (run,) = RunStore.from_url(url).list_runs()
    assert run.config["report_to"] == ["wandb", "mlflow"]


def test_mlflow_at_a_dead_server_warns_and_the_run_trains(tiny_cfg, tmp_path, monkeypatch):
    """MLflow pointed at a server that is not there retried for minutes (the run started
    after 260 s); now it gives up after one retry, warns once, and the run trains."""
    pytest.importorskip("mlflow")
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    cfg = tiny_cfg("demo", 'report_to=["mlflow"]', "schedule.cycles=1")
    scores = train_run(cfg, tmp_path / "run")
    assert scores is not None and "merged" in scores
    warnings = [
        r["message"]
        for r in jsonl(tmp_path / "run" / "metrics.jsonl")
        if r["type"] == "event" and r["level"] == "warning"
    ]
    assert len([w for w in warnings if w.startswith("report_to mlflow:")]) == 1, warnings
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
