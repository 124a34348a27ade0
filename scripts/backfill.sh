#!/usr/bin/env bash
# Train from history, then stream: the learner job over Parquet history files, a savepoint once it has
# read them all, and the streaming job started from it (scripts/backfill.py; README: Lifecycle).
# Usage: scripts/backfill.sh --config conf/job.yaml --from PATH [--savepoint-dir DIR] [--no-stream]
# Prints the streaming job's JobID on the last line (with --no-stream, the savepoint's path).
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_setup
cd "$PROJECT_DIR"
PYTHONPATH="$PROJECT_DIR${PYTHONPATH:+:$PYTHONPATH}" exec "$VENV_PYTHON" -m scripts.backfill "$@"
