"""Rasterizer backends behind one call: gsplat on CUDA, a pure-PyTorch reference on CPU.

Both take the same inputs and return the same outputs, so everything above (mapper, lifting,
queries) runs one code path. The CPU reference follows gsplat 1.5.3's EWA projection and
compositing rules (Jacobian clamping at 1.3x the field of view, 0.3 px blur, opacity-aware
3.33-sigma tile culling, alpha clamp 0.999, skip below 1/255, stop at T <= 1e-4) so the two agree
up to float rounding and tile-culling edge cases; autograd provides its gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
EPS2D = 0.3
NEAR = 0.01
FAR = 1e10
TILE = 16
# channel counts gsplat compiles kernels for (others are padded up to the next one)
GSPLAT_CHANNELS = (1, 2, 3, 4, 5, 6, 8, 9, 16, 17, 21, 23, 24, 32, 33, 64, 65, 128, 129, 256, 257, 512, 513)


@dataclass
class RenderOutput:
    colors: torch.Tensor  # (H, W, C) composited channels
    alpha: torch.Tensor  # (H, W) accumulated opacity
    depth: torch.Tensor  # (H, W) expected depth (alpha-normalised, 0 where alpha ~ 0)


def padded_channels(c: int) -> int:
    for n in GSPLAT_CHANNELS:
        if n >= c:
            return n
    raise ValueError(f"{c} channels exceed gsplat's compiled sizes")


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    q = F.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


class Rasterizer:
    name = "base"

    def render(self, means, quats, scales, opacities, colors, viewmat, K, width, height) -> RenderOutput:
        """means (N,3), quats (N,4) wxyz, scales (N,3) linear, opacities (N,) in [0,1], colors (N,C),
        viewmat (4,4) world->camera, K (3,3)."""
        raise NotImplementedError


class TorchRasterizer(Rasterizer):
    """Pure-PyTorch tile rasterizer (the CPU reference)."""

    name = "torch"

    def project(self, means, quats, scales, opacities, viewmat, K, width, height):
        R, t = viewmat[:3, :3], viewmat[:3, 3]
        mc = means @ R.T + t
        x, y, z = mc.unbind(-1)
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        Rg = quat_to_rotmat(quats)
        M = Rg * scales[:, None, :]
        cov_w = M @ M.transpose(1, 2)
        cov_c = R @ cov_w @ R.T
        zs = z.clamp(min=NEAR)
        tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
        lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
        lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
        tx = zs * torch.minimum(torch.maximum(x / zs, -lim_xn), lim_xp)
        ty = zs * torch.minimum(torch.maximum(y / zs, -lim_yn), lim_yp)
        zero = torch.zeros_like(zs)
        J = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2], -1).reshape(-1, 2, 3)
        cov2 = J @ cov_c @ J.transpose(1, 2)
        cov2 = cov2 + EPS2D * torch.eye(2, dtype=cov2.dtype)
        a, b, c = cov2[:, 0, 0], cov2[:, 0, 1], cov2[:, 1, 1]
        det = a * c - b * b
        mean2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
        with torch.no_grad():
            op = opacities.detach()
            extend = torch.clamp(torch.sqrt(2 * torch.log((op / ALPHA_MIN).clamp(min=1.0))), max=3.33)
            rx = torch.ceil(extend * torch.sqrt(a.detach().clamp(min=0)))
            ry = torch.ceil(extend * torch.sqrt(c.detach().clamp(min=0)))
            m2 = mean2d.detach()
            valid = (
                (z > NEAR)
                & (z < FAR)
                & (det > 0)
                & (op >= ALPHA_MIN)
                & ((rx > 0) | (ry > 0))
                & (m2[:, 0] + rx > 0)
                & (m2[:, 0] - rx < width)
                & (m2[:, 1] + ry > 0)
                & (m2[:, 1] - ry < height)
            )
        conic = torch.stack([c / det, -b / det, a / det], -1)
        return mean2d, conic, z, rx, ry, valid

    def render(self, means, quats, scales, opacities, colors, viewmat, K, width, height) -> RenderOutput:
        dev, dt = means.device, means.dtype
        viewmat = torch.as_tensor(viewmat, dtype=dt, device=dev)
        K = torch.as_tensor(K, dtype=dt, device=dev)
        C = colors.shape[-1]
        mean2d, conic, z, rx, ry, valid = self.project(means, quats, scales, opacities, viewmat, K, width, height)
        idx = torch.nonzero(valid).squeeze(1)
        idx = idx[torch.argsort(z.detach()[idx], stable=True)]
        out_c = torch.zeros(height, width, C, dtype=dt, device=dev)
        out_a = torch.zeros(height, width, dtype=dt, device=dev)
        out_d = torch.zeros(height, width, dtype=dt, device=dev)
        if idx.numel() == 0:
            return RenderOutput(out_c, out_a, out_d)
        m2, cn, zz = mean2d[idx], conic[idx], z[idx]
        op, col = opacities[idx], colors[idx]
        m2d = m2.detach()
        # tile ranges of each Gaussian's bounding rectangle (non-differentiable, as in gsplat)
        tx0 = ((m2d[:, 0] - rx[idx]) / TILE).floor().clamp(min=0).long()
        tx1 = ((m2d[:, 0] + rx[idx]) / TILE).ceil().clamp(max=math.ceil(width / TILE)).long()
        ty0 = ((m2d[:, 1] - ry[idx]) / TILE).floor().clamp(min=0).long()
        ty1 = ((m2d[:, 1] + ry[idx]) / TILE).ceil().clamp(max=math.ceil(height / TILE)).long()
        rows_c, rows_a, rows_d = [], [], []
        for ty in range(math.ceil(height / TILE)):
            y0, y1 = ty * TILE, min(height, (ty + 1) * TILE)
            row_sel = (ty0 <= ty) & (ty1 > ty)
            tiles_c, tiles_a, tiles_d = [], [], []
            for tx in range(math.ceil(width / TILE)):
                x0, x1 = tx * TILE, min(width, (tx + 1) * TILE)
                sel = torch.nonzero(row_sel & (tx0 <= tx) & (tx1 > tx)).squeeze(1)
                if sel.numel() == 0:
                    tiles_c.append(torch.zeros(y1 - y0, x1 - x0, C, dtype=dt, device=dev))
                    tiles_a.append(torch.zeros(y1 - y0, x1 - x0, dtype=dt, device=dev))
                    tiles_d.append(torch.zeros(y1 - y0, x1 - x0, dtype=dt, device=dev))
                    continue
                ys, xs = torch.meshgrid(
                    torch.arange(y0, y1, dtype=dt, device=dev) + 0.5,
                    torch.arange(x0, x1, dtype=dt, device=dev) + 0.5,
                    indexing="ij",
                )
                px = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)  # (P, 2)
                d = px[:, None, :] - m2[sel][None]  # (P, G, 2)
                cs = cn[sel]
                sigma = (
                    0.5 * (cs[None, :, 0] * d[..., 0] ** 2 + cs[None, :, 2] * d[..., 1] ** 2)
                    + cs[None, :, 1] * d[..., 0] * d[..., 1]
                )
                alpha = torch.clamp(op[sel][None] * torch.exp(-sigma), max=ALPHA_MAX)
                alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
                one_minus = 1 - alpha
                T_incl = torch.cumprod(one_minus, dim=1)
                T_excl = torch.cat([torch.ones_like(T_incl[:, :1]), T_incl[:, :-1]], 1)
                keep = (T_incl > T_MIN).to(dt)
                w = alpha * T_excl * keep  # (P, G)
                tiles_c.append((w @ col[sel]).reshape(y1 - y0, x1 - x0, C))
                tiles_a.append(w.sum(1).reshape(y1 - y0, x1 - x0))
                tiles_d.append((w @ zz[sel]).reshape(y1 - y0, x1 - x0))
            rows_c.append(torch.cat(tiles_c, 1))
            rows_a.append(torch.cat(tiles_a, 1))
            rows_d.append(torch.cat(tiles_d, 1))
        out_c, out_a, acc_d = torch.cat(rows_c, 0), torch.cat(rows_a, 0), torch.cat(rows_d, 0)
        depth = acc_d / out_a.clamp(min=1e-6) * (out_a > 1e-6).to(dt)
        return RenderOutput(out_c, out_a, depth)


class GsplatRasterizer(Rasterizer):
    """gsplat's CUDA rasterization(); channels padded to a compiled size."""

    name = "gsplat"

    def __init__(self):
        try:
            from gsplat import rasterization
        except ImportError as e:  # pragma: no cover - depends on install
            raise RuntimeError("gsplat backend requested but the 'gsplat' package is not installed") from e
        if not torch.cuda.is_available():
            raise RuntimeError(
                "gsplat backend requested but CUDA is not available on this machine "
                "(set mapper.backend: torch to use the CPU reference)"
            )
        self._rasterization = rasterization

    def render(self, means, quats, scales, opacities, colors, viewmat, K, width, height) -> RenderOutput:
        dev, dt = means.device, means.dtype
        viewmat = torch.as_tensor(viewmat, dtype=dt, device=dev)[None]
        K = torch.as_tensor(K, dtype=dt, device=dev)[None]
        C = colors.shape[-1]
        Cp = padded_channels(C + 1) - 1  # +1: gsplat appends depth in RGB+ED mode
        if Cp != C:
            colors = torch.cat([colors, colors.new_zeros(colors.shape[0], Cp - C)], -1)
        img, alpha, _ = self._rasterization(
            means,
            quats,
            scales,
            opacities,
            colors,
            viewmat,
            K,
            width,
            height,
            render_mode="RGB+ED",
            packed=False,
            near_plane=NEAR,
        )
        return RenderOutput(img[0, ..., :C], alpha[0, ..., 0], img[0, ..., -1] * (alpha[0, ..., 0] > 1e-6))


def make_rasterizer(backend: str = "auto") -> Rasterizer:
    """auto: gsplat whenever CUDA is there, else the CPU reference."""
    if backend == "torch":
        return TorchRasterizer()
    if backend == "gsplat":
        return GsplatRasterizer()
    if backend != "auto":
        raise ValueError(f"unknown rasterizer backend {backend!r} (auto | gsplat | torch)")
    if torch.cuda.is_available():
        try:
            return GsplatRasterizer()
        except RuntimeError:
            pass
    return TorchRasterizer()
