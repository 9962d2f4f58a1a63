"""P3: resident memory of three branches against one, for LoRA and full-weight branches.

    .venv/bin/python bench/p3_memory.py [--size 512x8] [--prompts 4 --group 4]

Each figure comes from a fresh subprocess: it builds the world (base model plus 1 or 3
branches, tasks add / rev / sort), runs one GRPO step of every branch, then reports its RSS
peak RSS and its live RSS
(after glibc's malloc_trim hands freed activation buffers back to the OS). A baseline subprocess imports the same libraries (torch, transformers, peft,
the engine) and reports its RSS; the model-attributable memory is RSS minus that baseline.
The model is a random-init Qwen2 of `--size` (default 8 layers x 512 wide, about 34M
parameters, 134 MB in float32) so that weights, gradients and AdamW state dominate, not the
~350 MB of imports; the step is small (4 prompts x G=4) for the same reason.
Target: three LoRA branches <= 1.3x one LoRA branch (model-attributable).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as C  # sets the offline and thread environment before torch loads

TARGET = 1.3
NAMES = ("add", "rev", "sort")


def _rss_mb() -> tuple[float, float, float]:
    """(RSS, RSS after returning the allocator's free pages to the OS, peak RSS) in MB."""
    import contextlib
    import ctypes
    import resource

    import psutil

    rss = psutil.Process().memory_info().rss / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    # glibc keeps freed activation buffers in its heap; trimming shows live memory
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    trimmed = psutil.Process().memory_info().rss / 2**20
    return rss, trimmed, peak


def child(kind: str, n: int, model_dir: str, prompts: int, group: int) -> dict:
    """Runs in a fresh process: import, (build the world, one step), measure."""
    C.set_threads()
    import peft  # noqa: F401  (the same libraries in every child, baseline included)
    import transformers  # noqa: F401

    from copd.spec import apply_overrides, presets
    from copd.train.algorithms.copd import phase1_step
    from copd.train.world import World

    if kind != "imports":
        cfg = apply_overrides(
            presets.get("copd-3"),
            [
                f"model.path={model_dir}",
                f"model.branch_kind={kind}",
                f"threads={C.THREADS}",
                f"grpo.prompts_per_step={prompts}",
                f"grpo.group_size={group}",
            ],
        ).validate()
        world = World.build(cfg, names=list(NAMES[:n]))
        phase1_step(world)
        gc.collect()
    rss, live, peak = _rss_mb()
    return {"kind": kind, "branches": n, "rss_mb": rss, "live_mb": live, "peak_mb": peak}


def measure(kind: str, n: int, model_dir: str, prompts: int, group: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--model-dir", model_dir]
    cmd += ["--prompts", str(prompts), "--group", str(group)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {kind} x{n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512x8", help="HIDDENxLAYERS of the random-init model")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--child", choices=("imports", "full", "lora"))
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--model-dir")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.n, a.model_dir, a.prompts, a.group)))
        return {}

    from copd.builders.tiny import build_tiny_model

    hidden, layers = (int(x) for x in a.size.split("x"))
    print(f"P3  resident memory: 3 branches vs 1 ({layers}x{hidden} model, fresh processes)")
    print(C.machine_line())
    with tempfile.TemporaryDirectory(prefix="copd-p3-") as tmp:
        model_dir = str(
            build_tiny_model(Path(tmp) / "m", hidden=hidden, layers=layers, heads=hidden // 64)
        )
        weights_mb = sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors")) / 2**20
        base = measure("imports", 0, model_dir, a.prompts, a.group)
        print(f"  weights on disk {weights_mb:.0f} MB; imports only: RSS {base['rss_mb']:.0f} MB")
        rows, out = [], {}
        for kind in ("lora", "full"):
            for n in (1, 3):
                r = measure(kind, n, model_dir, a.prompts, a.group)
                r["model_mb"] = r["rss_mb"] - base["rss_mb"]
                r["model_live_mb"] = r["live_mb"] - base["live_mb"]
                rows.append(r)
                print(
                    f"  {kind:>4} x{n}: RSS {r['rss_mb']:6.0f} MB, live {r['live_mb']:6.0f},"
                    f" peak {r['peak_mb']:6.0f} | model-attributable RSS {r['model_mb']:6.0f} MB,"
                    f" live {r['model_live_mb']:6.0f} MB"
                )
            one, three = rows[-2], rows[-1]
            ratio = three["model_mb"] / one["model_mb"]
            live = three["model_live_mb"] / one["model_live_mb"]
            raw = three["rss_mb"] / one["rss_mb"]
            out[kind] = {"ratio": ratio, "live_ratio": live, "raw_ratio": raw}
            tgt = f"(target <= {TARGET})  {C.verdict(ratio, TARGET)}" if kind == "lora" else ""
            print(f"  {kind}: 3 branches / 1 = {ratio:.2f}x model-attributable RSS "
                  f"({live:.2f}x live), {raw:.2f}x raw RSS {tgt}")  # fmt: skip
    print(f"  {C.load_line()}")
    result = {
        "bench": "p3",
        "machine": C.machine(),
        "model": f"{layers}x{hidden}",
        "weights_mb": weights_mb,
        "imports_rss_mb": base["rss_mb"],
        "rows": rows,
        "lora_ratio": out["lora"]["ratio"],
        "full_ratio": out["full"]["ratio"],
        "lora_raw_ratio": out["lora"]["raw_ratio"],
        "lora_live_ratio": out["lora"]["live_ratio"],
        "full_live_ratio": out["full"]["live_ratio"],
        "full_raw_ratio": out["full"]["raw_ratio"],
        "target": TARGET,
        "pass": out["lora"]["ratio"] <= TARGET,
    }
    C.write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
