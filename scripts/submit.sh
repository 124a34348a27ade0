#!/usr/bin/env bash
# Submits a Python job with `flink run`, detached, to the local cluster or to JOBMANAGER=host:port.
# Usage: scripts/submit.sh [flink run options...] JOB.py [job arguments...]
#   e.g. scripts/submit.sh jobs/learner_job.py --config conf/job.yaml
#        scripts/submit.sh -s run/flink/savepoints/savepoint-xyz jobs/learner_job.py
# Prints the JobID on the last line.
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_setup

use_cluster

flink_opts=()
while [ $# -gt 0 ] && [[ "$1" == -* ]]; do
  case "$1" in
    -n | --allowNonRestoredState) flink_opts+=("$1"); shift ;;
    *) flink_opts+=("$1" "$2"); shift 2 ;;
  esac
done
[ $# -ge 1 ] || die "usage: $0 [flink run options...] JOB.py [job arguments...]"
job="$1"; shift
[ -f "$job" ] || die "job file not found: $job"

pyfs="$RUN_ROOT/pyfs/realtime_learning.zip"
job_code_zip "$pyfs"

out=$("$(flink_home)/bin/flink" run --detached --jobmanager "$JOBMANAGER" \
  -pyexec "$VENV_PYTHON" -pyclientexec "$VENV_PYTHON" \
  -pyfs "$pyfs" \
  "${flink_opts[@]}" --python "$job" "$@" 2>&1) || { echo "$out" >&2; die "flink run failed for $job"; }
job_id=$(echo "$out" | sed -n 's/.*JobID \([0-9a-f]\{32\}\).*/\1/p' | tail -n 1)
[ -n "$job_id" ] || { echo "$out" >&2; die "flink run printed no JobID for $job"; }
echo "submitted $job as $job_id"
echo "$job_id"
