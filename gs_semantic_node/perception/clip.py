"""CLIP embeddings through open_clip: one vector per mask from masked + context crops
(OpenMask3D-style multi-scale), batched; text embeddings cached."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..types import Frame
from .base import Mask, l2n


def load_clip(model_name: str, pretrained: str, device: str = "cpu"):
    import open_clip
    if not pretrained:
        raise ValueError("perception.clip_pretrained is empty: give a local open_clip checkpoint path "
                         f"for {model_name} (no weights are downloaded at run time)")
    looks_like_path = "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if looks_like_path and not Path(pretrained).is_file():
        raise FileNotFoundError(f"CLIP checkpoint for {model_name} not found at {pretrained!r}")
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


def register_tiny_clip(name: str = "tiny-clip-test") -> str:
    """Register a tiny open_clip architecture (random init) for CPU tests of the real code path."""
    import open_clip
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    d = Path(tempfile.mkdtemp(prefix="tinyclip"))
    (d / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d)
    return name


class ClipEmbedder:
    def __init__(self, model, preprocess, tokenizer, device: str = "cpu", scales=(1.0, 1.5), batch: int = 64):
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.device = torch.device(device)
        self.scales = tuple(scales)
        self.batch = batch
        self.dim = int(model.text_projection.shape[1] if hasattr(model, "text_projection") and
                       model.text_projection is not None else model.visual.output_dim)
        self._text_cache: dict[str, np.ndarray] = {}

    def crops(self, rgb: np.ndarray, m: Mask) -> list:
        from PIL import Image
        H, W = rgb.shape[:2]
        x0, y0, x1, y1 = m.bbox()
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        out = []
        for i, s in enumerate(self.scales):
            a0, b0 = int(max(0, cx - s * w / 2)), int(max(0, cy - s * h / 2))
            a1, b1 = int(min(W, cx + s * w / 2 + 1)), int(min(H, cy + s * h / 2 + 1))
            crop = rgb[b0:b1, a0:a1].copy()
            if i == 0:   # tight crop: background greyed out so CLIP sees the object alone
                crop[~m.mask[b0:b1, a0:a1]] = 127
            out.append(Image.fromarray(crop))
        return out

    @torch.no_grad()
    def embed_masks(self, frame: Frame, masks: list[Mask]) -> np.ndarray:
        if not masks:
            return np.zeros((0, self.dim), np.float32)
        ims = [c for m in masks for c in self.crops(frame.rgb, m)]
        feats = []
        for i in range(0, len(ims), self.batch):
            x = torch.stack([self.preprocess(im) for im in ims[i:i + self.batch]]).to(self.device)
            feats.append(torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1).cpu())
        f = torch.cat(feats).reshape(len(masks), len(self.scales), -1).mean(1)
        return l2n(f.numpy())

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            tok = self.tokenizer([f"a photo of {t}" for t in missing]).to(self.device)
            e = l2n(self.model.encode_text(tok).float().cpu().numpy())
            self._text_cache.update(zip(missing, e))
        return np.stack([self._text_cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
