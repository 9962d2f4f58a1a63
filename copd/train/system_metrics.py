"""System metrics sampled by a background thread while a run trains, not only at the
diagnostics steps: the host's CPU and RAM (psutil) and each visible GPU's utilisation,
memory, power and temperature (nvidia-ml-py, where it is installed and there is a GPU).

    sampler = SystemSampler(logger, every_s=10.0)   # logs through `logger` (a MultiLogger)
    logger.loggers.append(sampler)                  # ... and watches its steps
    sampler.start()
    ...
    sampler.stop()                                  # the last step's row, then the thread ends

Names (copd.common.names): `system/host/cpu_percent`, `system/host/ram_used_mb`,
`system/host/ram_percent`, `system/gpu/<i>/{util_percent, mem_used_mb, mem_percent,
power_w, temp_c}` with i the GPU's CUDA index in this process (CUDA_VISIBLE_DEVICES
respected, given as indices or UUIDs).

The store keeps one value per (metric, step), and resume relies on it. So a sample belongs
to the training step current when it was taken, and a step's samples become one row, their
mean, logged when a later step is seen (or at stop): with steps shorter than the period a
row appears every period; with longer steps one row per step, the mean of its samples.
After a resume from step S, steps <= S get no rows (the run logged them before).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from copd.common import names as N
from copd.train.logger import NullLogger


def host_metrics() -> dict[str, float]:
    """The machine's CPU use (all cores, since the previous call) and RAM in use."""
    import psutil

    mem = psutil.virtual_memory()
    return {
        N.SYSTEM_HOST_CPU_PERCENT: float(psutil.cpu_percent(interval=None)),
        N.SYSTEM_HOST_RAM_MB: mem.used / 2**20,
        N.SYSTEM_HOST_RAM_PERCENT: float(mem.percent),
    }


def visible_gpus(nvml: Any) -> list[Any]:
    """NVML handles of the GPUs this process sees, in CUDA order: CUDA_VISIBLE_DEVICES as
    indices or UUIDs (entries NVML does not know are left out), else every GPU."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    handles = []
    for entry in (e.strip() for e in env.split(",")):
        if not entry or entry.startswith("-"):  # "-1" and what follows hides the rest
            break
        try:
            if entry.isdigit():
                handles.append(nvml.nvmlDeviceGetHandleByIndex(int(entry)))
            else:
                handles.append(nvml.nvmlDeviceGetHandleByUUID(entry))
        except Exception:
            continue
    return handles


class GPUProbe:
    """Reads each visible GPU through NVML (the `pynvml` module of nvidia-ml-py). `nvml`:
    a module with the same functions (tests inject a fake one). Empty where NVML is
    missing or finds no GPU."""

    def __init__(self, nvml: Any = None):
        self.nvml, self.handles = None, []
        try:
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
        except Exception:  # not installed, no driver, no GPU: no GPU metrics
            return
        self.nvml = nvml
        try:
            self.handles = visible_gpus(nvml)
        except Exception:
            self.handles = []

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        nv = self.nvml
        for i, h in enumerate(self.handles):
            reads = {
                N.GPU_UTIL_PERCENT: lambda h=h: nv.nvmlDeviceGetUtilizationRates(h).gpu,
                N.GPU_MEM_USED_MB: lambda h=h: nv.nvmlDeviceGetMemoryInfo(h).used / 2**20,
                N.GPU_MEM_PERCENT: lambda h=h: (
                    100.0 * nv.nvmlDeviceGetMemoryInfo(h).used / nv.nvmlDeviceGetMemoryInfo(h).total
                ),
                N.GPU_POWER_W: lambda h=h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
                N.GPU_TEMP_C: lambda h=h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            }
            for key, read in reads.items():
                try:
                    out[N.system_gpu(i, key)] = float(read())
                except Exception:  # a reading this GPU does not support (power on some)
                    continue
        return out

    def close(self) -> None:
        if self.nvml is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()
            self.nvml = None


class SystemSampler(NullLogger):
    """Samples the machine every `every_s` seconds and logs through `target`; as a Logger
    in the same fan-out it sees the steps (log_metrics) that samples are filed under.
    `after_step`: a resume's checkpoint step (steps up to it get no rows)."""

    def __init__(self, target: Any, every_s: float, *, after_step: int | None = None,
                 nvml: Any = None):  # fmt: skip
        self.target = target
        self.every_s = float(every_s)
        self.after_step = -1 if after_step is None else int(after_step)
        self.step: int | None = 0 if self.after_step < 0 else None
        self.cycle, self.phase = 0, ""
        self.nvml = nvml
        self.pending: tuple[int, int, str, list[dict[str, float]]] | None = None
        self.emitted = -1  # the last step whose row went out (flush): later samples skip it
        self.lock = threading.Lock()  # pending and emitted: the thread ticks, flush() emits
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.gpu: GPUProbe | None = None

    # ------------------------------------------------------------------ the Logger side
    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        if step > self.after_step and (self.step is None or step >= self.step):
            self.step, self.cycle, self.phase = int(step), cycle, phase

    # ------------------------------------------------------------------ the thread
    def start(self) -> SystemSampler:
        self.gpu = GPUProbe(self.nvml)
        self.thread = threading.Thread(target=self.run, name="copd-system-metrics", daemon=True)
        self.thread.start()
        return self

    def run(self) -> None:
        # Primes psutil's CPU counter in this thread: psutil keeps the previous reading per
        # thread, so a priming call in the starting thread left the first row at 0.0.
        host_metrics()
        while not self.stopped.wait(self.every_s):
            self.tick()

    def read(self) -> dict[str, float]:
        return {**host_metrics(), **(self.gpu.read() if self.gpu else {})}

    def tick(self) -> None:
        """One sample, filed under the current step; a finished step's row is logged."""
        step = self.step
        if step is None:
            return
        try:
            sample = self.read()
        except Exception:  # a reading failed: skip this sample, never the run
            return
        with self.lock:
            if step <= self.emitted:  # its row went out at a flush: one row per step
                return
            done = self.take() if self.pending is not None and self.pending[0] != step else None
            if self.pending is None:
                self.pending = (step, self.cycle, self.phase, [])
            self.pending[3].append(sample)
        self.write_row(done)

    def take(self):
        """The pending step's samples, now owned by the caller (under `lock`)."""
        done, self.pending = self.pending, None
        if done is not None:
            self.emitted = max(self.emitted, done[0])
        return done

    def emit(self) -> None:
        """Log the pending step's samples as one row (their mean per metric)."""
        with self.lock:
            done = self.take()
        self.write_row(done)

    def flush(self) -> None:
        """The pending step's row now, so a checkpoint (which flushes every logger before it
        exists) covers it: a kill after the checkpoint loses no system row. The runner puts
        the sampler first in the fan-out, so the loggers flushed after it write this row."""
        self.emit()

    def write_row(self, done) -> None:
        if done is None:
            return
        step, cycle, phase, samples = done
        keys = dict.fromkeys(k for s in samples for k in s)
        row = {k: sum(s[k] for s in samples if k in s) / sum(k in s for s in samples) for k in keys}
        if row:
            self.target.log_metrics(row, step=step, cycle=cycle, phase=phase)

    def stop(self) -> None:
        """End the thread and log the last step's row. Idempotent."""
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
            self.emit()
        if self.gpu is not None:
            self.gpu.close()
            self.gpu = None

    def close(self) -> None:
        self.stop()
