"""The background system-metrics sampler (copd/train/system_metrics.py) with a fake NVML
module injected as `pynvml`: rows at the configured period, one per step, the GPUs that
CUDA_VISIBLE_DEVICES names, a clean stop with the last row, and resume's old steps left alone.
"""

from __future__ import annotations

import threading
import time
import types

import pytest

from copd.common import names as N
from copd.train.logger import MultiLogger, NullLogger
from copd.train.system_metrics import GPUProbe, SystemSampler


class Rows(NullLogger):
    def __init__(self):
        self.rows: list[tuple[int, dict]] = []

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        self.rows.append((step, dict(metrics)))


def fake_nvml(n_gpus: int = 2, power_fails_on: int | None = None) -> types.ModuleType:
    """A module with the pynvml functions the sampler calls; GPU i reports util 10*(i+1) %,
    (i+1) GiB used of 80, 100*(i+1) W, 40+i C."""
    m = types.ModuleType("pynvml")
    m.NVML_TEMPERATURE_GPU = 0
    m.calls = {"init": 0, "shutdown": 0}

    class NVMLError(Exception):
        pass

    def init():
        m.calls["init"] += 1

    def shutdown():
        m.calls["shutdown"] += 1

    def by_index(i):
        if i >= n_gpus:
            raise NVMLError("Invalid Argument")
        return i

    def by_uuid(u):
        if not u.startswith("GPU-fake-"):
            raise NVMLError("Not Found")
        return int(u.rsplit("-", 1)[1])

    def power(h):
        if h == power_fails_on:
            raise NVMLError("Not Supported")
        return 100_000 * (h + 1)  # mW

    m.nvmlInit, m.nvmlShutdown = init, shutdown
    m.nvmlDeviceGetCount = lambda: n_gpus
    m.nvmlDeviceGetHandleByIndex, m.nvmlDeviceGetHandleByUUID = by_index, by_uuid
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=10 * (h + 1), memory=0)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=(h + 1) * 2**30, total=80 * 2**30, free=0
    )
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetTemperature = lambda h, sensor: 40 + h
    m.NVMLError = NVMLError
    return m


def test_gpu_probe_reads_every_visible_gpu_through_the_injected_module(monkeypatch):
    nv = fake_nvml(n_gpus=3, power_fails_on=2)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", nv)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    probe = GPUProbe()  # imports pynvml: the fake
    got = probe.read()
    assert got[N.system_gpu(0, N.GPU_UTIL_PERCENT)] == 10.0
    assert got[N.system_gpu(1, N.GPU_MEM_USED_MB)] == 2048.0
    assert got[N.system_gpu(1, N.GPU_MEM_PERCENT)] == pytest.approx(2.5)
    assert got[N.system_gpu(0, N.GPU_POWER_W)] == 100.0
    assert got[N.system_gpu(2, N.GPU_TEMP_C)] == 42.0
    assert N.system_gpu(2, N.GPU_POWER_W) not in got  # unsupported: left out, others kept
    probe.close()
    assert nv.calls == {"init": 1, "shutdown": 1}

    # CUDA_VISIBLE_DEVICES: this process's cuda:0 is physical GPU 2, cuda:1 a UUID
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-fake-0")
    got = GPUProbe(fake_nvml(n_gpus=3)).read()
    assert got[N.system_gpu(0, N.GPU_TEMP_C)] == 42.0
    assert got[N.system_gpu(1, N.GPU_TEMP_C)] == 40.0
    assert not any(k.startswith("system/gpu/2/") for k in got)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert GPUProbe(fake_nvml()).read() == {}


