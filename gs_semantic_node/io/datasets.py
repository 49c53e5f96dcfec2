"""Standard posed RGB-D datasets -> a ROS 2 bag that the node and every command read
(`gs-semantic import tum|frames SRC OUT`).

- `tum`: the TUM RGB-D layout (rgb.txt, depth.txt, groundtruth.txt; depth PNG in units of 1/5000 m).
  Colour and depth keep their own stamps (the node pairs them, as it pairs a live camera's); the
  ground-truth pose is interpolated to each colour stamp, as TUM's associate.py pairs them.
- `frames`: one colour, depth and 4x4 camera-to-world pose file per frame plus an intrinsics file:
  7-Scenes (`frame-000000.color.png`, `.depth.png`, `.pose.txt`), ScanNet exports (`color/0.jpg`,
  `depth/0.png`, `pose/0.txt`, `intrinsic/intrinsic_color.txt`) and most SLAM dumps, with the depth
  scale and invalid value as options. Poses are taken as the optical frame (x right, y down, z
  forward) in the world frame, the convention of those datasets.

Frames are written at their own resolution; depth at another resolution than colour (ScanNet) is
resampled by the node's input stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..config import NodeConfig
from ..types import Camera
from .assembler import PoseBuffer
from .bags import BagWriter

# TUM's documented colour intrinsics and plumb_bob distortion per camera (freiburg 1/2/3; freiburg3's
# images are already undistorted). The distortion goes into camera_info: the mapper rectifies.
TUM_INTRINSICS = {
    "freiburg1": ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "freiburg2": ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "freiburg3": ((535.4, 539.2, 320.1, 247.6), ()),
}


@dataclass
class ImportOptions:
    every: int = 1  # keep every n-th frame
    limit: int = 0  # at most this many frames (0: all)
    compressed: bool = False  # colour as <rgb_topic>/compressed (JPEG)
    storage: str = "mcap"  # mcap | sqlite3
    fps: float = 30.0  # frames: stamps when the dataset has none
    depth_scale: float = 1000.0  # frames: depth units per metre (1000: mm; TUM 5000)
    depth_invalid: float = 65535  # frames: depth value meaning "no depth" (besides 0)
    # tum: seconds the motion-capture poses lag the colour stamps (each image gets the pose at its
    # stamp + this): a camera stamps its frames at some instant of a rolling-shutter exposure
    pose_offset: float = 0.0


def _read_list(path: Path) -> list[tuple[float, str]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            t, name = line.split()[:2]
            out.append((float(t), name))
    return out


def _quat_pose(v) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, 3] = v[:3]
    T[:3, :3] = Rotation.from_quat(v[3:7]).as_matrix()
    return T


def _select(n: int, o: ImportOptions) -> list[int]:
    idx = list(range(0, n, max(1, o.every)))
    return idx[: o.limit] if o.limit else idx


def _writer(out: Path, o: ImportOptions, topics: NodeConfig | None) -> BagWriter:
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "bag"
    if bag.exists():
        import shutil

        shutil.rmtree(bag)
    return BagWriter(bag, storage=o.storage, topics=topics, compressed=o.compressed)


GT_WINDOW = 0.1  # s of ground truth written either side of each imported frame


def import_tum(
    src: str | Path,
    out: str | Path,
    o: ImportOptions | None = None,
    topics: NodeConfig | None = None,
    camera: str | None = None,
) -> int:
    """TUM RGB-D sequence -> OUT/bag; returns the number of frames written."""
    src, out, o = Path(src), Path(out), o or ImportOptions()
    rgb, depth = _read_list(src / "rgb.txt"), _read_list(src / "depth.txt")
    gt = np.array(
        [
            [float(x) for x in line.split()[:8]]
            for line in (src / "groundtruth.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    )
    cam_name = camera or next(
        (k for k in TUM_INTRINSICS if k in src.resolve().name or k in str(src.resolve())), "freiburg1"
    )
    (fx, fy, cx, cy), dist = TUM_INTRINSICS[cam_name]
    poses = PoseBuffer(max_gap=0.1, size=len(gt) + 1)
    for row in gt:
        poses.add(float(row[0]), _quat_pose(row[1:]))
    d_t = np.array([t for t, _ in depth])
    n, written = 0, -np.inf
    with _writer(out, o, topics) as w:
        for i in tqdm(_select(len(rgb), o), desc=f"import tum {src.name}"):
            t, name = rgb[i]
            if poses.at(t + o.pose_offset, slop=0.02) is None:
                continue  # outside the motion-capture trajectory
            j = int(np.argmin(np.abs(d_t - t)))
            # the ground truth at its own rate around the frame (stamps shifted by pose_offset), so the
            # pose of any instant near it (the colour's, the depth's) is interpolated as finely as recorded
            near = (gt[:, 0] - o.pose_offset > max(written, t - GT_WINDOW)) & (gt[:, 0] - o.pose_offset < t + GT_WINDOW)
            for row in gt[near]:
                w.write_pose(_quat_pose(row[1:]), float(row[0]) - o.pose_offset)
                written = float(row[0]) - o.pose_offset
            img = np.asarray(Image.open(src / name).convert("RGB"))
            dep = np.asarray(Image.open(src / depth[j][1])).astype(np.float32) / 5000.0
            h, wd = img.shape[:2]
            w.write_rgb(img, t)
            w.write_depth(dep, float(d_t[j]))
            w.write_info(Camera(fx, fy, cx, cy, wd, h, dist), t)
            n += 1
    return n


def _intrinsics(path: Path, width: int, height: int) -> Camera:
    """A 3x3 / 4x4 matrix file, or one line 'fx fy cx cy'."""
    v = np.array([float(x) for x in re.split(r"[\s,]+", path.read_text().strip()) if x])
    if v.size == 4:
        fx, fy, cx, cy = v
    elif v.size in (9, 16):
        K = v.reshape(3, 3) if v.size == 9 else v.reshape(4, 4)[:3, :3]
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    else:
        raise ValueError(f"{path}: expected 'fx fy cx cy' or a 3x3 / 4x4 matrix, got {v.size} numbers")
    return Camera(float(fx), float(fy), float(cx), float(cy), width, height)


FRAME_LAYOUTS = {  # name: (colour glob, depth glob, pose glob, intrinsics file or None)
    "7scenes": ("frame-*.color.png", "frame-*.depth.png", "frame-*.pose.txt", None),
    "scannet": ("color/*.jpg", "depth/*.png", "pose/*.txt", "intrinsic/intrinsic_color.txt"),
}


def _frame_number(p: Path) -> int:
    m = re.findall(r"\d+", p.name)
    if not m:
        raise ValueError(f"{p}: no frame number in the file name")
    return int(m[0])


def import_frames(
    src: str | Path,
    out: str | Path,
    o: ImportOptions | None = None,
    color: str = "",
    depth: str = "",
    pose: str = "",
    intrinsics: str = "",
    topics: NodeConfig | None = None,
) -> int:
    """Per-frame files -> OUT/bag (layout auto-detected as 7-Scenes or ScanNet unless globs are given)."""
    src, out, o = Path(src), Path(out), o or ImportOptions()
    if not (color and depth and pose):
        for name, (c, d, p, k) in FRAME_LAYOUTS.items():
            if list(src.glob(c)):
                color, depth, pose = color or c, depth or d, pose or p
                intrinsics = intrinsics or (str(src / k) if k else "")
                break
        else:
            raise ValueError(
                f"{src}: no known frame layout ({', '.join(FRAME_LAYOUTS)}); give --color/--depth/--pose globs"
            )
    files = {k: {_frame_number(p): p for p in src.glob(g)} for k, g in (("c", color), ("d", depth), ("p", pose))}
    ids = sorted(set(files["c"]) & set(files["d"]) & set(files["p"]))
    if not ids:
        raise ValueError(f"{src}: no frame has colour ({color}), depth ({depth}) and pose ({pose}) files")
    first = np.asarray(Image.open(files["c"][ids[0]]))
    h, wd = first.shape[:2]
    if intrinsics:
        cam = _intrinsics(Path(intrinsics), wd, h)
    else:  # 7-Scenes publishes no file; its Kinect's nominal intrinsics
        cam = Camera(585.0, 585.0, 320.0, 240.0, wd, h)
    n = 0
    with _writer(out, o, topics) as w:
        for k in tqdm(_select(len(ids), o), desc=f"import frames {src.name}"):
            i = ids[k]
            T = np.loadtxt(files["p"][i]).reshape(4, 4)
            if not np.all(np.isfinite(T)):
                continue  # ScanNet marks untracked frames with inf poses
            t = 1000.0 + i / o.fps
            img = np.asarray(Image.open(files["c"][i]).convert("RGB"))
            raw = np.asarray(Image.open(files["d"][i])).astype(np.float32)
            dep = np.where((raw == o.depth_invalid) | (raw <= 0), 0.0, raw / o.depth_scale).astype(np.float32)
            w.write_rgb(img, t)
            w.write_depth(dep, t)
            w.write_info(cam, t)
            w.write_pose(T, t)
            n += 1
    return n
