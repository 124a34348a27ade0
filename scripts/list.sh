#!/usr/bin/env bash
# Lists the jobs of the local cluster or of JOBMANAGER=host:port: id, state, name.
set -euo pipefail
source "$(dirname "$0")/common.sh"
use_cluster
curl -sf --max-time 10 "http://$JOBMANAGER/jobs/overview" |
  "$VENV_PYTHON" -c 'import json, sys
for job in json.load(sys.stdin)["jobs"]:
    print(job["jid"], job["state"], job["name"])' ||
  die "no Flink REST API answers at $JOBMANAGER; start one with scripts/flink.sh start"
