"""A frame brought to the one instant and pinhole camera the map renders with (`one_instant`); here,
depth taken at another instant than the colour, moved to the colour's instant.

A depth camera that is not triggered with the colour camera (Kinect v1, many stereo heads) captures
each depth map some milliseconds apart from the colour image it is paired with; on a moving robot
the two then disagree by the distance travelled in between, which the map learns as doubled edges
and surfaces in the wrong place. With the pose at both instants (`Frame.T_world_depth`), the depth
points are carried into the colour camera and splatted there, nearest surface first.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..types import Frame
from .rectify import rectify
from .shutter import global_shutter


def one_instant(frame: Frame, device="cpu") -> Frame:
    """The frame as the map's camera model takes it: a pinhole image (mapping.rectify), the depth
    at the colour's instant and every colour row at the stamp's (mapping.shutter, on `device`). Idempotent."""
    return global_shutter(depth_at_colour_instant(rectify(frame)), device)


def depth_at_colour_instant(frame: Frame) -> Frame:
    """The frame with its depth re-projected from the depth's capture pose into the colour camera at
    the colour's pose (z-buffered; pixels nothing lands on become holes); unchanged without a depth
    pose. The camera must be a pinhole (rectify first)."""
    if frame.T_world_depth is None:
        return frame
    cam = frame.camera
    D = torch.from_numpy(np.require(frame.depth, np.float32, "C"))
    v, u = torch.nonzero(D > 0, as_tuple=True)
    z = D[v, u]
    pc = torch.stack([(u - cam.cx) / cam.fx * z, (v - cam.cy) / cam.fy * z, z], -1).double()
    rel = torch.from_numpy(np.linalg.inv(frame.T_world_cam) @ frame.T_world_depth)  # depth camera -> colour camera
    q = pc @ rel[:3, :3].T + rel[:3, 3]
    zq = q[:, 2].clamp(min=1e-6)
    uq = torch.round(q[:, 0] / zq * cam.fx + cam.cx).long()
    vq = torch.round(q[:, 1] / zq * cam.fy + cam.cy).long()
    ok = (q[:, 2] > 0) & (uq >= 0) & (uq < cam.width) & (vq >= 0) & (vq < cam.height)
    out = torch.full((cam.height * cam.width,), float("inf"), dtype=torch.float32)
    out.scatter_reduce_(0, (vq * cam.width + uq)[ok], q[ok, 2].float(), "amin")
    out = torch.where(torch.isfinite(out), out, torch.zeros_like(out)).reshape(cam.height, cam.width)
    return dataclasses.replace(frame, depth=out.numpy(), T_world_depth=None)
