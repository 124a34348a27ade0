# Shared by the scripts in this folder: project paths and small process helpers.
# Sourced, not run.

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_PYTHON="$PROJECT_DIR/.venv/bin/python"
RUN_ROOT="$PROJECT_DIR/run"

die() { echo "error: $*" >&2; exit 1; }

# The Python versions this package supports (setup.py python_requires says the same), in the order
# setup prefers them: 3.11, the one CI runs every test on (integration included), then 3.12, on which CI
# runs the unit tests.
SUPPORTED_PYTHONS="3.11 3.12"

# The path of an interpreter of Python $1 (e.g. 3.12): python3.12 on PATH, else pyenv's newest 3.12.x.
# Fails, printing nothing, when none runs (a pyenv shim for a version not selected does not).
find_python() {
  local candidate
  for candidate in "python$1" $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/"python$1" 2>/dev/null | sort -rV); do
    "$candidate" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$1'; print(sys.executable)" 2>/dev/null &&
      return 0
  done
  return 1
}

# A virtualenv at $1, made with the interpreter $2, holding this package (editable) with the extras $3,
# e.g. '[job,dev]'. Installed again only when setup.py or the extras change ($1/.installed), so a
# second call takes a second.
VENV_FREE_MB=1500
ensure_venv() {
  local dir="$1" python="$2" extras="$3" stamp free_mb
  if [ ! -x "$dir/bin/python" ]; then
    echo "setup: creating $dir with $("$python" -V 2>&1)"
    "$python" -m venv "$dir"
  fi
  stamp=$( (cat "$PROJECT_DIR/setup.py"; echo "$extras") | sha256sum | cut -c1-16)
  if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$stamp" ]; then
    echo "setup: installing the package$extras and its pinned dependencies from PyPI into $dir"
    # pip's own error on a full disk names no size; a venv with the job's extras takes about 1.2 GB.
    free_mb=$(df -Pm "$dir" | awk 'NR == 2 {print $4}')
    [ "$free_mb" -ge "$VENV_FREE_MB" ] ||
      die "$dir needs about $VENV_FREE_MB MB free to install into; $(df -Pm "$dir" | awk 'NR == 2 {print $6}') has $free_mb MB"
    "$dir/bin/pip" install --quiet --upgrade pip
    # compat mode puts the project folder on sys.path, so packages added later import without a reinstall.
    "$dir/bin/pip" install --quiet -e "$PROJECT_DIR$extras" --config-settings editable_mode=compat
    echo "$stamp" >"$dir/.installed"
  fi
}

require_setup() {
  [ -x "$VENV_PYTHON" ] || die "no virtualenv at $PROJECT_DIR/.venv; run: bash scripts/setup.sh"
}

# The cluster the Flink CLI talks to: JOBMANAGER=host:port, else the local one, with the local stack's
# rendered configuration when there is one (it names the venv's Python); a remote cluster brings its own.
use_cluster() {
  JOBMANAGER="${JOBMANAGER:-localhost:8081}"
  if [ -d "$RUN_ROOT/flink/conf" ]; then export FLINK_CONF_DIR="$RUN_ROOT/flink/conf"; fi
}

flink_home() {
  "$VENV_PYTHON" -c 'import os, pyflink; print(os.path.dirname(os.path.abspath(pyflink.__file__)))'
}

# The job's Python packages as one zip at $1, for -pyfs: a remote cluster runs exactly this working tree.
job_code_zip() {
  mkdir -p "$(dirname "$1")" && rm -f "$1"
  (cd "$PROJECT_DIR" && "$VENV_PYTHON" -m zipfile -c "$1" jobs udfs serving)
}

# Replace ${NAME} in a template with the values of the shell variables named in $2 (space-separated).
render_template() {
  local src="$1" names="$2" dst="$3" vars=""
  for name in $names; do vars="$vars \${$name}"; done
  # shellcheck disable=SC2086
  envsubst "$vars" <"$src" >"$dst"
}

# A killed process stays a zombie until its parent reaps it; it counts as gone.
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# All descendants of a PID, deepest last.
descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

# Send TERM to PIDs, wait up to $1 seconds, then KILL what is left.
terminate_pids() {
  local grace="$1"; shift
  local pid deadline=$((SECONDS + grace))
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for pid in "$@"; do
    while pid_alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
  done
  for pid in "$@"; do
    while pid_alive "$pid"; do sleep 0.1; done
  done
}

# A daemon must not inherit its starter's file descriptors beyond stdio: a lock the caller holds
# (flock around a test run) would stay held for the daemon's life. kafka.sh and flink.sh call this
# first; 255 is the descriptor bash reads the script from.
close_inherited_fds() {
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

# Starts Kafka and Flink through their scripts; the ones that were not running before are stopped by
# stop_started_services (call it from an EXIT trap). `start` also repairs a dead TaskManager.
STARTED_SERVICES=()
start_stack() {
  local service
  for service in kafka.sh flink.sh; do
    bash "$PROJECT_DIR/scripts/$service" status >/dev/null 2>&1 || STARTED_SERVICES+=("$service")
    bash "$PROJECT_DIR/scripts/$service" start
  done
}

# The preamble of the commands that need the whole local stack (run.sh, bench.sh): set the machine up
# if needed, then start Kafka and Flink; what this started stops when the calling script exits.
set_up_and_start_stack() {
  cd "$PROJECT_DIR"
  bash scripts/setup.sh
  trap stop_started_services EXIT
  start_stack
}

stop_started_services() {
  local i
  for ((i = ${#STARTED_SERVICES[@]} - 1; i >= 0; i--)); do
    bash "$PROJECT_DIR/scripts/${STARTED_SERVICES[i]}" stop || true
  done
}
