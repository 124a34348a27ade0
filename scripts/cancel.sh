#!/usr/bin/env bash
# Cancels a job without a savepoint. Usage: scripts/cancel.sh JOB_ID
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_setup
[ $# -eq 1 ] || die "usage: $0 JOB_ID (see scripts/list.sh)"
use_cluster
"$(flink_home)/bin/flink" cancel --jobmanager "$JOBMANAGER" "$1"
