#!/usr/bin/env bash
# Triggers a savepoint of a running job and prints its path on the last line.
# Usage: scripts/savepoint.sh JOB_ID [TARGET_DIR]    (default: state.savepoints.dir of conf/flink)
#        scripts/savepoint.sh --stop JOB_ID [TARGET_DIR]   stop-with-savepoint (for upgrades)
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_setup
action=(savepoint)
if [ "${1:-}" = "--stop" ]; then action=(stop); shift; fi
[ $# -ge 1 ] || die "usage: $0 [--stop] JOB_ID [TARGET_DIR]"
JOBMANAGER="${JOBMANAGER:-localhost:8081}"
[ -d "$RUN_ROOT/flink/conf" ] && export FLINK_CONF_DIR="$RUN_ROOT/flink/conf"
job_id="$1"; target=("${@:2}")
if [ "${action[0]}" = stop ]; then
  args=(stop --jobmanager "$JOBMANAGER" ${target:+--savepointPath "${target[0]}"} "$job_id")
else
  args=(savepoint --jobmanager "$JOBMANAGER" "$job_id" "${target[@]}")
fi
out=$("$(flink_home)/bin/flink" "${args[@]}" 2>&1) || { echo "$out" >&2; die "savepoint of $job_id failed"; }
path=$(echo "$out" | grep -o 'file:[^ ]*' | tail -n 1)
[ -n "$path" ] || { echo "$out" >&2; die "flink printed no savepoint path"; }
echo "$path"
