"""A rolling-shutter colour image carried to one instant, and a global render rolled back.

A rolling shutter reads its rows out one after another (`node.rgb_readout` seconds from the first row
to the last); on a moving camera each row sees the scene from another pose, so every image is skewed
by its own motion and no rigid pose per image lines the views up. With the poses of the first and the
last row (`Frame.T_world_rows`, interpolated by the frame assembler) and the depth, each pixel is
carried to where the camera at the frame's stamp (the middle row's instant) would have seen it.
The row poses are interpolated linearly in rotation vector and translation: over a readout the camera
turns by a degree or less.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from ..types import Camera, Frame
from .geometry import backproject, rotvec_to_matrix


def _pixels(H: int, W: int, device, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) pixel coordinates (u, v)."""
    v, u = torch.meshgrid(
        torch.arange(H, dtype=dtype, device=device), torch.arange(W, dtype=dtype, device=device), indexing="ij"
    )
    return torch.stack([u, v], -1)


def row_flow(depth: torch.Tensor, cam: Camera, T_world_cam: np.ndarray, rows: tuple) -> torch.Tensor:
    """(H, W, 2) pixel motion from where each row saw a point to where the camera at the stamp sees it.
    depth (H, W) in metres at cam's resolution; where it is missing, the median depth stands in (the
    rotation, which needs none, is most of the motion)."""
    H, W = depth.shape
    dev = depth.device
    first, last = (np.linalg.inv(T_world_cam) @ np.asarray(T) for T in rows)  # row cameras in the stamp's
    rel = np.linalg.inv(first) @ last
    w = torch.as_tensor(Rotation.from_matrix(rel[:3, :3]).as_rotvec(), dtype=torch.float64, device=dev)
    t = torch.as_tensor(rel[:3, 3], dtype=torch.float64, device=dev)
    z = depth.double()
    ok = z > 0
    z = torch.where(ok, z, z[ok].median() if bool(ok.any()) else torch.ones((), dtype=z.dtype, device=dev))
    s = (torch.arange(H, dtype=torch.float64, device=dev) + 0.5) / H - 0.5  # each row's instant / readout
    P = backproject(z, cam, torch.eye(4, dtype=z.dtype, device=dev))  # in the row's camera
    Q = torch.einsum("hij,hwj->hwi", rotvec_to_matrix(s[:, None] * w), P) + (s[:, None] * t)[:, None, :]

    def project(X):
        zx = X[..., 2].clamp(min=1e-6)
        return torch.stack([X[..., 0] / zx * cam.fx + cam.cx, X[..., 1] / zx * cam.fy + cam.cy], -1)

    return (project(Q) - project(P)).float()  # project(P) is the pixel itself


def _sample(img: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """img (H, W, C) float, bilinearly sampled at pixel positions `at` (H, W, 2)."""
    H, W = img.shape[:2]
    g = torch.stack([(at[..., 0] + 0.5) / W * 2 - 1, (at[..., 1] + 0.5) / H * 2 - 1], -1)[None]
    out = F.grid_sample(
        img.permute(2, 0, 1)[None], g.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0].permute(1, 2, 0)


def global_shutter(frame: Frame, device="cpu") -> Frame:
    """The frame with its colour as the camera at its stamp would have seen it (computed on `device`);
    unchanged without row poses. Pinhole camera and depth at the colour's instant first (mapping.registration)."""
    if frame.T_world_rows is None:
        return frame
    depth = torch.from_numpy(np.require(frame.depth, np.float32, "C")).to(device)
    fl = row_flow(depth, frame.camera, frame.T_world_cam, frame.T_world_rows)
    H, W = depth.shape
    # the flow is smooth (a degree of turn, millimetres of travel): taken where the pixel lands, the
    # backward warp global(p) = rolling(p - flow(p)) needs no splatting
    rgb = torch.from_numpy(np.require(frame.rgb, requirements="C")).to(device).float()
    rgb = _sample(rgb, _pixels(H, W, device) - fl).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return dataclasses.replace(frame, rgb=rgb, T_world_rows=None)


def rolling(
    image: torch.Tensor, depth: torch.Tensor, cam: Camera, T_world_cam: np.ndarray, rows: tuple
) -> torch.Tensor:
    """An image rendered at the stamp's pose (H, W, C), rolled as the rolling shutter would have taken
    it: what a held-out raw image is compared with. `depth` (H, W): the render's own."""
    fl = row_flow(depth, cam, T_world_cam, rows)
    return _sample(image, _pixels(*depth.shape, image.device) + fl)
