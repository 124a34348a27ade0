#!/usr/bin/env bash
# Upgrades a running job: stop it with a savepoint, then submit the (new) job from that savepoint.
# Usage: scripts/upgrade.sh JOB_ID JOB.py [job arguments...]
#   e.g. scripts/upgrade.sh 3f2c... jobs/learner_job.py --config conf/job.yaml
# Prints the new JobID on the last line. See README "Upgrading a running job" for what may change.
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || die "usage: $0 JOB_ID JOB.py [job arguments...]"
job_id="$1"; shift
# --drain closes every open window first, so no event waits in SQL state the new version may not take;
# --allowNonRestoredState lets changed SQL operators start afresh. The learner's state always restores.
savepoint=$(bash "$PROJECT_DIR/scripts/savepoint.sh" --drain "$job_id" | tail -n 1)
echo "stopped $job_id with savepoint $savepoint"
bash "$PROJECT_DIR/scripts/submit.sh" --fromSavepoint "$savepoint" --allowNonRestoredState "$@"
