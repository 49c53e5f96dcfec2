"""A frame's pose aligned to the map's own render: direct RGB-D alignment (frame-to-model).

Point-to-plane ICP against the Gaussians' centres (mapping.tracking) brings a pose to within a few
millimetres; the centres are not exactly the surface, so it stops there. The map's render is what
the keyframes will be compared with, so aligning the frame to the render is what makes keyframes
agree with each other: each rendered pixel (its colour and depth, one render of the frozen map) is
carried into the frame by the pose correction and compared with the frame's colour and depth there
(Gauss-Newton on colour and depth residuals, as dense visual odometry does: Steinbruecker et al.
2011, Kerl et al. 2013), coarse to fine. The frame's exposure and white balance may differ from the
map's: a gain and offset per channel are solved with the pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..types import Camera
from .geometry import pose_change, rotvec_to_matrix

HUBER = 1.345  # residuals beyond this many noise sigmas weigh less (95 % efficiency for Gaussian noise)


@dataclass
class DirectAlignment:
    T_world_cam: torch.Tensor  # (4,4) the aligned pose (the start pose where it was not accepted)
    accepted: bool
    pixels: int  # rendered pixels that took part at the finest level
    cost_before: float  # robust mean residual (in noise units) at the start pose ...
    cost_after: float  # ... and at the aligned one
    gain: torch.Tensor  # (3,) the frame's colour = gain x rendered colour + offset
    offset: torch.Tensor  # (3,)
    translation: float = 0.0  # m and degrees from the bounds' reference pose to the aligned one
    rotation_deg: float = 0.0

    @classmethod
    def refused(cls, T_world_cam: torch.Tensor) -> "DirectAlignment":
        one = torch.ones(3, device=T_world_cam.device)
        return cls(T_world_cam, False, 0, float("nan"), float("nan"), one, one * 0)


def _sample(img: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """img (H,W,C) bilinearly at pixel positions u, v (N,) -> (N,C); the caller keeps u, v inside."""
    H, W = img.shape[:2]
    g = torch.stack([(u + 0.5) / W * 2 - 1, (v + 0.5) / H * 2 - 1], -1).view(1, 1, -1, 2)
    out = F.grid_sample(img.permute(2, 0, 1)[None], g.to(img.dtype), mode="bilinear", align_corners=False)
    return out[0, :, 0].T


def _gradients(img: torch.Tensor) -> torch.Tensor:
    """(H,W,C) -> (H,W,C,2) central differences along u and v (one-sided at the border)."""
    p = F.pad(img.permute(2, 0, 1)[None], (1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 0)
    gu = 0.5 * (p[1:-1, 2:] - p[1:-1, :-2])
    gv = 0.5 * (p[2:, 1:-1] - p[:-2, 1:-1])
    return torch.stack([gu, gv], -1)


def _level(rgb: torch.Tensor, depth: torch.Tensor, camera: Camera, k: int):
    """The frame at 1/2^k resolution: colour averaged, depth the mean of its valid pixels."""
    if k == 0:
        return rgb, depth, camera
    s = 2**k
    H, W = depth.shape[0] // s, depth.shape[1] // s
    c = F.avg_pool2d(rgb[: H * s, : W * s].permute(2, 0, 1)[None], s)[0].permute(1, 2, 0)
    valid = (depth[: H * s, : W * s] > 0).float()[None, None]
    num = F.avg_pool2d(depth[: H * s, : W * s][None, None] * valid, s)
    den = F.avg_pool2d(valid, s)
    d = torch.where(den > 0.99, num / den.clamp(min=1e-6), torch.zeros_like(num))[0, 0]
    return c.contiguous(), d.contiguous(), camera.scaled(W, H)


def align_to_render(
    rgb: torch.Tensor,
    depth: torch.Tensor,
    camera: Camera,
    T_world_cam: torch.Tensor,
    render_rgb: torch.Tensor,
    render_depth: torch.Tensor,
    render_alpha: torch.Tensor,
    iters: int = 8,
    levels: int = 2,
    color_sigma: float = 0.03,
    depth_sigma: float = 0.005,
    depth_noise: float = 0.0025,
    max_translation: float = 0.03,
    max_rotation_deg: float = 3.0,
    min_pixels: int = 300,
    bounds_from: torch.Tensor | None = None,
) -> DirectAlignment:
    """Align a frame (rgb (H,W,3) in [0,1], depth (H,W) m, 0 = none) whose pose is about T_world_cam to
    the map rendered at T_world_cam (colours, expected depth, alpha at the same resolution).

    Residuals are in noise units: colour by `color_sigma`, depth by depth_sigma + depth_noise x z^2
    (a structured-light sensor's noise grows with depth squared), Huber-weighted at 1.345. Only
    rendered pixels the map covers (alpha > 0.95) take part; a frame pixel landing on a depth edge
    or hole adds no depth residual. A pose beyond the bounds (measured from `bounds_from`, by default
    the start pose), one that does not lower the cost, or one resting on fewer than `min_pixels`
    pixels is refused: the start pose stands."""
    dev, dt = rgb.device, torch.float32
    G = torch.eye(4, dtype=torch.float64, device=dev)  # start camera -> aligned camera
    gain = torch.ones(3, dtype=dt, device=dev)
    offset = torch.zeros(3, dtype=dt, device=dev)
    H, W = depth.shape
    ref_ok = (render_alpha > 0.95) & (render_depth > 0)
    v, u = torch.meshgrid(torch.arange(H, device=dev, dtype=dt), torch.arange(W, device=dev, dtype=dt), indexing="ij")
    X = torch.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, torch.ones_like(u)], -1)
    X = X * render_depth[..., None]  # the rendered surface in the start camera

    def level_data(k):
        img, dep, cam = _level(rgb, depth, camera, k)
        grad = _gradients(torch.cat([img, dep[..., None]], -1))  # (h,w,4,2): colour and depth
        s = 2**k
        sel = ref_ok[s // 2 :: s, s // 2 :: s]
        return X[s // 2 :: s, s // 2 :: s][sel].double(), render_rgb[s // 2 :: s, s // 2 :: s][sel], img, dep, grad, cam

    def residuals(G, data, gain, offset):
        return _residuals(*data[:2], G, *data[2:], gain, offset, color_sigma, depth_sigma, depth_noise)

    for k in reversed(range(levels)):
        data = level_data(k)
        for _ in range(iters):
            r, J, w, ok, pair = residuals(G, data, gain, offset)
            if int(ok.sum()) < min_pixels:
                break
            gain, offset = _exposure(*pair)
            A = (J * w[:, None]).T @ J
            b = -(J * w[:, None]).T @ r
            prior = 1e-6 * float(w.sum()) * torch.eye(6, dtype=A.dtype, device=dev)
            xi = torch.linalg.solve(A + prior, b)
            E = torch.eye(4, dtype=torch.float64, device=dev)
            E[:3, :3], E[:3, 3] = rotvec_to_matrix(xi[:3]), xi[3:]
            G = E @ G
            if float(xi.norm()) < 1e-7:
                break
    gain, offset = _exposure(*residuals(G, data, gain, offset)[4])  # the exposure at the pose found
    # judged at the finest level, both poses with that exposure
    cost_before = _cost(residuals(torch.eye(4, dtype=torch.float64, device=dev), data, gain, offset)[0])
    r, _, _, ok, _ = residuals(G, data, gain, offset)
    cost, pixels = _cost(r), int(ok.sum())
    T0 = T_world_cam.double()
    T = T0 @ torch.linalg.inv(G)
    trans, rot = pose_change(T0 if bounds_from is None else bounds_from.double(), T)
    accepted = (
        bool(torch.isfinite(T).all())
        and pixels >= min_pixels
        and cost <= cost_before
        and trans <= max_translation
        and rot <= max_rotation_deg
    )
    T_out = T.to(T_world_cam.dtype) if accepted else T_world_cam
    return DirectAlignment(T_out, accepted, pixels, cost_before, cost, gain, offset, trans, rot)


def _cost(r: torch.Tensor) -> float:
    """Mean Huber loss of the residuals (noise units)."""
    a = r.abs()
    return float(torch.where(a <= HUBER, 0.5 * a * a, HUBER * (a - 0.5 * HUBER)).mean()) if len(r) else float("inf")


def _residuals(pts, ref_c, G, img, dep, grad, cam, gain, offset, color_sigma, depth_sigma, depth_noise):
    """Stacked colour (3 per pixel) and depth residuals in noise units with their (.,6) Jacobians
    (left perturbation of G: rotation vector, translation) and Huber weights."""
    h, w_ = dep.shape
    q = pts @ G[:3, :3].T + G[:3, 3]
    z = q[:, 2].clamp(min=1e-6)
    uu = q[:, 0] / z * cam.fx + cam.cx
    vv = q[:, 1] / z * cam.fy + cam.cy
    ok = (q[:, 2] > 1e-3) & (uu >= 0) & (uu <= w_ - 1) & (vv >= 0) & (vv <= h - 1)
    q, z, uu, vv, rc = q[ok], z[ok], uu[ok].float(), vv[ok].float(), ref_c[ok]
    obs = _sample(img, uu, vv)  # (n,3)
    g = _sample(grad.reshape(h, w_, 8), uu, vv).reshape(-1, 4, 2).double()
    # d(u,v)/dq and dq/dxi = [-[q]x | I]
    x, y = q[:, 0], q[:, 1]
    zero = torch.zeros_like(z)
    dpi = torch.stack(
        [
            torch.stack([cam.fx / z, zero, -cam.fx * x / z**2], -1),
            torch.stack([zero, cam.fy / z, -cam.fy * y / z**2], -1),
        ],
        1,
    )  # (n,2,3)
    skew = torch.zeros(len(q), 3, 3, dtype=q.dtype, device=q.device)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -q[:, 2], q[:, 1], -q[:, 0]
    skew = skew - skew.transpose(1, 2)
    dq = torch.cat([-skew, torch.eye(3, dtype=q.dtype, device=q.device).expand(len(q), 3, 3)], 2)  # (n,3,6)
    duv = dpi @ dq  # (n,2,6)
    # colour: obs(u') - (gain * ref + offset), per channel
    rc_c = ((obs - (gain * rc + offset)) / color_sigma).double()  # (n,3)
    Jc = (g[:, :3, None, :] @ duv[:, None]).squeeze(2) / color_sigma  # (n,3,6)
    # depth: D(u') - z', where the observed depth is smooth under the pixel
    u0, v0 = uu.floor().long().clamp(0, w_ - 2), vv.floor().long().clamp(0, h - 2)
    quad = torch.stack([dep[v0, u0], dep[v0, u0 + 1], dep[v0 + 1, u0], dep[v0 + 1, u0 + 1]], 1)
    lo = quad.min(1).values
    sig = depth_sigma + depth_noise * z**2
    d_ok = (lo > 0) & ((quad.max(1).values - lo) < 0.05 * lo)
    d_obs = _sample(dep[..., None], uu, vv)[:, 0].double()
    rd = ((d_obs - z) / sig)[d_ok]
    Jd = ((g[:, 3:4] @ duv).squeeze(1) - dq[:, 2]) / sig[:, None]
    Jd = Jd[d_ok]
    r = torch.cat([rc_c.reshape(-1), rd])
    J = torch.cat([Jc.reshape(-1, 6), Jd])
    a = r.abs()
    wgt = torch.where(a <= HUBER, torch.ones_like(a), HUBER / a)
    return r, J, wgt, ok, (obs, rc)


def _exposure(obs: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel gain and offset taking the rendered colours to the observed ones (least squares)."""
    mr, mo = ref.mean(0), obs.mean(0)
    var = ((ref - mr) ** 2).mean(0)
    cov = ((ref - mr) * (obs - mo)).mean(0)
    gain = torch.where(var > 1e-6, cov / var.clamp(min=1e-6), torch.ones_like(var)).clamp(0.5, 2.0)
    return gain, mo - gain * mr
