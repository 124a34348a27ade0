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

"$VENV_PYTHON" -m jobs.topics conf/*.yaml

job_id=$(bash scripts/submit.sh jobs/learner_job.py --config conf/job.yaml | tail -n 1)
echo "learner job $job_id is running; Flink UI: http://localhost:8081"
"$VENV_PYTHON" scripts/replay.py --config conf/job.yaml --keys 4 --rows 2000
