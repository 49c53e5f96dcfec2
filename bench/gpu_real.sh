#!/usr/bin/env bash
# GPU figures of the mapper on real data (TUM fr1/xyz, 640×480 and 160×120) on the device machine.
# Carries .whl/ (gsplat, rosbags + deps, pytorch-msssim; cp312 wheels) and .devdata/tum/: the TUM fr1/xyz
# frames `bench mapping` uses (every 2nd of ../shared/data/tum_fr1_xyz, RGB as lossless WebP to fit the
# device's 64 MiB carry; `import tum` of the decoded folder writes the very bag `import tum --every 2` does).
# Prepare here: `python3 bench/tum_devdata.py`; run there as `COMMIT=<hash> bash bench/gpu_real.sh`.
# Every row writes its JSON, report and pictures; they come back as one archive ($OUT/gpu_real.tgz)
# with the log ($OUT/log.txt).
set -u
OUT=${OUT:-out/gpu}
PY=${PY:-python3}
W=/tmp/gpu_real
mkdir -p "$OUT" "$W"
if [[ -d .whl && -z ${NO_WHL:-} ]]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-91}
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c "import torch, gsplat; print('torch', torch.__version__, torch.version.cuda, 'gsplat', gsplat.__version__)"
git log -1 --format='commit %h %s' 2>/dev/null || echo "commit ${COMMIT:-unknown: the device gets no .git, so give COMMIT=<hash>}"
# TUM: decode the WebP frames back to PNG (lossless) and import as usual
rm -rf "$W/tum" && cp -r .devdata/tum "$W/tum"
$PY - "$W/tum" <<'PY'
import sys, pathlib
from PIL import Image
for f in pathlib.Path(sys.argv[1], "rgb").glob("*.webp"):
    Image.open(f).save(f.with_suffix(".png"))
    f.unlink()
PY
$PY -m gs_semantic_node.cli import tum "$W/tum" "$W/tum_xyz" 2>&1 | tail -1
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/mapping/test_gsplat_parity.py tests/mapping/test_mapper.py 2>&1 | tail -4
pack() { tar -C "$W" --exclude=tum --exclude=tum_xyz -czf "$OUT/gpu_real.tgz" .; }
B="$PY -m gs_semantic_node.cli bench"
T="--params config/kinect_v1.yaml"  # depth offset, readout, exposure, pose refinement, keyframes aligned to the render
FIX="-p mapper.lambda_dssim:=0.2 -p mapper.depth_noise_weighting:=true"
while IFS='|' read -r tag args; do
  [[ -n $tag ]] || continue
  echo "== $tag: bench mapping $args"
  timeout ${ROW_TIMEOUT:-75} $B mapping --sim-dirs "$W/tum_xyz" $T $args --out "$W/$tag" </dev/null 2>&1 | tr '\r' '\n' | grep -v -i -e warn -e '%|' | tail -6
  pack  # after every row: a call cut short still brings back what was measured
done <<ROWS
t640_it8|--width 640 --height 480 --iters 8 --heldout-fit 60
t640_it8_nodirect|--width 640 --height 480 --iters 8 -p mapper.track_direct:=false -p mapper.track_map_sigma:=0.005
t640_it8_nocarve|--width 640 --height 480 --iters 8 -p mapper.free_space_carving:=false
t640_it8_norefine|--width 640 --height 480 --iters 8 -p mapper.pose_refinement:=false
t640_it8_fix|--width 640 --height 480 --iters 8 $FIX
t640_it20|--width 640 --height 480 --iters 20 --heldout-fit 60
t640_it20_fix|--width 640 --height 480 --iters 20 $FIX
t160_it8|--width 160 --height 120 --iters 8 --heldout-fit 60
t640_it8_global|--width 640 --height 480 --iters 8 -p node.rgb_readout:=0
t640_it8_notrack|--width 640 --height 480 --iters 8 -p mapper.track:=false
t640_it8_cap1M|--width 640 --height 480 --iters 8 --max-gaussians 1000000
ROWS
echo "== lift 640x480"
timeout 90 $B lift --sim-dirs "$W/tum_xyz" --width 640 --height 480 --sizes 100000,500000 --repeats 3 --out "$W/lift" 2>&1 \
  | tr '\r' '\n' | grep -v -i -e warn -e '%|' | tail -6
pack
