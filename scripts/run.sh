#!/usr/bin/env bash
# The first command: sets up if needed, starts Kafka and Flink, runs the main job on sample events,
# prints what it produced, then stops everything it started.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$PROJECT_DIR"

bash scripts/setup.sh
started=()
job_id=""
cleanup() {
  [ -n "$job_id" ] && curl -sf -X PATCH "http://localhost:8081/jobs/$job_id?mode=cancel" >/dev/null || true
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do bash "scripts/${started[i]}" stop || true; done
}
trap cleanup EXIT
for service in kafka.sh flink.sh; do
  if ! bash "scripts/$service" status >/dev/null 2>&1; then
    bash "scripts/$service" start
    started+=("$service")
  fi
done

job_id=$(bash scripts/submit.sh jobs/smoke_job.py --config conf/smoke.yaml | tail -n 1)
"$VENV_PYTHON" - <<'PY'
import json
from jobs.config import load_config
from tests.integration.stack import produce_json, read_topic

config = load_config("conf/smoke.yaml")
events = [{"id": i, "user": f" User-{i % 3} ", "amount": i * 1.5} for i in range(10)]
produce_json(config["topics.events.name"], events)
print(f"produced {len(events)} events to {config['topics.events.name']}")
for record in read_topic(config["topics.transformed.name"], expected=len(events), timeout_s=60)[-len(events):]:
    print("  ", json.loads(record.value))
PY
