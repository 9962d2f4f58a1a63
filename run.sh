#!/usr/bin/env bash
# Set up .venv if needed and start the dashboard (with the built-in demo) on 127.0.0.1.
#   ./run.sh [--port 8501] [--db sqlite:///path.db]
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
exec .venv/bin/copd dashboard "$@"
