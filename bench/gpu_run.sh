#!/usr/bin/env bash
# GPU figures on the device machine (H100): `bash bench/gpu_run.sh core|perception|all`.
# Expects wheels in .whl/ (gsplat, segment-anything, open_clip, rosbags + deps, built for cp312) and
# pre-rendered simulator scenes as .devdata/sim_*.tar.gz (the GPU image has no MuJoCo/EGL set up):
# `gs-semantic sim --seed S --frames 90 --out /tmp/x/sim_S_90`, then
# `tar -C /tmp/x -czf .devdata/sim_S_90.tar.gz sim_S_90/bag sim_S_90/gt.json` (gt.npz, 6 MB each, left out:
# the surface-distance columns are then skipped). 3 scenes ~44 MB + .whl/ ~15 MB, under the device's 64 MiB
# carry. Mapping rows use all frames, or every 3rd (the 30-frame orbit's 12-degree spacing).
# Writes JSON + logs under $OUT (or out/gpu).
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT" /tmp/data
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=91
for f in .devdata/sim_*.tar.gz; do tar -C /tmp/data -xzf "$f"; done
scenes=$(ls -d /tmp/data/sim_* | paste -sd,)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"
B="python3 -m gs_semantic_node.cli bench"
what=${1:-all}
if [[ $what == core || $what == all ]]; then
  timeout 300 python3 -m pytest -q -s -p no:cacheprovider tests/mapping/test_gsplat_parity.py 2>&1 | tee "$OUT/parity.txt"
  while IFS='|' read -r tag args; do
    timeout 150 $B mapping --sim-dirs "$scenes" --width 640 --height 480 $args --out "$OUT/map640_$tag" </dev/null 2>&1 | grep -v Warn
  done <<'ROWS'
it8_step1|--iters 8 --frame-step 1
it8_step3|--iters 8 --frame-step 3
it20_step1|--iters 20 --frame-step 1
it8_step1_prune|--iters 8 --frame-step 1 --split-large 0
it8_step1_cap1M|--iters 8 --frame-step 1 --max-gaussians 1000000
it8_step1_cap100k_merge|--iters 8 --frame-step 1 --max-gaussians 100000 --cap-policy merge
it8_step1_cap100k_evict|--iters 8 --frame-step 1 --max-gaussians 100000 --cap-policy evict
ROWS
  timeout 90 $B lift --sim-dirs "$scenes" --width 640 --height 480 --sizes 100000,500000,1000000 --repeats 5 \
    --out "$OUT/lift" 2>&1 | grep -v Warn
fi
if [[ $what == perception || $what == all ]]; then
  [[ -n ${SKIP_LATENCY:-} ]] || timeout 120 $B latency --sizes 1000000 --objects 50 --clip-model ViT-B-16 --out "$OUT/latency" 2>&1 | grep -v Warn
  timeout 330 $B perception --sim-dirs "$scenes" --sam-models vit_b,vit_h --clip-model ViT-B-16 --repeats 3 \
    ${STOCK_KEEP_ALL:+--stock-keep-all} --out "$OUT/perception" 2>&1 | grep -v Warn
fi
