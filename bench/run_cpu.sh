#!/usr/bin/env bash
# CPU benchmarks (small settings). Prints tables, writes out/bench/{quality,speed}.json.
# Quality numbers use ORACLE PERCEPTION (simulator GT masks + SAM-like noise, MiniLM text proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-91} MUJOCO_GL=egl HF_HUB_OFFLINE=1
PY=.venv/bin/python
$PY -m gs_semantic_node.cli bench quality --seeds "${SEEDS:-101,102,103}" --out out/bench
$PY -m gs_semantic_node.cli bench speed --seeds 101 --out out/bench
