#!/usr/bin/env bash
# The first command: sets up if needed, starts Kafka and Flink, runs the main job on sample events,
# prints what it produced, then stops everything it started.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$PROJECT_DIR"

bash scripts/setup.sh
job_id=""
cleanup() {
  [ -n "$job_id" ] && bash scripts/cancel.sh "$job_id" >/dev/null 2>&1 || true
  stop_started_services
}
trap cleanup EXIT
start_stack  # also creates the topics conf/*.yaml declare

job_id=$(bash scripts/submit.sh jobs/learner_job.py --config conf/job.yaml | tail -n 1)
echo "learner job $job_id is running; Flink UI: http://localhost:8081"
"$VENV_PYTHON" scripts/replay.py --config conf/job.yaml --keys 4 --rows 2000
