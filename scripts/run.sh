#!/usr/bin/env bash
# The first command: sets up if needed, starts Kafka and Flink, runs the bookstore story end to end
# (scripts/demo.py), then stops everything it started. Extra arguments go to scripts/demo.py.
set -euo pipefail
source "$(dirname "$0")/common.sh"
set_up_and_start_stack

# The bookstore story: submits the learner job, starts two serving replicas, runs the story, stops
# the job and the replicas, prints the new book's time to the top N and writes run/demo/bookstore.png.
"$VENV_PYTHON" scripts/demo.py "$@"
