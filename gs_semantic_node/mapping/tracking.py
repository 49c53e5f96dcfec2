"""A keyframe's pose aligned to the map before it is mapped (frame-to-model tracking).

Odometry, motion capture and SLAM poses are off by millimetres and tenths of a degree, differently
for every frame. A keyframe mapped at its pose as given seeds its surface that far from where the
earlier keyframes put it, and the object Gaussians of a few views spread into a layer as thick as
the pose error: thin objects come out thick. Point-to-plane ICP of the
map's surface points against the observed depth (projective association, as in KinectFusion)
moves the pose onto the map first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..types import Camera
from .direct import DirectAlignment
from .geometry import backproject, depth_normals, pose_change, rotvec_to_matrix


@dataclass
class Alignment:
    T_world_cam: torch.Tensor  # (4,4) the aligned pose (the given one where it was not accepted)
    accepted: bool
    inliers: int
    rms_before: float  # m, point-to-plane residual of the inliers at the given pose ...
    rms_after: float  # ... and at the aligned one
    translation: float  # m, the correction's size
    rotation_deg: float
    weight: float = 1.0  # the share of the correction taken (fuse_weight)
    direct: DirectAlignment | None = None  # the refinement against the map's render (mapping.direct), where run

    @classmethod
    def refused(cls, T_world_cam: torch.Tensor) -> "Alignment":
        return cls(T_world_cam, False, 0, float("nan"), float("nan"), 0.0, 0.0, weight=0.0)  # nothing taken


def align_to_map(
    depth: torch.Tensor,
    camera: Camera,
    T_world_cam: torch.Tensor,
    map_points: torch.Tensor,
    iters: int = 6,
    max_residual: float = 0.02,
    huber: float = 0.005,
    visible_band: float = 0.02,
    max_translation: float = 0.03,
    max_rotation_deg: float = 3.0,
    min_inliers: int = 200,
) -> Alignment:
    """Align observed depth (H,W) at pose T_world_cam to the map's surface points (N,3, map frame:
    the Gaussians' centres, which the mapping holds on the observed surface).

    The map's rendered depth would be the obvious target, but on oblique surfaces it is biased
    towards the nearer centres; the centres are not. Each centre that faces the camera
    (within `visible_band` of the nearest centre's depth on its pixel) is compared with the observed
    point at the pixel it projects to, along that point's normal; residuals over
    `max_residual` (occluded centres, what moved, what the map lacks) are left out and the rest
    Huber-weighted. A weak prior holds the directions the surface does not constrain (a bare
    plane: sliding along it) at the given pose. A correction beyond the bounds, or with too few
    inliers, is refused: the given pose stands."""
    dev, dt = depth.device, torch.float64
    eye = torch.eye(4, dtype=depth.dtype, device=dev)
    P = backproject(depth, camera, eye)
    normals, smooth = depth_normals(depth, P)
    P, normals, ok_src = P.to(dt), normals.to(dt), smooth & (depth > 0)
    M = map_points.to(dt)
    T0 = T_world_cam.to(dt)
    H, W = depth.shape
    T = T0.clone()

    def residuals(T):
        V = torch.linalg.inv(T)
        c = M @ V[:3, :3].T + V[:3, 3]  # the centres in the camera
        zc = c[:, 2].clamp(min=1e-6)
        uu = torch.round(c[:, 0] / zc * camera.fx + camera.cx).long()
        vv = torch.round(c[:, 1] / zc * camera.fy + camera.cy).long()
        inside = (c[:, 2] > 0) & (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
        uu, vv, zc, Mi = uu[inside], vv[inside], zc[inside], M[inside]
        # only the nearest centres on a pixel face the camera: a thin object's far side lies within
        # max_residual of its near side and would pull the pose towards it
        near = torch.full((H * W,), float("inf"), dtype=dt, device=dev)
        near.scatter_reduce_(0, vv * W + uu, zc, "amin")
        front = zc <= near[vv * W + uu] * (1 + visible_band)
        q = P[vv, uu] @ T[:3, :3].T + T[:3, 3]
        n = normals[vv, uu] @ T[:3, :3].T
        r = ((q - Mi) * n).sum(-1)
        keep = front & ok_src[vv, uu] & (r.abs() <= max_residual)
        return q[keep], n[keep], r[keep]

    q, n, r = residuals(T)
    if len(r) < min_inliers:
        return Alignment.refused(T_world_cam)
    rms_before = float(r.pow(2).mean().sqrt())
    for _ in range(iters):
        if len(r) < min_inliers:
            return Alignment.refused(T_world_cam)
        c = q.mean(0)  # rotate about the points' centroid: rotation and translation decouple
        J = torch.cat([torch.linalg.cross(q - c, n), n], 1)
        w = torch.where(r.abs() <= huber, torch.ones_like(r), huber / r.abs())
        A = (J * w[:, None]).T @ J
        b = -(J * w[:, None]).T @ r
        # a thousandth of a point's weight per point; rotation in (0.1 m)^2, a tabletop's lever arm
        prior = 1e-3 * float(w.sum()) * torch.tensor([0.01, 0.01, 0.01, 1.0, 1.0, 1.0], dtype=dt, device=dev)
        xi = torch.linalg.solve(A + torch.diag(prior), b)
        R = rotvec_to_matrix(xi[:3])
        G = torch.eye(4, dtype=dt, device=dev)
        G[:3, :3], G[:3, 3] = R, c - R @ c + xi[3:]
        T = G @ T
        q, n, r = residuals(T)
        if float(xi.norm()) < 1e-7:
            break
    if len(r) < min_inliers:
        return Alignment.refused(T_world_cam)
    trans, rot = pose_change(T0, T)
    rms_after = float(r.pow(2).mean().sqrt())
    ok = bool(torch.isfinite(T).all()) and trans <= max_translation and rot <= max_rotation_deg
    T_out = T.to(T_world_cam.dtype) if ok else T_world_cam
    return Alignment(T_out, ok, len(r), rms_before, rms_after, trans, rot)


def blend(corrections: np.ndarray, weights: np.ndarray, about: np.ndarray) -> np.ndarray:
    """The rigid transform (4,4) whose rotation vector and displacement of the point `about` are the
    weighted sums of those of `corrections` (K,4,4): their mean with weights 1/K, a share of one
    correction with a single weight. Exact enough for the millimetres and tenths of a degree here."""
    from scipy.spatial.transform import Rotation

    C = np.asarray(corrections, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    R = Rotation.from_rotvec((w[:, None] * Rotation.from_matrix(C[:, :3, :3]).as_rotvec()).sum(0)).as_matrix()
    d = (w[:, None] * (C[:, :3, :3] @ about + C[:, :3, 3] - about)).sum(0)
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = R, about + d - R @ about
    return out


def displacement_sq(correction: torch.Tensor, points: torch.Tensor) -> float:
    """Mean squared distance (m^2) the correction (4,4) moves the points (N,3) by."""
    C, P = correction.to(torch.float64), points.to(torch.float64)
    return float(((P @ C[:3, :3].T + C[:3, 3] - P) ** 2).sum(-1).mean())


def fuse_weight(sizes_sq: Sequence[float], map_sigma: float) -> float:
    """The share of an alignment's correction to take: the given pose and the aligned one are two
    measurements of the pose, fused by their variances. The aligned one is off by about
    `map_sigma` on its own (the map's centres are not exactly the surface); the given poses' noise is
    what the corrections show beyond that (the median of their squared sizes, the last ones). Exact poses
    keep their pose (weight ~0), poses off by much more than the map is get the map's (~1)."""
    if map_sigma <= 0:
        return 1.0
    given_sq = max(0.0, float(np.median(sizes_sq)) - map_sigma**2)
    return given_sq / (given_sq + map_sigma**2)