def test_no_nvml_means_host_metrics_only(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    assert GPUProbe().read() == {}
    sampler = SystemSampler(Rows(), 0.05)
    keys = set(sampler.start().read())
    sampler.stop()
    assert keys == {N.SYSTEM_HOST_CPU_PERCENT, N.SYSTEM_HOST_RAM_MB, N.SYSTEM_HOST_RAM_PERCENT}


def test_rows_appear_at_the_period_one_per_step_and_stop_logs_the_last(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake_nvml(n_gpus=1))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    rows = Rows()
    fan = MultiLogger(rows)
    sampler = SystemSampler(fan, every_s=0.1)
    fan.loggers.append(sampler)  # it watches the steps of the fan-out
    sampler.start()
    t0, step = time.monotonic(), 0
    while time.monotonic() - t0 < 1.05:  # steps of 10 ms: shorter than the period
        step += 1
        fan.log_metrics({"run/progress": 0.0}, step=step)
        time.sleep(0.01)
    sampler.stop()
    sys_rows = [(s, m) for s, m in rows.rows if N.SYSTEM_HOST_CPU_PERCENT in m]
    # ~10 periods in 1.05 s (the first row waits one period; loaded machines tick late)
    assert 5 <= len(sys_rows) <= 11, len(sys_rows)
    steps = [s for s, _ in sys_rows]
    assert steps == sorted(set(steps)), "one row per step, in order"
    assert all(m[N.system_gpu(0, N.GPU_POWER_W)] == 100.0 for _, m in sys_rows)
    assert sampler.thread is None and not any(
        t.name == "copd-system-metrics" for t in threading.enumerate()
    )
    n = len(rows.rows)
    time.sleep(0.25)
    assert len(rows.rows) == n, "nothing is logged after stop"


def hand_driven(cpu_percents: tuple[float, ...]) -> tuple[Rows, SystemSampler]:
    """A sampler whose ticks the test drives by hand, reading these host CPU values in
    turn, and the rows it logs."""
    rows = Rows()
    sampler = SystemSampler(rows, every_s=1000)
    values = iter([{"system/host/cpu_percent": v} for v in cpu_percents])
    sampler.read = lambda: next(values)
    return rows, sampler


def test_a_long_step_gets_one_row_the_mean_of_its_samples():
    rows, sampler = hand_driven((10.0, 20.0, 60.0, 5.0))
    sampler.log_metrics({}, step=3)
    sampler.tick()
    sampler.tick()
    sampler.tick()  # three samples during step 3
    assert rows.rows == []  # the step is not over yet
    sampler.log_metrics({}, step=4)
    sampler.tick()  # step 4 seen: step 3's row goes out
    assert rows.rows == [(3, {"system/host/cpu_percent": 30.0})]
    sampler.emit()  # what stop() does last: the pending step's row
    assert rows.rows[-1] == (4, {"system/host/cpu_percent": 5.0})


def test_after_a_resume_old_steps_get_no_rows():
    rows = Rows()
    sampler = SystemSampler(rows, every_s=1000, after_step=5)
    sampler.read = lambda: {"system/host/cpu_percent": 1.0}
    sampler.tick()  # no step seen yet: the resumed run's step 5 was logged before
    sampler.log_metrics({}, step=5)
    sampler.tick()
    sampler.emit()
    assert rows.rows == []
    sampler.log_metrics({}, step=6)
    sampler.tick()
    sampler.emit()
    assert rows.rows == [(6, {"system/host/cpu_percent": 1.0})]


def test_the_period_is_a_config_field_checked_before_a_run():
    from copd.spec import ConfigError, apply_overrides, presets

    assert presets.get("demo").diagnostics.system_every_s == 10.0
    with pytest.raises(ConfigError, match="diagnostics.system_every_s"):
        apply_overrides(presets.get("demo"), ["diagnostics.system_every_s=-1"]).validate()


def test_the_live_view_draws_sampled_keys_with_their_units():
    import pandas as pd

    from app.dashboard import figures

    keys = [
        N.SYSTEM_HOST_CPU_PERCENT,
        N.system_gpu(0, N.GPU_POWER_W),
        N.system_gpu(0, N.GPU_TEMP_C),
    ]
    df = pd.DataFrame([{"key": k, "step": s, "value": 20.0 + s} for k in keys for s in range(3)])
    fig = figures.system_figure(df)
    titles = {a.text for a in fig.layout.annotations}
    assert titles == {
        "system/host/cpu_percent (% of all cores)",
        "system/gpu/0/power_w (W)",
        "system/gpu/0/temp_c (°C)",
    }
    assert list(fig.layout.yaxis.range) == [0.0, 100.0]  # CPU: the whole machine
    assert fig.layout.yaxis2.range[0] == 0.0 and fig.layout.yaxis2.range[1] > 22.0


def test_the_first_row_of_a_run_is_a_reading_not_zero():
    """psutil keeps the previous CPU reading per thread: the priming call in the thread
    that started the sampler left the sampler thread's first reading at 0.0, a false
    0 -> 100% ramp at the start of every run and every resume."""
    rows = Rows()
    sampler = SystemSampler(rows, every_s=0.2).start()
    t0 = time.monotonic()
    while not rows.rows and time.monotonic() - t0 < 60:  # busy: this process uses a core
        sum(i * i for i in range(20_000))
        sampler.log_metrics({}, step=int((time.monotonic() - t0) / 0.3) + 1)
    sampler.stop()
    first = rows.rows[0][1][N.SYSTEM_HOST_CPU_PERCENT]
    assert first > 0.0, rows.rows[:2]


def test_a_flush_writes_the_current_steps_row_once():
    """The row of a step went out one period after the step ended, so a checkpoint (which
    flushes every logger before it exists) did not cover the checkpoint step's row and a
    kill after it lost that row for good. Now flush() writes it, and later samples of the
    same step are not a second row."""
    rows, sampler = hand_driven((10.0, 30.0, 99.0, 7.0))
    sampler.log_metrics({}, step=10)
    sampler.tick()
    sampler.tick()
    sampler.flush()  # the checkpoint of step 10
    assert rows.rows == [(10, {"system/host/cpu_percent": 20.0})]
    sampler.tick()  # still step 10: no second row for it
    sampler.log_metrics({}, step=11)
    sampler.tick()
    sampler.emit()
    assert rows.rows == [
        (10, {"system/host/cpu_percent": 20.0}),
        (11, {"system/host/cpu_percent": 7.0}),
    ]


def test_the_runner_puts_the_sampler_first_so_a_flush_covers_its_row(tmp_path):
    from copd.runner import attach_observers
    from copd.spec import RunConfig
    from copd.train.logger import MultiLogger

    rows = Rows()
    fan = MultiLogger(rows)
    sampler = attach_observers(RunConfig(), fan, tmp_path, "copd", None, echo=False)
    try:
        assert fan.loggers[0] is sampler
    finally:
        sampler.stop()
