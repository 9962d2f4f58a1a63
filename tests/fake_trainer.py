"""A stand-in for `python -m copd train` with the same command line, for launcher tests that
exercise process mechanics only (starts in well under a second, no torch import).

    python tests/fake_trainer.py CONFIG --out DIR --db URL --run-id N [--resume DIR]

Runs `schedule.cycles` "steps" of FAKE_STEP_S seconds (env, default 0.2) under
`storage.tracking.track_run`, so it records running / finished / cancelled like the real
trainer. SIGTERM writes a checkpoint record and ends the run as cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import RunStore  # noqa: E402
from storage.tracking import RunCancelled, track_run  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--resume", default=None)
    p.add_argument("--trust-task-code", action="store_true")
    args = p.parse_args()
    cfg = json.loads(Path(args.config).read_text())
    steps = int(cfg["schedule"]["cycles"])
    step_s = float(os.environ.get("FAKE_STEP_S", "0.2"))
    store = RunStore.from_url(args.db)
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    print(
        f"fake trainer: resume={args.resume} threads={os.environ.get('COPD_THREADS')} "
        f"trusted={args.trust_task_code}"
    )
    with track_run(store, args.run_id, float(os.environ.get("COPD_HEARTBEAT_S", "5"))) as tr:
        for step in range(1, steps + 1):
            if stop["requested"]:
                ckpt = Path(args.out) / f"ckpt-{step}"
                ckpt.mkdir(parents=True, exist_ok=True)
                store.add_checkpoint(args.run_id, step, str(ckpt))
                raise RunCancelled
            time.sleep(step_s)
            tr.progress = step / steps
            print(f"step {step}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
