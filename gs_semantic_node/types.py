"""Core value types shared by every stage. Plain dataclasses over numpy arrays so the core
is usable from a notebook without ROS. Frames follow REP-103/105: the camera pose is the
optical frame (x right, y down, z forward) expressed in the map frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Camera:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: tuple = ()  # plumb_bob / rational_polynomial coefficients; () = pinhole (mapping.rectify)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera resampled to width x height (pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        return Camera(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            int(width),
            int(height),
            self.distortion,
        )

    def is_valid(self) -> bool:
        vals = np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)
        return bool(np.all(np.isfinite(vals)) and self.fx > 0 and self.fy > 0 and self.width > 0 and self.height > 0)


@dataclass
class Frame:
    """One synchronised RGB-D observation. depth is metric (m), 0 where invalid."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres
    camera: Camera
    T_world_cam: np.ndarray  # (4, 4) float64, optical frame -> map
    stamp: float  # seconds
    index: int = -1
    gt_instances: np.ndarray | None = None  # (H, W) int32 simulator instance ids (oracle perception only)
    # the colour camera's pose when the depth was captured, where that differs from T_world_cam (a
    # depth camera not triggered with the colour one); the mapper moves the depth to the colour instant
    T_world_depth: np.ndarray | None = None
    # a rolling-shutter colour camera's poses at its first and last row (node.rgb_readout); the mapper
    # carries the colour to the stamp's instant (mapping.shutter)
    T_world_rows: tuple | None = None

    @property
    def viewmat(self) -> np.ndarray:
        """World -> camera (what rasterizers take)."""
        return np.linalg.inv(self.T_world_cam)


@dataclass
class OrientedBox:
    center: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3) columns = box axes in the map frame
    size: np.ndarray  # (3,) full extents

    def corners(self) -> np.ndarray:
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        return self.center + (signs * (self.size / 2)) @ self.rotation.T

    def to_dict(self) -> dict:
        return {"center": self.center.tolist(), "rotation": self.rotation.tolist(), "size": self.size.tolist()}

    @staticmethod
    def from_dict(d: dict) -> "OrientedBox":
        return OrientedBox(
            np.asarray(d["center"], float), np.asarray(d["rotation"], float), np.asarray(d["size"], float)
        )


@dataclass
class SemanticObject:
    """A discrete object of the map: what a planner receives."""

    id: int
    label: str
    confidence: float
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    is_background: bool = False
    obb: OrientedBox | None = None
    aabb_min: np.ndarray = field(default_factory=lambda: np.zeros(3))
    aabb_max: np.ndarray = field(default_factory=lambda: np.zeros(3))
    centroid: np.ndarray = field(default_factory=lambda: np.zeros(3))
    num_gaussians: int = 0
    gaussian_indices: np.ndarray | None = None
    gaussian_positions: np.ndarray | None = None
    last_seen: float = 0.0
    embedding: np.ndarray | None = None
    view_embeddings: np.ndarray | None = None  # (k, D) the best views' embeddings behind `embedding`
