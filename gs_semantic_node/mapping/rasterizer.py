"""Rasterizer backends behind one call: gsplat on CUDA, a pure-PyTorch reference on CPU.

Both take the same inputs and return the same outputs, so everything above (mapper, lifting,
queries) runs one code path. The CPU reference follows gsplat 1.5.3's EWA projection and
compositing rules (Jacobian clamping at 1.3x the field of view, 0.3 px blur, opacity-aware
3.33-sigma culling, alpha clamp 0.999, skip below 1/255, stop at T <= 1e-4) so the two agree
up to float rounding; autograd provides its gradients.
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
    """Pure-PyTorch rasterizer (the CPU reference), vectorised over (pixel, Gaussian) pairs.

    gsplat composites, per pixel, the depth-sorted Gaussians of its tile whose alpha reaches 1/255;
    a Gaussian's alpha falls below that outside its opacity-aware 3.33-sigma box, so the pairs of
    each Gaussian with the pixels in its box are the same set. They are enumerated at once, sorted
    by pixel (stably: depth order within a pixel), and each pixel's transmittance is a segmented
    cumulative sum of log(1 - alpha) (float64: the sum runs over every pair). Autograd gives the
    gradients; no Python loop over tiles or pixels."""

    name = "torch"

    @staticmethod
    def project(means, quats, scales, opacities, viewmat, K, width, height):
        R, t = viewmat[:3, :3], viewmat[:3, 3]
        mc = means @ R.T + t
        x, y, z = mc.unbind(-1)
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        zs = z.clamp(min=NEAR)
        tx, ty = fov_clamped(x, y, zs, K, width, height)
        # the 2D covariance J R S S^T R^T J^T as (J M)(J M)^T with M = R_view R_gauss S, written out: J has
        # two zeros per row, and 3x3 batched matmuls are slow on the CPU
        M = (R @ quat_to_rotmat(quats)) * scales[:, None, :]
        r0 = (fx / zs)[:, None] * M[:, 0] - (fx * tx / zs**2)[:, None] * M[:, 2]
        r1 = (fy / zs)[:, None] * M[:, 1] - (fy * ty / zs**2)[:, None] * M[:, 2]
        a = (r0 * r0).sum(-1) + EPS2D
        b = (r0 * r1).sum(-1)
        c = (r1 * r1).sum(-1) + EPS2D
        det = a * c - b * b
        mean2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
        rx, ry, valid = footprint(mean2d, a, c, det, z, opacities, width, height)
        conic = torch.stack([c / det, -b / det, a / det], -1)
        return mean2d, conic, z, rx, ry, valid

    @staticmethod
    def _pairs(mean2d, conic, opacities, rx, ry, idx, width, height):
        """(Gaussian, pixel x, pixel y) of every pair with alpha >= 1/255, sorted by pixel and, within
        a pixel, in the order of idx (front to back). Not differentiable, as gsplat's tile lists."""
        m2 = mean2d[idx]
        x0 = torch.ceil(m2[:, 0] - rx[idx] - 0.5).clamp(min=0).long()  # pixel centres p + 0.5 inside the box
        x1 = torch.floor(m2[:, 0] + rx[idx] - 0.5).clamp(max=width - 1).long()
        y0 = torch.ceil(m2[:, 1] - ry[idx] - 0.5).clamp(min=0).long()
        y1 = torch.floor(m2[:, 1] + ry[idx] - 0.5).clamp(max=height - 1).long()
        nx = (x1 - x0 + 1).clamp(min=0)
        n = nx * (y1 - y0 + 1).clamp(min=0)
        g = torch.repeat_interleave(torch.arange(len(idx), device=idx.device), n)
        local = torch.arange(len(g), device=idx.device) - (torch.cumsum(n, 0) - n)[g]
        px, py = x0[g] + local % nx[g], y0[g] + local // nx[g]
        gi = idx[g]
        sigma, alpha = _alpha(mean2d[gi], conic[gi], opacities[gi], px, py)
        keep = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_MIN)).squeeze(1)
        pix, order = torch.sort((py * width + px)[keep], stable=True)
        sel = keep[order]
        return gi[sel], px[sel], py[sel], pix

    def render(self, means, quats, scales, opacities, colors, viewmat, K, width, height) -> RenderOutput:
        dev, dt = means.device, means.dtype
        viewmat = torch.as_tensor(viewmat, dtype=dt, device=dev)
        K = torch.as_tensor(K, dtype=dt, device=dev)
        C = colors.shape[-1]
        mean2d, conic, z, rx, ry, valid = self.project(means, quats, scales, opacities, viewmat, K, width, height)
        idx = torch.nonzero(valid).squeeze(1)
        idx = idx[torch.argsort(z.detach()[idx], stable=True)]
        with torch.no_grad():
            gi, px, py, pix = self._pairs(
                mean2d.detach(), conic.detach(), opacities.detach(), rx, ry, idx, width, height
            )
            first = torch.ones_like(pix, dtype=torch.bool)
            first[1:] = pix[1:] != pix[:-1]
            seg = torch.cumsum(first.long(), 0) - 1  # each pair's pixel segment
        # one gather of everything a pair needs (one scatter back in the backward pass)
        per = torch.cat([mean2d, conic, opacities[:, None], z[:, None], colors], 1)[gi]
        _, alpha = _alpha(per[:, 0:2], per[:, 2:5], per[:, 5], px, py)
        log_t = torch.log1p(-alpha.double())
        incl = torch.cumsum(log_t, 0)
        excl = incl - log_t
        base = excl[first][seg]  # the sum before each pixel's first pair
        T = torch.exp((excl - base).to(dt))
        alive = (incl - base).detach() > math.log(T_MIN)  # gsplat stops before T would drop to T_MIN
        w = alpha * T * alive
        vals = torch.cat([w[:, None] * per[:, 7:], w[:, None], (w * per[:, 6])[:, None]], 1)
        acc = torch.zeros(height * width, C + 2, dtype=dt, device=dev).index_add(0, pix, vals)
        out_c = acc[:, :C].reshape(height, width, C)
        out_a = acc[:, C].reshape(height, width)
        acc_d = acc[:, C + 1].reshape(height, width)
        depth = acc_d / out_a.clamp(min=1e-6) * (out_a > 1e-6).to(dt)
        return RenderOutput(out_c, out_a, depth)


