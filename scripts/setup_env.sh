#!/usr/bin/env bash
# Idempotent set-up: system packages + venv + exact pins + our package (editable) + the interface package.
# Each step re-runs only when its inputs changed (stamp files hold their hashes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
cd "$ROOT"
command -v "$PYTHON" >/dev/null || PYTHON=python3
PYTHON="$PYTHON" scripts/system_deps.sh || exit 1      # system libraries first (apt-get as root)
[ -x "$VENV/bin/python" ] || { echo "[setup] creating venv $VENV"; "$PYTHON" -m venv "$VENV"; }
stamp() { cat "$@" | sha256sum | cut -c1-16; }
deps=$(stamp requirements.lock pyproject.toml)
if [ "$(cat "$VENV/.deps_stamp" 2>/dev/null)" != "$deps" ]; then
  echo "[setup] installing pinned dependencies (first run: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.lock
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  rm -f "$VENV/.msgs_stamp"
  echo "$deps" > "$VENV/.deps_stamp"
fi
msgs=$(stamp msg/* ros2_ws/src/gs_semantic_msgs/CMakeLists.txt ros2_ws/src/gs_semantic_msgs/package.xml scripts/build_msgs.sh)
if [ "$(cat "$VENV/.msgs_stamp" 2>/dev/null)" != "$msgs" ]; then
  echo "[setup] building the gs_semantic_msgs interface package into the venv"
  scripts/build_msgs.sh "$VENV"
  echo "$msgs" > "$VENV/.msgs_stamp"
fi
