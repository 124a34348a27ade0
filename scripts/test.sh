#!/usr/bin/env bash
# The test command: sets up if needed, starts Kafka and Flink, runs every test (unit and integration),
# then stops the services it started. Extra arguments go to pytest (e.g. -k smoke).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$PROJECT_DIR"

bash scripts/setup.sh

started=()
cleanup() {
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do bash "scripts/${started[i]}" stop || true; done
}
trap cleanup EXIT
for service in kafka.sh flink.sh; do
  if ! bash "scripts/$service" status >/dev/null 2>&1; then
    bash "scripts/$service" start
    started+=("$service")
  fi
done

.venv/bin/pytest "$@"
