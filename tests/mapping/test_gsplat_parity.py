"""gsplat (CUDA) vs the CPU reference on random scenes: images and gradients.

Tolerances: colour/alpha/depth max abs diff <= 2e-3 (float32; tile-culling edge cases aside),
gradients relative L2 error <= 5e-2 (gsplat's backward accumulates in a different order)."""

import numpy as np
import pytest
import torch

from gs_semantic_node.mapping.rasterizer import GsplatRasterizer, TorchRasterizer

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs CUDA for gsplat (CPU machines: parity runs on the device machine, results in bench/RESULTS.md)",
)
@pytest.mark.parametrize("seed,channels", [(0, 3), (1, 16), (2, 32)])
def test_parity(seed, channels):
    g = torch.Generator().manual_seed(seed)
    n, W, H = 400, 64, 48
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.5, 0.4, 0.3]) + torch.tensor([0, 0, 2.5])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.01
    op = torch.rand(n, generator=g) * 0.8 + 0.1
    col = torch.rand(n, channels, generator=g)
    K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    outs = {}
    for name, r, dev in (("torch", TorchRasterizer(), "cpu"), ("gsplat", GsplatRasterizer(), "cuda")):
        ts = [t.clone().to(dev).requires_grad_(True) for t in (means, quats, scales, op, col)]
        o = r.render(*ts, np.eye(4), K, W, H)
        (o.colors.sum() + o.alpha.sum() + 0.1 * o.depth.sum()).backward()
        outs[name] = ([x.detach().cpu() for x in (o.colors, o.alpha, o.depth)], [t.grad.cpu() for t in ts])
    img_err = [float((a - b).abs().max()) for a, b in zip(outs["torch"][0], outs["gsplat"][0])]
    grad_err = [float((a - b).norm() / (a.norm() + 1e-12)) for a, b in zip(outs["torch"][1], outs["gsplat"][1])]
    print(
        f"parity seed={seed} channels={channels}: max abs image err (colors, alpha, depth) "
        f"{[f'{e:.2e}' for e in img_err]}; rel L2 grad err (means, quats, scales, opacities, colors) "
        f"{[f'{e:.2e}' for e in grad_err]}"
    )
    assert max(img_err) <= 2e-3
    assert max(grad_err) <= 5e-2
