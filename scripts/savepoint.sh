#!/usr/bin/env bash
# Triggers a savepoint of a running job and prints its path on the last line.
# Usage: scripts/savepoint.sh JOB_ID [TARGET_DIR]    (default: state.savepoints.dir of conf/flink)
#        scripts/savepoint.sh --stop JOB_ID [TARGET_DIR]   stop-with-savepoint
#        scripts/savepoint.sh --drain JOB_ID [TARGET_DIR]  stop-with-savepoint after firing every open window
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_setup
action=savepoint
case "${1:-}" in
  --stop) action=stop; shift ;;
  --drain) action=drain; shift ;;
esac
[ $# -ge 1 ] || die "usage: $0 [--stop|--drain] JOB_ID [TARGET_DIR]"
use_cluster
job_id="$1"; target=("${@:2}")
if [ "$action" != savepoint ]; then
  args=(stop --jobmanager "$JOBMANAGER" ${target:+--savepointPath "${target[0]}"})
  [ "$action" = drain ] && args+=(--drain)
  args+=("$job_id")
else
  args=(savepoint --jobmanager "$JOBMANAGER" "$job_id" "${target[@]}")
fi
out=$("$(flink_home)/bin/flink" "${args[@]}" 2>&1) || { echo "$out" >&2; die "savepoint of $job_id failed"; }
path=$(echo "$out" | grep -o 'file:[^ ]*' | tail -n 1)
[ -n "$path" ] || { echo "$out" >&2; die "flink printed no savepoint path"; }
echo "$path"
