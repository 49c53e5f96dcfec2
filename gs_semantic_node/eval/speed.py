"""`gs-semantic bench speed`: the pipeline end to end on one simulator scene (frames/s, per-keyframe
mapping and lifting cost, held-out fidelity, in-process query latency, peak memory)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..config import MapperConfig
from ..offline import offline_pipeline
from .common import device_name, peak_gb, peak_reset, scene, scene_options
from .metrics import evaluate_view, heldout_summary


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from .quality import bench_config

    d = scene(int(a.seeds.split(",")[0]), a.frames, out, scene_options(a))
    cfg = bench_config(a)
    cfg.mapper.iters_per_keyframe = MapperConfig.iters_per_keyframe
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak_reset(dev)
    t0 = time.monotonic()
    p, held, _ = offline_pipeline(d, cfg, progress=False, held_out_every=5)
    wall = time.monotonic() - t0
    n_fed = a.frames - len(held)
    ev = [evaluate_view(p.mapper, f) for f in held]
    lat = []
    for i in range(200):
        t = time.perf_counter()
        p.query(["grab the mug", "pick up the bowl", "where is the laptop?"][i % 3])
        lat.append(1e3 * (time.perf_counter() - t))
    peak = peak_gb(dev)
    res = {
        "device": device_name(dev),
        "frames_per_s": n_fed / wall,
        **heldout_summary(ev),
        "lift_ms_per_keyframe": float(np.mean(p.timings["lift_ms"])),
        "map_ms_per_keyframe": float(np.mean(p.timings["map_ms"])),
        "query_ms_p50": float(np.percentile(lat, 50)),
        "query_ms_p99": float(np.percentile(lat, 99)),
        "peak_mem_gb": peak,
        "gaussians": len(p.mapper.map),
        "resolution": [p.cfg.mapper.width, p.cfg.mapper.height],
        "scene": scene_options(a),
        "noise_preset": cfg.perception.oracle_preset,
        "note": "in-process query latency (no DDS)",
    }
    (out / "speed.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0
