#!/usr/bin/env bash
# Set up .venv with the dev extras and run the test suite.
#   ./test.sh [pytest args]        e.g. ./test.sh -m slow, ./test.sh tests/test_losses.py
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh dev,ray,data,rg
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME="${HF_HOME:-$PWD/.cache/hf}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two workers, one test file each at a time (--dist loadfile: a module's fixtures are built
# once): much of the suite waits on trainer processes, servers and a browser, so two files
# at once use both cores. COPD_TEST_WORKERS=0 runs in this process (e.g. to debug).
set +e
.venv/bin/python -m pytest -n "${COPD_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
set -e
# pytest exit 5 means "no tests collected": never green.
if [ "$rc" = 5 ]; then echo "[test] no tests were collected: failing" >&2; exit 1; fi
exit "$rc"
