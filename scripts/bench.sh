#!/usr/bin/env bash
# The benchmark command: sets up if needed, starts Kafka and Flink, runs scripts/bench.py (arguments
# are passed on, e.g. --quick), then stops the services it started.
set -euo pipefail
source "$(dirname "$0")/common.sh"
set_up_and_start_stack
# This tree's modules first: the venv's editable install may name another checkout (a git worktree's,
# say), whose code the benchmark would otherwise submit and measure.
PYTHONPATH="$PROJECT_DIR${PYTHONPATH:+:$PYTHONPATH}" "$VENV_PYTHON" -m scripts.bench "$@"
