#!/usr/bin/env bash
# The GPU check under any Python (a machine without network is fine):
#
#   scripts/gpu_check.sh [--model DIR] [--budget SECONDS]     # runs `copd doctor --gpu`
#   PYTHON=/opt/env/bin/python scripts/gpu_check.sh --model /models/Qwen2.5-0.5B-Instruct
#   scripts/gpu_check.sh --fetch-wheels      # on a machine WITH network: fill wheels/
#
# The checked Python must already have torch (with CUDA), transformers and peft. The small
# pure-Python packages copd needs besides (tokenizers/safetensors come with transformers)
# are installed, when missing, from the wheels/ folder beside this repository with
# `pip install --no-index --find-links wheels`; nothing is downloaded. `--fetch-wheels`
# fills wheels/ (pip download; pyyaml/psutil for CPython 3.10-3.13 on x86_64 Linux) on a machine with network; copy
# the folder along with the code. copd itself runs from this checkout (PYTHONPATH), so
# it needs no install. Output: the environment, each part's progress, the measured
# figures, then the pass/fail table last. Exit code 0 when every part passed or was
# skipped (and on a machine without a GPU, where nothing is run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-$PWD/wheels}"
# Pure-Python packages the engine path imports (module name:distribution).
NEEDED="yaml:pyyaml tqdm:tqdm psutil:psutil pytest:pytest"

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p "$WHEELS"
  # Pure-Python wheels (any Python 3): tqdm, pytest and pytest's own dependencies.
  "$PYTHON" -m pip download --only-binary=:all: --no-deps --dest "$WHEELS" \
    tqdm pytest pluggy iniconfig packaging pygments
  # pyyaml and psutil have platform wheels: fetch the manylinux x86_64 builds for 3.10-3.13.
  for v in 310 311 312 313; do
    "$PYTHON" -m pip download --only-binary=:all: --no-deps --dest "$WHEELS" \
      --platform manylinux2014_x86_64 --python-version "$v" psutil pyyaml || true
  done
  # Optional: reasoning-gym (rg:<dataset> tasks) and its dependencies, built as wheels for
  # THIS Python (some are platform wheels: run this with the GPU box's Python version).
  "$PYTHON" -m pip wheel --wheel-dir "$WHEELS" "reasoning-gym" \
    || echo "[gpu_check] reasoning-gym wheels not fetched (optional)"
  echo "[gpu_check] wheels in $WHEELS: copy this folder with the code"
  exit 0
fi

missing=""
for pair in $NEEDED; do
  mod="${pair%%:*}"; dist="${pair#*:}"
  "$PYTHON" -c "import $mod" 2>/dev/null || missing="$missing $dist"
done
if [ -n "$missing" ]; then
  if [ -d "$WHEELS" ]; then
    echo "[gpu_check] installing from $WHEELS:$missing"
    "$PYTHON" -m pip install --no-index --find-links "$WHEELS" $missing \
      || echo "[gpu_check] could not install$missing; parts that need them will say so"
  else
    echo "[gpu_check] missing:$missing and no $WHEELS folder (see --fetch-wheels)"
  fi
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Seconds for the whole check: the parts stop starting after the budget; this is a
# hard stop a little later.
exec timeout --signal=TERM 560 "$PYTHON" -m copd.tools.doctor --gpu "$@"
