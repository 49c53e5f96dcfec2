"""Keeping the map under its Gaussian cap by coarsening it instead of punching holes in it.

A robot that maps for long fills any cap. Evicting the least opaque Gaussians costs little while
the evicted ones are redundant, but once the map has outgrown its cap several times it removes
surface the next keyframe sees as unobserved and reseeds, and the map churns into holes
(`bench mapping --max-gaussians N --cap-policy evict|merge`, bench/RESULTS.md). Merging the
Gaussians of one object that share a voxel into one moment-matched Gaussian keeps the surface
covered at a coarser resolution: the voxel is the smallest that brings the map under the target,
so the densest regions give up detail first, and labels never mix across objects.
"""

from __future__ import annotations

import torch

from .gaussians import GaussianMap
from .rasterizer import quat_to_rotmat

# The members' spread counts 1.5x: moment matching alone leaves a tiling of merged Gaussians
# at ~0.3 voxel std, too thin to close (alpha < 0.5 between neighbours) until optimised again.
SPREAD = 1.5


def rotmat_to_quat(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) proper rotations -> (..., 4) wxyz unit quaternions (w >= 0)."""
    # four candidate |components| from the diagonal; the largest gives a well-conditioned division
    d0, d1, d2 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    c = torch.stack([1 + d0 + d1 + d2, 1 + d0 - d1 - d2, 1 - d0 + d1 - d2, 1 - d0 - d1 + d2], -1)
    k = c.argmax(-1, keepdim=True)
    s = 2 * c.gather(-1, k).clamp(min=1e-12).sqrt()[..., 0]
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    q = torch.stack(
        [
            torch.stack([s / 4, d21 / s, d02 / s, d10 / s], -1),
            torch.stack([d21 / s, s / 4, s01 / s, s02 / s], -1),
            torch.stack([d02 / s, s01 / s, s / 4, s12 / s], -1),
            torch.stack([d10 / s, s02 / s, s12 / s, s / 4], -1),
        ],
        -2,
    )
    q = q.gather(-2, k[..., None].expand(*k.shape[:-1], 1, 4))[..., 0, :]
    q = torch.where(q[..., :1] < 0, -q, q)
    return torch.nn.functional.normalize(q, dim=-1)


def voxel_groups(means: torch.Tensor, object_id: torch.Tensor, voxel: float) -> tuple[torch.Tensor, int]:
    """Group index per Gaussian: same voxel and same object."""
    ijk = torch.floor(means / voxel).long()
    keys = torch.cat([ijk, object_id.long()[:, None]], 1)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    return inverse, int(inverse.max()) + 1 if inverse.numel() else 0


def choose_voxel(means: torch.Tensor, object_id: torch.Tensor, target: int, lo: float, steps: int = 14) -> float:
    """Smallest voxel (within 5 %, searched on a log scale above `lo`) whose groups number at most
    `target`; the scene's extent when none does (one group per object then)."""
    hi = float((means.max(0).values - means.min(0).values).max()) + 1e-3
    lo = min(max(lo, 1e-4), hi)
    if voxel_groups(means, object_id, lo)[1] <= target:
        return lo
    for _ in range(steps):
        if hi / lo < 1.05:
            break
        mid = (lo * hi) ** 0.5
        if voxel_groups(means, object_id, mid)[1] <= target:
            hi = mid
        else:
            lo = mid
    return hi


@torch.no_grad()
def merge_in_voxels(gmap: GaussianMap, voxel: float, rows: torch.Tensor | None = None) -> int:
    """Merge the Gaussians (of `rows`, a bool mask; all by default) that share a voxel and an object
    into one each; returns how many the map lost."""
    n = len(gmap)
    idx = torch.arange(n, device=gmap.device) if rows is None else rows.nonzero()[:, 0]
    if idx.numel() < 2:
        return 0
    group, G = voxel_groups(gmap.means.detach()[idx], gmap.state["object_id"][idx], voxel)
    multi = torch.bincount(group, minlength=G)[group] > 1
    idx = idx[multi]
    _, inverse = torch.unique(group[multi], return_inverse=True)
    merge_groups(gmap, idx, inverse)
    return n - len(gmap)


@torch.no_grad()
def merge_groups(gmap: GaussianMap, idx: torch.Tensor, inverse: torch.Tensor) -> None:
    """Replace the Gaussians `idx` by one per group (`inverse`: the group of each).

    The merged Gaussian matches the group's first two moments (the spread widened by SPREAD), each
    member weighted by its opacity x footprint area, so a tiling of small discs on a plane becomes
    one disc in that plane. Colour, features and confidence are weighted means; votes add up,
    since tracing later gives the merged Gaussian the weight of all the pixels its members covered."""
    n = len(gmap)
    if idx.numel() == 0:
        return
    G = int(inverse.max()) + 1
    a = gmap.activated()
    mu_i, op_i, s_i = a["means"][idx], a["opacities"][idx], a["scales"][idx]
    w = op_i * s_i.prod(-1).clamp(min=1e-30) ** (2.0 / 3.0)
    W = torch.zeros(G, device=w.device).index_add_(0, inverse, w).clamp(min=1e-30)
    wn = w / W[inverse]

    def wmean(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        out = torch.zeros(G, flat.shape[1], device=x.device, dtype=flat.dtype)
        out.index_add_(0, inverse, flat * wn[:, None])
        return out.reshape(G, *x.shape[1:])

    mu = wmean(mu_i)
    R = quat_to_rotmat(a["quats"][idx])
    cov_i = R @ torch.diag_embed(s_i**2) @ R.transpose(1, 2)
    dm = mu_i - mu[inverse]
    cov = wmean(cov_i + SPREAD * dm[:, :, None] * dm[:, None, :])
    evals, evecs = torch.linalg.eigh(cov.double())
    flip = torch.tensor([1.0, 1.0, -1.0], dtype=evecs.dtype, device=evecs.device)
    evecs = torch.where(torch.linalg.det(evecs)[:, None, None] < 0, evecs * flip, evecs)
    scales = evals.clamp(min=1e-12).sqrt().float()
    quats = rotmat_to_quat(evecs.float())
    opacity = wmean(op_i).clamp(1e-4, 1 - 1e-4)

    first = torch.full((G,), n, dtype=torch.long, device=idx.device).scatter_reduce_(0, inverse, idx, "amin")
    state = {
        "object_id": gmap.state["object_id"][first],
        "seen_from": gmap.state["seen_from"][first],
        "confidence": wmean(gmap.state["confidence"][idx]),
        "votes": torch.zeros(G, gmap.state["votes"].shape[1], device=gmap.device).index_add_(
            0, inverse, gmap.state["votes"][idx]
        ),
    }
    features = wmean(gmap.params["features"][idx])
    sh0 = wmean(gmap.params["sh0"][idx])

    drop = torch.zeros(n, dtype=torch.bool, device=gmap.device)
    drop[idx] = True
    gmap.remove(drop)
    gmap.append(mu, torch.zeros_like(mu), scales, quats=quats, opacity=opacity, features=features, sh0=sh0, state=state)
