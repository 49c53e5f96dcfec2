"""CLIP embeddings through open_clip: one vector per mask from masked + context crops
(OpenMask3D-style multi-scale) cut on the model's device, batched; text embeddings cached."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..types import Frame
from .base import Mask, TextCache, l2n, noun_phrase


def load_clip(model_name: str, pretrained: str, device: str = "cpu"):
    import open_clip

    if not pretrained:
        raise ValueError(
            "perception.clip_pretrained is empty: give a local open_clip checkpoint path "
            f"for {model_name} (no weights are downloaded at run time)"
        )
    looks_like_path = "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if looks_like_path and not Path(pretrained).is_file():
        raise FileNotFoundError(f"CLIP checkpoint for {model_name} not found at {pretrained!r}")
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


def register_tiny_clip(name: str = "tiny-clip-test") -> str:
    """Register a tiny open_clip architecture (random init) for CPU tests of the real code path."""
    import open_clip

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
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
        self.dim = int(
            model.text_projection.shape[1]
            if hasattr(model, "text_projection") and model.text_projection is not None
            else model.visual.output_dim
        )
        self.embed_text = TextCache(self._encode_text, self.dim)
        pc = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = pc.get("size", getattr(model.visual, "image_size", 224))
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.mean = torch.tensor(pc.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=self.device)[:, None, None]
        self.std = torch.tensor(pc.get("std", (0.26862954, 0.26130258, 0.27577711)), device=self.device)[:, None, None]

    def crop_boxes(self, masks: torch.Tensor) -> torch.Tensor:
        """(M*S, 5) roi rows [mask index, x0, y0, x1, y1]: a square around each mask's box per
        scale (no object cut off by a centre crop; context grows with the scale)."""
        ys, xs = masks.any(2), masks.any(1)  # (M,H), (M,W); empty -> 0-size box
        H, W = ys.shape[1], xs.shape[1]
        b = torch.stack(
            [
                xs.float().argmax(1),
                ys.float().argmax(1),
                W - 1 - xs.flip(1).float().argmax(1),
                H - 1 - ys.flip(1).float().argmax(1),
            ],
            1,
        ).float()
        c = torch.stack([b[:, 0] + b[:, 2] + 1, b[:, 1] + b[:, 3] + 1], 1) / 2
        side = torch.maximum(b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1).clamp(min=4)
        s = torch.tensor(self.scales, device=masks.device)
        h = (side[:, None] * s[None] / 2).reshape(-1, 1)  # (M*S, 1)
        c = c.repeat_interleave(len(self.scales), 0)
        idx = torch.arange(len(masks), device=masks.device).repeat_interleave(len(self.scales))[:, None].float()
        return torch.cat([idx, c - h, c + h], 1)

    @torch.no_grad()
    def embed_masks(self, frame: Frame, masks: list[Mask]) -> np.ndarray:
        """Crops are cut and resized on the model's device in one roi_align per batch; the
        first scale greys out everything outside the mask so CLIP sees the object alone."""
        from torchvision.ops import roi_align

        if not masks:
            return np.zeros((0, self.dim), np.float32)
        img = torch.from_numpy(np.ascontiguousarray(frame.rgb)).to(self.device).permute(2, 0, 1).float()[None] / 255
        mt = torch.from_numpy(np.stack([m.mask for m in masks])).to(self.device)
        boxes = self.crop_boxes(mt)
        mstack = mt[:, None].float()
        S = len(self.scales)
        out = []
        for i in range(0, len(boxes), self.batch):
            b = boxes[i : i + self.batch]
            crop = roi_align(img, torch.cat([torch.zeros_like(b[:, :1]), b[:, 1:]], 1), self.size, aligned=True)
            m = roi_align(mstack, b, self.size, aligned=True)  # column 0 of b = mask index
            tight = ((torch.arange(i, i + len(b), device=self.device) % S) == 0)[:, None, None, None]
            grey = torch.full_like(crop, 0.5)
            crop = torch.where(tight, crop * m + grey * (1 - m), crop)
            x = (crop - self.mean) / self.std
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                f = self.model.encode_image(x)
            out.append(torch.nn.functional.normalize(f.float(), dim=-1))
        f = torch.cat(out).reshape(len(masks), S, -1).mean(1)
        return l2n(f.cpu().numpy())

    @torch.no_grad()
    def _encode_text(self, texts: list[str]) -> np.ndarray:
        tok = self.tokenizer([f"a photo of {noun_phrase(t)}" for t in texts]).to(self.device)
        return l2n(self.model.encode_text(tok).float().cpu().numpy())
