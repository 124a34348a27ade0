#!/usr/bin/env bash
# The benchmark command: sets up if needed, starts Kafka and Flink, runs scripts/bench.py (arguments
# are passed on, e.g. --quick), then stops the services it started.
set -euo pipefail
source "$(dirname "$0")/common.sh"
set_up_and_start_stack
"$VENV_PYTHON" scripts/bench.py "$@"
