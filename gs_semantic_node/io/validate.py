"""Input validation at the ROS boundary (no rclpy here: it reads message fields, so tests and
bags use it the same way). Every rejected input raises InputFault(reason); the node counts
reasons, logs one line per kind (rate-limited) and skips the input."""

from __future__ import annotations

import collections
import math
import time

import numpy as np

from ..config import NodeConfig
from ..types import Camera, Frame
from .imageconv import ImageError, decode_compressed, decode_image, depth_to_metres

COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


class InputFault(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def stamp_seconds(header) -> float:
    return float(header.stamp.sec) + float(header.stamp.nanosec) * 1e-9


def pose_matrix(position, orientation) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    q = np.array([orientation.x, orientation.y, orientation.z, orientation.w], dtype=np.float64)
    p = np.array([position.x, position.y, position.z], dtype=np.float64)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))):
        raise InputFault("pose_nonfinite", "pose has NaN/inf")
    n = float(np.linalg.norm(q))
    if abs(n - 1.0) > 0.01:
        raise InputFault("pose_quaternion", f"quaternion norm {n:.4f} is not 1")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / n).as_matrix()
    T[:3, 3] = p
    return T


def pose_from_msg(msg) -> np.ndarray:
    """Camera pose (4x4, optical frame in the map frame) from geometry_msgs/PoseStamped,
    nav_msgs/Odometry (or PoseWithCovarianceStamped) or geometry_msgs/TransformStamped."""
    if hasattr(msg, "transform"):
        return pose_matrix(msg.transform.translation, msg.transform.rotation)
    pose = msg.pose
    if hasattr(pose, "pose"):  # Odometry / PoseWithCovarianceStamped
        pose = pose.pose
    return pose_matrix(pose.position, pose.orientation)


DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")  # what mapping.rectify removes


def camera_from_info(info) -> Camera:
    try:
        k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        d = tuple(float(x) for x in np.asarray(getattr(info, "d", ()), dtype=np.float64).reshape(-1))
        model = str(getattr(info, "distortion_model", "") or "")
        cam = Camera(
            float(k[0, 0]),
            float(k[1, 1]),
            float(k[0, 2]),
            float(k[1, 2]),
            int(info.width),
            int(info.height),
            d if any(d) else (),
        )
    except (ValueError, TypeError) as e:
        raise InputFault("camera_info_invalid", str(e)) from e
    if any(d) and model not in DISTORTION_MODELS:
        raise InputFault(
            "camera_info_invalid",
            f"distortion model {model!r} is not one of {DISTORTION_MODELS}: rectify the images first (image_proc)",
        )
    if not all(np.isfinite(d)):
        raise InputFault("camera_info_invalid", "non-finite distortion coefficients")
    if not cam.is_valid():
        raise InputFault("camera_info_invalid", f"K/size not usable: fx={cam.fx} fy={cam.fy} {cam.width}x{cam.height}")
    return cam


