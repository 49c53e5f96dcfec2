"""Small synthetic frames shared by the tests."""

import numpy as np

from gs_semantic_node.types import Camera, Frame


def plane_frame(x=0.0, d=1.5):
    cam = Camera(60, 60, 39.5, 29.5, 80, 60)
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[:, :40] = [200, 30, 30]
    rgb[:, 40:] = [30, 200, 30]
    T = np.eye(4)
    T[0, 3] = x
    return Frame(rgb, np.full((60, 80), d, np.float32), cam, T, 0.0, 0)


def tilted_frame(k=1.2, d0=1.0, w=40, h=30):
    """A textured plane z = d0 + k*y seen obliquely (camera frame = world frame)."""
    cam = Camera(w * 0.75, w * 0.75, (w - 1) / 2, (h - 1) / 2, w, h)
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = d0 / (1 - k * (v - cam.cy) / cam.fy)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = (u * 6).astype(np.uint8)
    rgb[..., 1] = ((u // 4 + v // 4) % 2 * 200).astype(np.uint8)
    return Frame(rgb, depth.astype(np.float32), cam, np.eye(4), 0.0, 0)


def striped_plane(x_true: float, x_reported: float, d: float = 1.0) -> Frame:
    """A plane at depth d with sinusoidal stripes fixed in the world, seen from x_true, posed at x_reported."""
    cam = Camera(60, 60, 39.5, 29.5, 80, 60)
    v, u = np.mgrid[0:60, 0:80].astype(np.float32)
    X = x_true + (u - cam.cx) / cam.fx * d
    Y = (v - cam.cy) / cam.fy * d
    rgb = np.stack(
        [0.5 + 0.4 * np.sin(2 * np.pi * X / 0.12), 0.5 + 0.4 * np.cos(2 * np.pi * Y / 0.15), 0.5 + 0 * X], -1
    )
    T = np.eye(4)
    T[0, 3] = x_reported
    return Frame((rgb * 255).astype(np.uint8), np.full((60, 80), d, np.float32), cam, T, 0.0, 0)
