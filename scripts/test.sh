#!/usr/bin/env bash
# The test command: sets up if needed, lints (ruff check and ruff format --check, ruff.toml), runs the unit tests on every other
# supported Python found (each in its own venv, .venv-py3XX), starts Kafka and Flink, runs every test
# (unit and integration) on .venv's Python, then stops the services it started. Extra arguments go to
# pytest (e.g. -k smoke) and skip the other Pythons. REQUIRE_ALL_PYTHONS=1 (CI) fails when one is missing.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$PROJECT_DIR"

bash scripts/setup.sh

# A lint error or an unformatted file fails the run in seconds, before the services start and the slow tests run.
.venv/bin/ruff check . || die "ruff check found the lint errors above (ruff.toml)"
.venv/bin/ruff format --check . || die "ruff format --check: the files above are not formatted; run '.venv/bin/ruff format .'"

if [ $# -eq 0 ]; then
  main_version=$("$VENV_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  for version in $SUPPORTED_PYTHONS; do
    [ "$version" != "$main_version" ] || continue
    if ! python=$(find_python "$version"); then
      [ "${REQUIRE_ALL_PYTHONS:-0}" = 1 ] && die "Python $version not found; CI runs the unit tests on each of $SUPPORTED_PYTHONS"
      echo "test: Python $version not found; its unit tests are skipped" >&2
      continue
    fi
    venv=".venv-py${version/./}"
    ensure_venv "$venv" "$python" "[job,dev]"
    echo "test: unit tests on Python $version ($venv)"
    # Every test but the integration ones (conftest.py marks them); the cluster runs .venv's Python.
    "$venv/bin/pytest" -q -p no:cacheprovider -m "not integration" ||
      die "the unit tests failed on Python $version ($venv)"
  done
fi

trap stop_started_services EXIT
start_stack

.venv/bin/pytest "$@"
