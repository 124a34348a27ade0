#!/usr/bin/env bash
# The test command: sets up if needed, lints (ruff check, ruff.toml), starts Kafka and Flink, runs every
# test (unit and integration), then stops the services it started. Extra arguments go to pytest (e.g. -k smoke).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$PROJECT_DIR"

bash scripts/setup.sh

# A lint error fails the run in a second, before the services start and the slow tests run.
.venv/bin/ruff check . || die "ruff check found the lint errors above (ruff.toml)"

trap stop_started_services EXIT
start_stack

.venv/bin/pytest "$@"
