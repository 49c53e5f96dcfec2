"""SAM's image-encoder attention through torch's fused scaled_dot_product_attention.

The stock ViT attention materialises the full attention matrix, adds the decomposed relative
position terms to it and runs softmax separately (in fp32 under autocast): for vit_h's global
layers that is 16 heads x 4096 x 4096 per frame, written and read several times. The fused call
takes the relative-position terms as an additive mask; where a fused kernel applies (CUDA), the
softmax is never materialised; it is faster on a CPU too (bench/RESULTS.md). Same weights,
same result up to float rounding (tests/perception/test_perception.py); stock attention stays one switch away
(perception.sam_attention) and is what the stock generator in the bench runs.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _rel_pos_bias(q: torch.Tensor, block, H: int, W: int) -> torch.Tensor:
    """(B*heads, H*W, H*W) additive bias: segment_anything's decomposed relative positions of `block`."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    Rh = get_rel_pos(H, H, block.rel_pos_h)
    Rw = get_rel_pos(W, W, block.rel_pos_w)
    Bh, _, dim = q.shape
    r_q = q.reshape(Bh, H, W, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh.to(q.dtype))
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw.to(q.dtype))
    return (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(Bh, H * W, H * W)


def _sdpa_forward(self, x: torch.Tensor) -> torch.Tensor:
    B, H, W, _ = x.shape
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, heads, N, head_dim)
    bias = None
    if self.use_rel_pos:
        bias = _rel_pos_bias(q.reshape(B * self.num_heads, H * W, -1), self, H, W)
        bias = bias.view(B, self.num_heads, H * W, H * W).to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
    out = out.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


def set_sam_attention(model, mode: str) -> int:
    """Switch every attention block of a segment_anything ViT image encoder to 'sdpa' or back to
    'stock'; returns how many blocks it touched (0 for encoders it does not know, e.g. MobileSAM's)."""
    if mode not in ("sdpa", "stock"):
        raise ValueError(f"perception.sam_attention must be sdpa|stock, got {mode!r}")
    try:
        from segment_anything.modeling.image_encoder import Attention
    except ImportError:
        return 0
    n = 0
    for mod in model.image_encoder.modules():
        if type(mod) is Attention:
            if mode == "sdpa":
                mod.forward = types.MethodType(_sdpa_forward, mod)
            elif "forward" in mod.__dict__:
                del mod.forward
            n += 1
    return n