def fov_clamped(x, y, zs, K, width, height):
    """Camera-frame x, y (N,) at depth zs clamped to 1.3x the field of view: where gsplat evaluates
    the projection's Jacobian, so Gaussians far outside the image do not blow up."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_xn), lim_xp)
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_yn), lim_yp)
    return tx, ty


@torch.no_grad()
def footprint(mean2d, a, c, det, z, opacities, width, height):
    """gsplat's culling: the half-extents (rx, ry) in pixels of each Gaussian's opacity-aware box (its
    alpha is below 1/255 outside it; 2D covariance [[a, b], [b, c]] with determinant det) and whether
    it is drawn at all (in the depth range, inside the image, opaque enough)."""
    extend = torch.clamp(torch.sqrt(2 * torch.log((opacities / ALPHA_MIN).clamp(min=1.0))), max=3.33)
    rx = torch.ceil(extend * torch.sqrt(a.clamp(min=0)))
    ry = torch.ceil(extend * torch.sqrt(c.clamp(min=0)))
    u, v = mean2d.unbind(-1)
    valid = (
        (z > NEAR)
        & (z < FAR)
        & (det > 0)
        & (opacities >= ALPHA_MIN)
        & ((rx > 0) | (ry > 0))
        & (u + rx > 0)
        & (u - rx < width)
        & (v + ry > 0)
        & (v - ry < height)
    )
    return rx, ry, valid


def _alpha(mean2d, conic, opacities, px, py):
    """(sigma, alpha) of Gaussians (one per pair) at pixel centres (px + 0.5, py + 0.5)."""
    dx = px.to(mean2d.dtype) + 0.5 - mean2d[:, 0]
    dy = py.to(mean2d.dtype) + 0.5 - mean2d[:, 1]
    sigma = 0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) + conic[:, 1] * dx * dy
    return sigma, torch.clamp(opacities * torch.exp(-sigma), max=ALPHA_MAX)


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
