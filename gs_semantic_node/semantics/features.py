"""Instance features distilled into the Gaussians (SAGA / Gaussian Grouping style).

Per keyframe, the map's N-channel `features` are rendered through the active rasterizer (gsplat
or the CPU reference) and trained with a supervised contrastive loss on sampled pixels: pixels of
the same 2D mask attract, pixels of different masks repel. Geometry is detached, so only the
features move. Because every view pulls the same Gaussians, features agree across views even when
the 2D masks (and their ids) do not; the registry uses them to keep touching instances of the
same class apart.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..mapping.mapper import Keyframe, Mapper


def pixel_labels(masks: list, H: int, W: int, device) -> torch.Tensor:
    """(H, W) int64: index of the smallest mask covering each pixel (the most specific
    segment), -1 where no mask is."""
    lab = torch.full((H, W), -1, dtype=torch.int64, device=device)
    if not masks:
        return lab
    area = [int(np.asarray(m).sum()) for m in masks]
    for i in sorted(range(len(masks)), key=lambda i: -area[i]):  # smallest written last
        m = torch.as_tensor(np.asarray(masks[i]), device=device)
        if m.shape != (H, W):
            m = F.interpolate(m[None, None].float(), size=(H, W), mode="nearest")[0, 0] > 0.5
        lab[m.bool()] = i
    return lab


def contrastive_loss(f: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al.) over L2-normalised rows of f with labels y."""
    f = F.normalize(f, dim=-1)
    logits = f @ f.T / temperature
    eye = torch.eye(len(y), dtype=torch.bool, device=f.device)
    logits = logits.masked_fill(eye, -1e9)
    pos = (y[:, None] == y[None]) & ~eye
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has = pos.any(1)
    if not bool(has.any()):
        return f.sum() * 0
    return -((log_prob * pos).sum(1)[has] / pos.sum(1)[has]).mean()


def distill(
    mapper: Mapper, kf: Keyframe, masks: list, iters: int, pixels: int = 1024, temperature: float = 0.1, seed: int = 0
) -> list[float]:
    """A few feature-only optimisation steps on one keyframe; returns the losses."""
    gmap = mapper.map
    if iters <= 0 or len(gmap) == 0 or len(masks) < 2:
        return []
    H, W = kf.camera.height, kf.camera.width
    lab = pixel_labels(masks, H, W, mapper.device).reshape(-1)
    cand = torch.nonzero(lab >= 0)[:, 0]
    if len(cand) < 8 or len(torch.unique(lab[cand])) < 2:
        return []
    g = torch.Generator(device="cpu").manual_seed(seed + kf.index)
    opt = gmap.optimizers["features"]
    losses = []
    for _ in range(iters):
        pick = cand[torch.randperm(len(cand), generator=g)[:pixels].to(cand.device)]
        out = mapper.render(kf, colors=gmap.params["features"], detach_geometry=True)
        f = out.colors.reshape(-1, out.colors.shape[-1])[pick]
        loss = contrastive_loss(f, lab[pick], temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def object_features(features: np.ndarray, object_id: np.ndarray, ids) -> dict[int, np.ndarray]:
    """Mean L2-normalised Gaussian feature per object id (unit length)."""
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-8)
    out = {}
    for o in ids:
        sel = object_id == o
        if sel.any():
            v = f[sel].mean(0)
            out[o] = v / max(float(np.linalg.norm(v)), 1e-8)
    return out