class InputValidator:
    def __init__(self, cfg: NodeConfig):
        self.cfg = cfg
        self.counts: collections.Counter = collections.Counter()
        self.accepted = 0
        self.last_stamp: float | None = None
        self.last_pose: np.ndarray | None = None
        self.camera: Camera | None = None
        self._last_log: dict[str, float] = {}

    def should_log(self, reason: str, period: float = 10.0) -> bool:
        """First occurrence of each kind, then at most once per period."""
        now = time.monotonic()
        last = self._last_log.get(reason)
        if last is None or now - last >= period:
            self._last_log[reason] = now
            return True
        return False

    def image(self, msg, allowed: tuple) -> tuple[np.ndarray, str]:
        """(pixels, encoding) of a sensor_msgs/Image or CompressedImage."""
        if not hasattr(msg, "encoding") and hasattr(msg, "format"):
            try:
                arr, enc = decode_compressed(msg.format, msg.data)
            except ImageError as e:
                raise InputFault(e.reason, str(e)) from e
            if enc not in allowed:
                raise InputFault("encoding", f"compressed {msg.format!r} decodes to {enc}, not one of {allowed}")
            if arr.shape[0] * arr.shape[1] > self.cfg.max_image_pixels:
                raise InputFault("image_too_large", f"{arr.shape[1]}x{arr.shape[0]} exceeds node.max_image_pixels")
            return arr, enc
        enc = getattr(msg, "encoding", None)
        if enc not in allowed:
            raise InputFault("encoding", f"encoding {enc!r} not in {allowed}")
        h, w = int(msg.height), int(msg.width)
        if h * w > self.cfg.max_image_pixels:
            raise InputFault("image_too_large", f"{w}x{h} exceeds node.max_image_pixels={self.cfg.max_image_pixels}")
        try:
            return decode_image(enc, h, w, msg.step, msg.is_bigendian, msg.data), enc
        except ImageError as e:
            raise InputFault(e.reason if e.reason != "encoding" else "encoding", str(e)) from e

    def frame(
        self, rgb_msg, depth_msg, info_msg, pose, gt_msg=None, index: int = -1, pose_depth=None, pose_rows=None
    ) -> Frame:
        """Validate one synchronised set (`pose`: a pose message or a 4x4 matrix already
        interpolated to the image stamp; `pose_depth` the one at the depth's capture, when it differs;
        `pose_rows` those at the first and last colour row of a rolling shutter);
        raises InputFault, updates nothing on failure."""
        if info_msg is None:
            raise InputFault("camera_info_missing", "no CameraInfo received yet")
        cam = camera_from_info(info_msg)
        rgb, _ = self.image(rgb_msg, COLOR_ENCODINGS)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        draw, denc = self.image(depth_msg, DEPTH_ENCODINGS)
        if rgb.shape[:2] != draw.shape[:2]:
            draw = resample_depth(draw, rgb.shape[:2])
        if (cam.height, cam.width) != rgb.shape[:2]:
            raise InputFault(
                "camera_info_mismatch", f"camera_info {cam.width}x{cam.height} vs image {rgb.shape[1]}x{rgb.shape[0]}"
            )
        depth = depth_to_metres(draw, denc, self.cfg.depth_unit)
        if float((depth > 0).mean()) < 0.01:
            raise InputFault("depth_invalid", "depth is NaN/inf/zero almost everywhere")
        T = np.asarray(pose, dtype=np.float64) if isinstance(pose, np.ndarray) else pose_from_msg(pose)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InputFault("pose_nonfinite", "pose is not a finite 4x4 transform")
        stamp = stamp_seconds(rgb_msg.header)
        if not math.isfinite(stamp):
            raise InputFault("stamp_invalid", "non-finite stamp")
        if self.last_stamp is not None:
            if stamp < self.last_stamp - self.cfg.max_stamp_age:
                raise InputFault("stamp_backwards", f"stamp {stamp:.3f} jumped back from {self.last_stamp:.3f}")
            if stamp <= self.last_stamp:
                raise InputFault("stamp_out_of_order", f"stamp {stamp:.3f} <= last {self.last_stamp:.3f}")
        if self.last_pose is not None:
            dist = float(np.linalg.norm(T[:3, 3] - self.last_pose[:3, 3]))
            dt = max(stamp - self.last_stamp, 0.1)
            if dist > self.cfg.max_speed * dt:
                raise InputFault(
                    "pose_jump", f"camera moved {dist:.2f} m in {dt:.2f} s (> node.max_speed={self.cfg.max_speed} m/s)"
                )
        gt = None
        if gt_msg is not None:
            g, _ = self.image(gt_msg, DEPTH_ENCODINGS)
            gt = g.astype(np.int32) if g.shape == draw.shape else None
        if self.camera is not None and self.camera != cam:
            self.counts["camera_info_changed"] += 1  # accepted: intrinsics may change (zoom, re-calibration)
        self.camera = cam
        self.last_stamp, self.last_pose = stamp, T
        self.accepted += 1
        if pose_depth is not None and not np.all(np.isfinite(pose_depth)):
            pose_depth = None
        if pose_rows is not None and not all(np.all(np.isfinite(p)) for p in pose_rows):
            pose_rows = None
        return Frame(rgb, depth, cam, T, stamp, index, gt, pose_depth, pose_rows)

    def reset_time(self):
        """After a detected bag restart: accept the new time line."""
        self.last_stamp = None
        self.last_pose = None


def resample_depth(depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Depth registered to colour but at another resolution, brought to the colour image's by nearest
    neighbour (depth must not be blended across edges); refused when the aspect ratios differ (then it
    is not the same field of view)."""
    (h, w), (H, W) = depth.shape[:2], shape
    if abs(w / h - W / H) > 0.01 * (W / H):
        raise InputFault(
            "size_mismatch",
            f"depth {w}x{h} and colour {W}x{H} differ in aspect ratio: depth must be "
            "registered to the colour camera (e.g. RealSense aligned_depth_to_color)",
        )
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return depth[rows[:, None], cols[None, :]]


class ApproxSync:
    """Approximate time sync of a few topics: pairs messages whose stamps lie within `slop`.
    The newest message of each topic is kept in a short buffer; completed sets are returned once."""

    def __init__(self, keys: list[str], slop: float, buffer: int = 10):
        self.keys, self.slop = list(keys), slop
        self.buf = {k: collections.deque(maxlen=buffer) for k in keys}

    def add(self, key: str, stamp: float, msg):
        self.buf[key].append((stamp, msg))
        return self._match(key, stamp)

    def _match(self, key: str, stamp: float):
        out = {key: None}
        for k in self.keys:
            best = min(self.buf[k], key=lambda e: abs(e[0] - stamp), default=None)
            if best is None or abs(best[0] - stamp) > self.slop:
                return None
            out[k] = best
        for k, (_, m) in out.items():  # consume the matched messages (by identity)
            self.buf[k] = collections.deque((e for e in self.buf[k] if e[1] is not m), maxlen=self.buf[k].maxlen)
        return {k: m for k, (_, m) in out.items()}
