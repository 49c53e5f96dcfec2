"""Real-data builders shared by the tests: TUM RGB-D frames from ../shared/data, and a robot-style bag of them."""

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gs_semantic_node.config import NodeConfig
from gs_semantic_node.io.assembler import PoseBuffer
from gs_semantic_node.io.bags import BagWriter
from gs_semantic_node.types import Camera

TUM = Path(__file__).resolve().parents[2] / "shared" / "data" / "tum_fr1_xyz"
needs_tum = pytest.mark.skipif(not (TUM / "rgb.txt").is_file(), reason=f"real data not at {TUM}")
REALSENSE = NodeConfig(
    rgb_topic="/camera/camera/color/image_raw",
    depth_topic="/camera/camera/aligned_depth_to_color/image_raw",
    camera_info_topic="/camera/camera/color/camera_info",
    pose_topic="/odom",
)


@functools.cache
def _tum_poses() -> PoseBuffer:
    from gs_semantic_node.io.datasets import _quat_pose

    gt = np.loadtxt(TUM / "groundtruth.txt")
    pb = PoseBuffer(0.1, size=len(gt) + 1)
    for row in gt:
        pb.add(row[0], _quat_pose(row[1:]))
    return pb


def tum_pose(t: float) -> np.ndarray:
    """TUM's ground-truth camera pose interpolated at t."""
    return _tum_poses().at(t, 0.02)


def tum_truth(n: int, pose_offset: float = 0.0) -> list[dict]:
    """The first n TUM frames as the importer should give them: colour, depth (m), pose at the colour
    stamp (+ pose_offset)."""
    from gs_semantic_node.io.datasets import _read_list

    rgb, depth = _read_list(TUM / "rgb.txt"), _read_list(TUM / "depth.txt")
    out = []
    for (t, name), (td, dname) in list(zip(rgb, depth))[:n]:
        out.append(
            {
                "t": t,
                "td": td,
                "rgb": np.asarray(Image.open(TUM / name).convert("RGB")),
                "depth": np.asarray(Image.open(TUM / dname)).astype(np.float32) / 5000.0,
                "T": tum_pose(t + pose_offset),
            }
        )
    return out


def write_robot_bag(path: Path, truth: list[dict], storage: str, compressed: bool, rng) -> None:
    """RealSense-style: compressed colour, aligned depth at its own stamp, camera_info with every 5th
    image, odometry at 3x the image rate on its own clock ticks (never at an image stamp)."""
    cam = Camera(517.3, 516.5, 318.6, 255.3, 640, 480)
    with BagWriter(path, storage=storage, topics=REALSENSE, compressed=compressed, pose_type="odometry") as w:
        pb = PoseBuffer(1.0)
        for f in truth:
            pb.add(f["t"], f["T"])
        for i, f in enumerate(truth):
            if i % 5 == 0:
                w.write_info(cam, f["t"] + 0.001)
            w.write_depth(f["depth"], f["td"])
            w.write_rgb(f["rgb"], f["t"])
            if i + 1 < len(truth):  # poses between this image and the next, a few ms off any image
                t0, t1 = f["t"], truth[i + 1]["t"]
                for s in (0.03, 0.37, 0.71):
                    tp = t0 + s * (t1 - t0) + rng.uniform(-0.004, 0.004)
                    w.write_pose(pb.at(tp, 0.0), tp)
            else:
                w.write_pose(f["T"], f["t"] + 0.004)
