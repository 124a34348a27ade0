#!/usr/bin/env bash
# The test command: sets up if needed, starts Kafka and Flink, runs every test (unit and integration),
# then stops the services it started. Extra arguments go to pytest (e.g. -k smoke).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$PROJECT_DIR"

bash scripts/setup.sh

trap stop_started_services EXIT
start_stack

.venv/bin/pytest "$@"
