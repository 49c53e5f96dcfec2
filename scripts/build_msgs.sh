#!/usr/bin/env bash
# Build the gs_semantic_msgs interface package from the ROS 2 Kilted PyPI wheels straight
# into the venv, so nothing needs sourcing (see ../shared/ROS2_WHEELS.md for why each step).
set -euo pipefail
VENV=${1:?usage: build_msgs.sh VENV_DIR}
VENV=$(cd "$VENV" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$VENV/bin/python"
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
# The wheels' CMake exports hard-code the manylinux build interpreter's include dirs.
{ grep -rl "/opt/python/cp311-cp311" "$VENV"/share/*/cmake/ 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" "$f"
done
BUILD="$ROOT/ros2_ws/build/gs_semantic_msgs"
mkdir -p "$BUILD"
export AMENT_PREFIX_PATH="$VENV"
export PATH="$VENV/bin:$PATH"
cmake -S "$ROOT/ros2_ws/src/gs_semantic_msgs" -B "$BUILD" -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" \
  -DCMAKE_BUILD_TYPE=Release >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" >"$BUILD/build.log" 2>&1 || { tail -50 "$BUILD/build.log"; exit 1; }
cmake --install "$BUILD" >"$BUILD/install.log" 2>&1 || { tail -50 "$BUILD/install.log"; exit 1; }
"$PY" -c "from gs_semantic_msgs.srv import QueryObjects; from gs_semantic_msgs.msg import ObjectArray; print('gs_semantic_msgs built into', '$VENV')"
