"""GPU discovery for the launcher: NVML when importable, else `nvidia-smi`, else none.

    from app.control.gpus import detect_gpus
    detect_gpus()   # [GPU(index=0, name='NVIDIA H100', total_mb=81559, free_mb=80000, ...)] or []

Never raises: a CPU-only machine, a missing driver or a broken `nvidia-smi` all give [].
Indices are in PCI bus order (NVML and nvidia-smi both enumerate that way); the launcher sets
`CUDA_DEVICE_ORDER=PCI_BUS_ID` in its children so `CUDA_VISIBLE_DEVICES` means the same ids.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass

NVIDIA_SMI_QUERY = "index,name,memory.total,memory.free,utilization.gpu"


@dataclass(frozen=True)
class GPU:
    """One visible GPU; memory in MiB, utilisation in percent (None when unknown)."""

    index: int
    name: str
    total_mb: int
    free_mb: int
    util_percent: float | None


def detect_gpus() -> list[GPU]:
    """GPUs on this machine, NVML first (`nvidia-ml-py`), then `nvidia-smi`, else []."""
    gpus = _detect_nvml()
    if gpus is None:
        gpus = _detect_nvidia_smi()
    return gpus or []


def _detect_nvml() -> list[GPU] | None:
    """None when NVML is not usable here (module or driver missing), so the caller falls back."""
    try:
        import pynvml  # provided by the `nvidia-ml-py` package (the `gpu` extra)
    except Exception:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            if isinstance(name, bytes):  # older bindings return bytes
                name = name.decode(errors="replace")
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                util: float | None = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:  # not supported on some (e.g. MIG) devices
                util = None
            out.append(GPU(i, str(name), mem.total // 2**20, mem.free // 2**20, util))
        return out
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _detect_nvidia_smi() -> list[GPU]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return parse_nvidia_smi(proc.stdout)


def parse_nvidia_smi(text: str) -> list[GPU]:
    """Parse `nvidia-smi --query-gpu=index,name,memory.total,memory.free,utilization.gpu
    --format=csv,noheader,nounits` output; lines that do not parse are skipped."""
    out = []
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 5:
            continue
        # A GPU name may itself contain commas: the first field is the index, the last three
        # are numbers, everything between is the name.
        idx, name = parts[0].strip(), ",".join(parts[1:-3]).strip()
        total, free, util = (p.strip() for p in parts[-3:])
        try:
            out.append(GPU(int(idx), name, int(float(total)), int(float(free)), _num(util)))
        except ValueError:
            continue
    return out


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]" or "[Not Supported]"
        return None
