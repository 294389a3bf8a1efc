# Sourced by scripts/dev and scripts/test: make .venv and install requirements when they change.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"

# ensure_venv REQUIREMENTS_FILE: create the venv if missing, reinstall only when the
# requirements changed since the last install. The file is a lock (scripts/lock): every
# package pinned with its hashes, so pip installs exactly that and refuses anything else.
ensure_venv() {
  local requirements="$1" python="${PYTHON:-python3}" stamp wanted
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: Python 3.11 or newer is needed as '$python' (set PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV" >&2
    "$python" -m venv "$VENV"
  fi
  stamp="$VENV/.requirements.sha256"
  # The locks alone decide what is installed; an edited .in file changes nothing until
  # scripts/lock has rewritten its lock, which then triggers the reinstall.
  wanted="$(cd "$REPO_ROOT" && cat "$requirements" requirements*.txt | sha256sum | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    echo "installing $requirements into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
      -r "$REPO_ROOT/$requirements"
    echo "$wanted" >"$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
