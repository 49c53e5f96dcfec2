"""Geometry shared by seeding, tracking and pose refinement: back-projection, depth normals, rotations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..types import Camera


def backproject(depth: torch.Tensor, camera: Camera, T_world_cam: torch.Tensor) -> torch.Tensor:
    """(H,W) metric depth -> (H,W,3) points in the map frame (ROS pixel-centre convention)."""
    H, W = depth.shape
    v, u = torch.meshgrid(
        torch.arange(H, device=depth.device, dtype=depth.dtype),
        torch.arange(W, device=depth.device, dtype=depth.dtype),
        indexing="ij",
    )
    pc = torch.stack([(u - camera.cx) / camera.fx * depth, (v - camera.cy) / camera.fy * depth, depth], -1)
    return pc @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]


def depth_normals(depth: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit normals (H,W,3) of the surface a depth map sees, from its back-projected points (H,W,3),
    and where they are reliable (H,W): all four neighbours valid and the depth changing evenly
    across the pixel. An oblique plane changes depth fast but evenly; a depth edge jumps on one side."""
    D = depth
    Dp = F.pad(D[None, None], (1, 1, 1, 1))[0, 0]
    Pp = F.pad(points.permute(2, 0, 1)[None], (1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 0)
    du = Pp[1:-1, 2:] - Pp[1:-1, :-2]
    dv = Pp[2:, 1:-1] - Pp[:-2, 1:-1]
    nb = torch.stack([Dp[1:-1, 2:], Dp[1:-1, :-2], Dp[2:, 1:-1], Dp[:-2, 1:-1]], 0)
    fwd, bwd = nb[0::2] - D, D - nb[1::2]
    even = (fwd - bwd).abs() <= 0.5 * torch.maximum(fwd.abs(), bwd.abs()) + 0.01 * D
    n = torch.linalg.cross(du, dv)
    smooth = (nb.min(0).values > 0) & even.all(0) & (n.norm(dim=-1) > 1e-12)
    return F.normalize(n, dim=-1), smooth


def rotvec_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors -> (..., 3, 3) rotations (differentiable: pose refinement optimises through it)."""
    x, y, t = w[..., 0], w[..., 1], w[..., 2]
    z = torch.zeros_like(x)
    W = torch.stack([torch.stack([z, -t, y], -1), torch.stack([t, z, -x], -1), torch.stack([-y, x, z], -1)], -2)
    return torch.linalg.matrix_exp(W)


def pose_change(T0: torch.Tensor, T1: torch.Tensor) -> tuple[float, float]:
    """How far (m) the camera moved and how much (degrees) it turned from pose T0 to T1 (4,4)."""
    trans = float((T1[:3, 3] - T0[:3, 3]).norm())
    cos = float(((torch.trace(T1[:3, :3] @ T0[:3, :3].T) - 1) / 2).clamp(-1, 1))
    return trans, float(torch.rad2deg(torch.arccos(torch.tensor(cos))))
