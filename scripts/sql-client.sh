#!/usr/bin/env bash
# Flink's SQL client with the job's functions, sources and views already defined (rendered from the
# config's sql.ddl by jobs/sql_client.py), against the local cluster or JOBMANAGER=host:port.
# Usage: scripts/sql-client.sh [--config conf/job.yaml] [--with-sinks] [--no-check] [-f query.sql] [client options...]
#   e.g. scripts/sql-client.sh                        then: SELECT * FROM features;
#        scripts/sql-client.sh -f my_query.sql        runs the file, prints the rows, exits
# A statement Flink rejects is named by file and line before the client starts (skip: --no-check).
# The job's sink tables are left out unless --with-sinks. Queries read with the consumer group
# <source.group_id>-sql-client and no checkpoints, so they never move the job's committed offsets.
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_setup

config="$PROJECT_DIR/conf/job.yaml"
init_args=()
client_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) [ $# -ge 2 ] || die "--config needs a file"; config="$2"; shift 2 ;;
    --with-sinks | --no-check) init_args+=("$1"); shift ;;
    *) client_args+=("$1"); shift ;;
  esac
done

gateway_jar=$(find "$(flink_home)/opt" -name 'flink-sql-gateway-*.jar' | head -n 1)
[ -n "$gateway_jar" ] ||
  die "the SQL gateway jar is not in $(flink_home)/opt (the SQL client needs it); run: bash scripts/setup.sh"

use_cluster

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PYTHONPATH="$PROJECT_DIR${PYTHONPATH:+:$PYTHONPATH}" "$VENV_PYTHON" -m jobs.sql_client \
  --config "$config" "${init_args[@]}" --output "$work/init.sql" || exit $?
# Python SQL functions (LANGUAGE PYTHON in sql/) run from this working tree, as with scripts/submit.sh.
job_code_zip "$work/realtime_learning.zip"

# Not exec: the trap removes the rendered init script when the client ends.
"$(flink_home)/bin/sql-client.sh" embedded \
  -D execution.target=remote -D rest.address="${JOBMANAGER%:*}" -D rest.port="${JOBMANAGER##*:}" \
  -pyexec "$VENV_PYTHON" -pyclientexec "$VENV_PYTHON" -pyfs "$work/realtime_learning.zip" \
  -i "$work/init.sql" "${client_args[@]}"
