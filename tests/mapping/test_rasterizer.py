"""The vectorised CPU rasterizer against the plain tile rasterizer (tile_reference): images and gradients."""

import numpy as np
import pytest
import tile_reference
import torch

from gs_semantic_node.mapping.rasterizer import TorchRasterizer


def scene(seed, n=400, channels=3, spread=(0.5, 0.4, 0.3), depth=2.5, big=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor(spread) + torch.tensor([0, 0, depth])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.01
    scales[:big] *= 20  # a few covering much of the image
    op = torch.rand(n, generator=g) * 0.8 + 0.1
    col = torch.rand(n, channels, generator=g)
    return [means, quats, scales, op, col]


def render_both(inputs, W=64, H=48, viewmat=np.eye(4)):
    K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    outs = []
    for render in (TorchRasterizer().render, tile_reference.render):
        ts = [t.clone().requires_grad_(True) for t in inputs]
        o = render(*ts, torch.as_tensor(viewmat, dtype=torch.float32), torch.as_tensor(K, dtype=torch.float32), W, H)
        (o.colors.sum() + o.alpha.sum() + 0.1 * o.depth.sum() + (o.colors**2).sum()).backward()
        outs.append(([x.detach() for x in (o.colors, o.alpha, o.depth)], [t.grad for t in ts]))
    return outs


@pytest.mark.parametrize(
    "seed,kw",
    [
        (0, {}),
        (1, {"channels": 16}),
        (2, {"channels": 32}),
        (3, {"big": 20}),  # large Gaussians spanning many tiles
        (4, {"spread": (2.0, 2.0, 2.4)}),  # some behind the camera or outside the view
        (5, {"n": 3000, "spread": (0.3, 0.2, 0.05)}),  # dense: transmittance runs out (T <= 1e-4)
    ],
)
def test_the_vectorised_rasterizer_matches_the_tile_rasterizer(seed, kw):
    (img, grads), (img_ref, grads_ref) = render_both(scene(seed, **kw))
    for a, b in zip(img, img_ref):
        assert float((a - b).abs().max()) < 1e-4
    for a, b in zip(grads, grads_ref):
        assert float((a - b).norm() / (b.norm() + 1e-12)) < 1e-4
    assert float(img[1].max()) > 0.5  # something was drawn


def test_an_empty_view_renders_nothing_and_still_backpropagates():
    inputs = [t.requires_grad_(True) for t in scene(0, n=10)]
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    behind = torch.eye(4)
    behind[2, 3] = -10.0  # every Gaussian behind the camera
    o = TorchRasterizer().render(*inputs, behind, K, 64, 48)
    assert all(float(x.abs().max()) == 0 for x in (o.colors, o.alpha, o.depth))
    o.colors.sum().backward()  # a loss over an empty view is zero, not an error
    assert float(inputs[0].grad.abs().max()) == 0
