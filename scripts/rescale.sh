#!/usr/bin/env bash
# Rescales a running job: stops it with a savepoint (without draining, so open windows and every
# per-key model carry over) and submits the same job from it at the new parallelism.
# Usage: scripts/rescale.sh JOB_ID PARALLELISM JOB.py [job arguments...]
#   e.g. scripts/rescale.sh 3f2c... 2 jobs/learner_job.py --config conf/job.yaml
# The new parallelism may be at most the job's max parallelism (pipeline.max-parallelism, fixed for
# the life of its state); the learner spreads its `learner.shards` over the subtasks.
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 3 ] || die "usage: $0 JOB_ID PARALLELISM JOB.py [job arguments...]"
job_id="$1" parallelism="$2"; shift 2
[[ "$parallelism" =~ ^[1-9][0-9]*$ ]] || die "PARALLELISM must be a number >= 1, got '$parallelism'"
savepoint=$(bash "$PROJECT_DIR/scripts/savepoint.sh" --stop "$job_id" | tail -n 1)
echo "stopped $job_id with savepoint $savepoint"
bash "$PROJECT_DIR/scripts/submit.sh" --fromSavepoint "$savepoint" "$@" --parallelism "$parallelism"
