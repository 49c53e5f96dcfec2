"""2D masks -> per-Gaussian weights ("semantic tracing").

The weight of Gaussian g for mask m is sum over the mask's pixels of g's compositing weight
(opacity x transmittance). That is exactly the gradient of <mask image, rendered channel>
with respect to g's colour in that channel, so one backward pass through whichever rasterizer
is active (gsplat or the CPU reference) gives the whole (N, M) matrix.
"""

from __future__ import annotations

import torch

from ..mapping.mapper import Keyframe, Mapper

CHUNK = 31  # masks per pass (+1 background channel = 32, a gsplat compiled size)


def mask_weights(mapper: Mapper, kf: Keyframe, masks: list) -> torch.Tensor:
    """(N, M+1): column 0 = pixels covered by no mask (background / unexplained), then one per mask."""
    N = len(mapper.map)
    dev = mapper.device
    H, W = kf.camera.height, kf.camera.width
    stack = torch.zeros(len(masks), H, W, device=dev)
    for i, m in enumerate(masks):
        mm = torch.as_tensor(m, device=dev)
        if mm.shape != (H, W):
            mm = torch.nn.functional.interpolate(mm[None, None].float(), size=(H, W), mode="nearest")[0, 0]
        stack[i] = mm.float()
    none = (stack.sum(0) == 0).float()
    targets = torch.cat([none[None], stack], 0)  # (M+1, H, W)
    out = torch.zeros(N, targets.shape[0], device=dev)
    if N == 0:
        return out
    for s in range(0, targets.shape[0], CHUNK + 1):
        t = targets[s : s + CHUNK + 1].permute(1, 2, 0)  # (H, W, c)
        colors = torch.zeros(N, t.shape[-1], device=dev, requires_grad=True)
        r = mapper.render(kf, colors=colors, detach_geometry=True)
        (r.colors * t).sum().backward()
        out[:, s : s + t.shape[-1]] = colors.grad
    return out
