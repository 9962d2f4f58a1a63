"""What each engine speed-up buys: a GRPO step and a phase-II step with each one off.

    .venv/bin/python bench/ablate_engine.py [--rounds 10] [--model demo|HIDDENxLAYERS]

The speed-ups are module switches in the engine (each defaults to on):
- `copd.policy.sampler.SHARE_PROMPT_PREFIX`: a GRPO group's prompt runs once and its KV cache is
  repeated G times, in sampling and in every log-prob pass (training, teacher, diagnostics).
- `copd.policy.sampler.PRUNE_FINISHED_ROWS`: rows that reached eos leave the decode batch and the
  KV cache (the token draws are unchanged).
- `copd.policy.rollout.SPLIT_BY_LENGTH`: log-prob passes stop feeding rows that have ended.
- eager attention (`model.attn_implementation="auto"` on the CPU) instead of SDPA.
- the fused AdamW kernel instead of the per-parameter loop.
- `copd.policy.sampler.DENSE_DECODE_MASK`: decode steps pass a ready additive mask.
- `copd.policy.sampler.INFERENCE_MODE_DECODE`: sampling under inference_mode instead of no_grad.
- `copd.policy.sampler.SAMPLE_BY_CDF`: tokens drawn by inverse CDF, not torch.multinomial.
- `grpo.skip_zero_advantage`: prompt groups whose rewards are all equal skip the training
  forward and backward (the update is the same).
Variants ("all on", and each switch off in turn) alternate round by round on one world (the
demo world: 2 branches, 16 x 8 native, 8 x 4 cross batches); medians of the per-branch
phase-I and phase-II step times are printed with the engine's `time/*` breakdown, wall and
process CPU time side by side (CPU time is steadier when other work shares the cores).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import _common as C  # sets the offline and thread environment before torch loads


def switches(world) -> dict[str, Callable[[bool], None]]:
    """name -> set(on): each turns one speed-up on (True) or off (False) in `world`."""
    import copd.policy.rollout as R
    import copd.policy.sampler as S
    from copd.policy.models import set_attention

    def flag(attr: str, module=S) -> Callable[[bool], None]:
        return lambda on: setattr(module, attr, on)

    def attention(on: bool) -> None:
        for view in [b.view for b in world.branches] + [world.base]:
            set_attention(view.module, "auto" if on else "sdpa", view.device)

    def skip_zero_advantage(on: bool) -> None:
        g = replace(world.cfg.grpo, skip_zero_advantage=on)
        world.reconfigure(replace(world.cfg, grpo=g))

    def fused_adamw(on: bool) -> None:
        for b in world.branches:
            for group in b.optimizer.param_groups:
                group["fused"] = True if on else None

    return {
        "shared_prompt_prefix": flag("SHARE_PROMPT_PREFIX"),
        "prune_finished_rows": flag("PRUNE_FINISHED_ROWS"),
        "split_by_length": flag("SPLIT_BY_LENGTH", R),
        "dense_decode_mask": flag("DENSE_DECODE_MASK"),
        "inference_mode_decode": flag("INFERENCE_MODE_DECODE"),
        "sample_by_cdf": flag("SAMPLE_BY_CDF"),
        "skip_zero_advantage": skip_zero_advantage,
        "eager_attention": attention,
        "fused_adamw": fused_adamw,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--model", default="demo", help="'demo' or HIDDENxLAYERS (random init)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    C.set_threads()
    import tempfile

    from copd.spec import apply_overrides, presets
    from copd.train.algorithms.copd import phase1_step, phase2_step
    from copd.train.world import World

    over = [f"threads={C.THREADS}"]
    tmp = tempfile.TemporaryDirectory(prefix="copd-ablate-")
    if a.model != "demo":
        from copd.builders.tiny import build_tiny_model

        hidden, layers = (int(x) for x in a.model.split("x"))
        path = build_tiny_model(f"{tmp.name}/m", hidden=hidden, layers=layers)
        over.append(f"model.path={path}")
    world = World.build(apply_overrides(presets.get("demo"), over).validate())
    k = len(world.branches)
    sw = switches(world)
    variants = ["all on", *[f"no {name}" for name in sw]]
    wall: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in variants}
    cpu: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in variants}
    parts: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in variants}
    print(f"ablation: engine speed-ups, {a.model} model, per branch ({k} branches)")
    print(C.machine_line())
    for r in range(a.warmup + a.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            for name, turn in sw.items():
                turn(v != f"no {name}")
            for step_name, step in (("phase1", phase1_step), ("phase2", phase2_step)):
                world.timer.pop()
                t0, c0 = time.perf_counter(), time.process_time()
                step(world)
                if r >= a.warmup:
                    wall[v][step_name].append((time.perf_counter() - t0) / k)
                    cpu[v][step_name].append((time.process_time() - c0) / k)
                    for part, secs in world.timer.pop().items():
                        parts[v][f"{step_name}/{part}"].append(secs / k)
    for turn in sw.values():
        turn(True)
    out: dict[str, dict] = {}
    for v in variants:
        row = {
            s: {"wall_ms": C.median(wall[v][s]) * 1e3, "cpu_ms": C.median(cpu[v][s]) * 1e3}
            for s in ("phase1", "phase2")
        }
        row["parts_ms"] = {p: C.median(x) * 1e3 for p, x in sorted(parts[v].items())}
        out[v] = row
        print(
            f"  {v:<26} phase I {row['phase1']['wall_ms']:7.1f} ms wall "
            f"{row['phase1']['cpu_ms']:7.1f} ms cpu | phase II {row['phase2']['wall_ms']:7.1f} ms "
            f"wall {row['phase2']['cpu_ms']:7.1f} ms cpu"
        )
        print("      " + "  ".join(f"{p} {ms:.1f}" for p, ms in row["parts_ms"].items()))
    base = out["all on"]
    for v in variants[1:]:
        g1 = out[v]["phase1"]["wall_ms"] / base["phase1"]["wall_ms"]
        g2 = out[v]["phase2"]["wall_ms"] / base["phase2"]["wall_ms"]
        print(f"  turning {v[3:]} on: phase I {g1:.2f}x faster, phase II {g2:.2f}x faster (wall)")
    print(f"  {C.load_line()}")
    tmp.cleanup()
    res = {"bench": "ablate", "machine": C.machine(), "variants": out, "load": C.load_avg()}
    C.write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
