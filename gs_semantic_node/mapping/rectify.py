"""Lens distortion removed before anything looks at a frame.

The map is rendered through a pinhole camera; a camera whose images are not rectified (TUM RGB-D's
Kinect: k1 0.26, several pixels at the corners) would otherwise put the same surface point at
different rays in different views, which the map can only fit by blurring. `rectify` resamples a
frame to a pinhole camera (`pinhole_camera`: the focal length zoomed in until no rectified pixel falls
outside the raw image): colour bilinearly, depth and instance masks by
nearest neighbour (never blended across an edge). Models: plumb_bob (k1 k2 p1 p2 k3) and
rational_polynomial (k1 k2 p1 p2 k3 k4 k5 k6), as sensor_msgs/CameraInfo carries them.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..types import Camera, Frame


def distort(x: np.ndarray, y: np.ndarray, d: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pinhole coordinates -> distorted ones (OpenCV's radial-tangential model)."""
    k1, k2, p1, p2, k3, k4, k5, k6 = (list(d) + [0.0] * 8)[:8]
    r2 = x * x + y * y
    radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def _raw_coords(cam: Camera, out: Camera, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xd, yd = distort((u - out.cx) / out.fx, (v - out.cy) / out.fy, cam.distortion)
    return xd * cam.fx + cam.cx, yd * cam.fy + cam.cy


def pinhole_camera(cam: Camera) -> Camera:
    """The pinhole camera the frame is rectified to: same size and principal point, the focal length
    zoomed in just enough that every rectified pixel has a raw pixel behind it (no black border for the
    map to learn, OpenCV's getOptimalNewCameraMatrix with alpha 0)."""
    W, H = cam.width, cam.height
    t = np.linspace(0, 1, 64)
    u = np.concatenate([t * (W - 1), t * (W - 1), np.zeros(64), np.full(64, W - 1.0)])
    v = np.concatenate([np.zeros(64), np.full(64, H - 1.0), t * (H - 1), t * (H - 1)])

    def inside(z: float) -> bool:
        out = dataclasses.replace(cam, fx=cam.fx * z, fy=cam.fy * z, distortion=())
        ud, vd = _raw_coords(cam, out, u, v)
        return bool(np.all((ud >= 0) & (ud <= W - 1) & (vd >= 0) & (vd <= H - 1)))

    lo, hi = 1.0, 1.0
    while not inside(hi) and hi < 4.0:
        lo, hi = hi, hi * 1.25
    for _ in range(30):
        if inside(lo) or hi - lo < 1e-5:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if inside(mid) else (mid, hi)
    z = lo if inside(lo) else hi
    return dataclasses.replace(cam, fx=cam.fx * z, fy=cam.fy * z, distortion=())


@lru_cache(maxsize=8)
def _grid(cam: Camera) -> tuple[torch.Tensor, Camera]:
    """(1, H, W, 2) grid_sample coordinates of each rectified pixel in the raw image, and the pinhole camera."""
    out = pinhole_camera(cam)
    v, u = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float64)
    ud, vd = _raw_coords(cam, out, u, v)
    g = np.stack([2 * ud / (cam.width - 1) - 1, 2 * vd / (cam.height - 1) - 1], -1)
    return torch.as_tensor(g, dtype=torch.float32)[None], out


def _sample(img: np.ndarray, grid: torch.Tensor, mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img).astype(np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = F.grid_sample(t, grid, mode=mode, padding_mode="zeros", align_corners=True)[0]
    return out[0].numpy() if img.ndim == 2 else out.permute(1, 2, 0).numpy()


def rectify(frame: Frame) -> Frame:
    """The frame as a pinhole camera with the same intrinsics would have seen it (the frame itself when
    its camera has no distortion)."""
    cam = frame.camera
    if not any(cam.distortion):
        return frame
    grid, pinhole = _grid(cam)
    rgb = np.clip(np.rint(_sample(frame.rgb, grid, "bilinear")), 0, 255).astype(np.uint8)
    depth = _sample(frame.depth, grid, "nearest").astype(np.float32)
    gt = None if frame.gt_instances is None else _sample(frame.gt_instances, grid, "nearest").astype(np.int32)
    return dataclasses.replace(frame, rgb=rgb, depth=depth, camera=pinhole, gt_instances=gt)
