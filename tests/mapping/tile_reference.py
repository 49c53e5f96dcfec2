"""The tile rasterizer the vectorised CPU reference (mapping.rasterizer.TorchRasterizer) is checked against:
gsplat's algorithm written out plainly (3x3 covariance products, a Python loop over 16x16 tiles, each
pixel compositing every Gaussian of its tile front to back), slow but obviously what gsplat does. The
frustum clamp and culling rules (`rasterizer.fov_clamped`, `footprint`) are shared; test_gsplat_parity
checks them against gsplat itself."""

import math

import torch

from gs_semantic_node.mapping.rasterizer import (
    ALPHA_MAX,
    ALPHA_MIN,
    EPS2D,
    NEAR,
    T_MIN,
    RenderOutput,
    footprint,
    fov_clamped,
    quat_to_rotmat,
)

TILE = 16


def project(means, quats, scales, opacities, viewmat, K, width, height):
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ R.T + t
    x, y, z = mc.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    Rg = quat_to_rotmat(quats)
    M = Rg * scales[:, None, :]
    cov_w = M @ M.transpose(1, 2)
    cov_c = R @ cov_w @ R.T
    zs = z.clamp(min=NEAR)
    tx, ty = fov_clamped(x, y, zs, K, width, height)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2], -1).reshape(-1, 2, 3)
    cov2 = J @ cov_c @ J.transpose(1, 2)
    cov2 = cov2 + EPS2D * torch.eye(2, dtype=cov2.dtype)
    a, b, c = cov2[:, 0, 0], cov2[:, 0, 1], cov2[:, 1, 1]
    det = a * c - b * b
    mean2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    rx, ry, valid = footprint(mean2d, a, c, det, z, opacities, width, height)
    conic = torch.stack([c / det, -b / det, a / det], -1)
    return mean2d, conic, z, rx, ry, valid


def render(means, quats, scales, opacities, colors, viewmat, K, width, height) -> RenderOutput:
    dev, dt = means.device, means.dtype
    viewmat = torch.as_tensor(viewmat, dtype=dt, device=dev)
    K = torch.as_tensor(K, dtype=dt, device=dev)
    C = colors.shape[-1]
    mean2d, conic, z, rx, ry, valid = project(means, quats, scales, opacities, viewmat, K, width, height)
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
