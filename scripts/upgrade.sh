#!/usr/bin/env bash
# Upgrades a running learner job without a gap: stop it with a savepoint, then submit the new code or
# config from that savepoint. Usage: scripts/upgrade.sh JOB_ID JOB.py --config NEW.yaml [job arguments...]
#   e.g. scripts/upgrade.sh 3f2c... jobs/learner_job.py --config conf/job.yaml
# Prints the new JobID on the last line. See README "Upgrading a running job".
#  - The same SQL (its fingerprint, jobs/upgrade.py): the job stops without draining and every operator's
#    state restores, the open windows' events with it.
#  - Changed SQL: the SQL operators start afresh (--allowNonRestoredState; the learner's state restores).
#    The open windows are not fired early: the new job's source re-reads from the first event of the
#    oldest open window, and of what the old job had read takes again only those windows' valid events
#    (NEW.resume.yaml, written next to NEW.yaml, holds the offsets).
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_setup
[ $# -ge 2 ] || die "usage: $0 JOB_ID JOB.py --config NEW.yaml [job arguments...]"
job_id="$1" job="$2"; shift 2
config=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = --config ] && config="${args[$((i + 1))]:-}"
done
[ -n "$config" ] || die "name the new version's config with --config (it tells whether the SQL changed)"
export JOBMANAGER="${JOBMANAGER:-localhost:8081}"
upgrade() { (cd "$PROJECT_DIR" && PYTHONPATH="$PROJECT_DIR" "$VENV_PYTHON" -m jobs.upgrade "$@"); }

if upgrade same-sql "$job_id" --config "$config"; then
  savepoint=$(bash "$PROJECT_DIR/scripts/savepoint.sh" --stop "$job_id" | tail -n 1)
  echo "stopped $job_id with savepoint $savepoint (same SQL: open windows carry over)"
  bash "$PROJECT_DIR/scripts/submit.sh" --fromSavepoint "$savepoint" "$job" "$@"
else
  # Read before the stop: the watermark only grows, so windows open then include those open at the stop.
  watermark=$(upgrade watermark "$job_id")
  savepoint=$(bash "$PROJECT_DIR/scripts/savepoint.sh" --stop "$job_id" | tail -n 1)
  echo "stopped $job_id with savepoint $savepoint (changed SQL: re-reading the windows open after watermark $watermark)"
  resume=$(upgrade resume --config "$config" --watermark "$watermark")
  for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[$i]}" = --config ] && args[$((i + 1))]="$resume"
  done
  bash "$PROJECT_DIR/scripts/submit.sh" --fromSavepoint "$savepoint" --allowNonRestoredState "$job" "${args[@]}"
fi
