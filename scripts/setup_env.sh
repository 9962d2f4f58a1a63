#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv; source-free, idempotent.
#   scripts/setup_env.sh [EXTRAS]      e.g. scripts/setup_env.sh dev,ray,data
# torch: where there is no CUDA GPU, the CPU wheel torch==2.13.0 is installed first (on
# this kind of machine it comes from local disk; an unpinned torch would pull a multi-GB
# CUDA build). Where a CUDA GPU is present and the venv already has torch, it is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv="${COPD_VENV:-.venv}"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# A stamp of what was installed makes the second call fast: the hash of the project files
# and the extras installed. A call whose extras are all installed already (./run.sh after
# ./test.sh) installs nothing; one that asks for more installs the union, so alternating
# commands never undo each other.
stamp="$venv/.copd-stamp"
hash="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16)"
have_hash="" have_extras=""
if [ -f "$stamp" ]; then
  read -r have_hash have_extras <"$stamp" || true
  have_extras="${have_extras#extras=}"
fi
union="$(printf '%s\n' ${have_extras//,/ } ${extras//,/ } | sort -u | paste -sd, -)"
if [ "$have_hash" = "$hash" ] && [ "$union" = "$have_extras" ]; then
  exit 0
fi
extras="$union"

has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then has_gpu=1; fi
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  if [ "$has_gpu" = 1 ]; then
    echo "[setup] CUDA GPU found: installing a CUDA build of torch"
    "${pip[@]}" install --quiet "torch>=2.4"
  else
    echo "[setup] no CUDA GPU: installing the CPU build torch==2.13.0"
    "${pip[@]}" install --quiet "torch==2.13.0" || "${pip[@]}" install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi

spec="."
[ -n "$extras" ] && spec=".[$extras]"
echo "[setup] installing copd $spec"
"${pip[@]}" install --quiet -e "$spec"
echo "$hash extras=$extras" >"$stamp"
