"""Build the configured mask generator and embedder (clear errors for anything missing)."""

from __future__ import annotations

from ..config import PerceptionConfig
from ..mapping.mapper import resolve_device
from .oracle import OracleMaskGenerator, TextProxyEmbedder, noise_preset


class NoMasks:
    """perception.masks: none: the map's geometry only, no objects (a recording mapped where no SAM
    checkpoint is at hand; queries then answer that the map holds no objects)."""

    def generate(self, frame, prompts=None) -> list:
        return []


class NoEmbedder:
    """With perception.masks: none there is nothing to embed: no object ever reaches the text side
    (queries answer that the map holds no objects before any text is encoded)."""

    dim = 0

    def embed_masks(self, frame, masks):
        raise RuntimeError("perception.masks: none maps geometry only: there are no masks to embed")

    def embed_text(self, texts):
        raise RuntimeError("perception.masks: none maps geometry only: no text encoder is loaded")


def make_mask_generator(cfg: PerceptionConfig):
    if cfg.masks == "none":
        return NoMasks()
    if cfg.masks == "oracle":
        return OracleMaskGenerator(noise_preset(cfg.oracle_preset), cfg.oracle_seed, cfg.min_mask_pixels)
    if cfg.masks == "sam":
        from .sam import SamMaskGenerator, load_sam

        dev = str(resolve_device(cfg.device))
        return SamMaskGenerator(
            load_sam(cfg.sam_model_type, cfg.sam_checkpoint),
            dev,
            cfg.sam_points_per_side,
            cfg.sam_pred_iou_thresh,
            cfg.sam_stability_thresh,
            cfg.sam_nms_iou,
            cfg.sam_map_guided,
            min_pixels=cfg.min_mask_pixels,
            precision=cfg.sam_precision,
            attention=cfg.sam_attention,
        )
    raise ValueError(f"unknown perception.masks {cfg.masks!r} (oracle | sam | none)")


def make_embedder(cfg: PerceptionConfig):
    if cfg.masks == "none":
        return NoEmbedder()
    if cfg.embedder == "text_proxy":
        kw = {"confusion": cfg.text_proxy_confusion, "seed": cfg.oracle_seed}
        return TextProxyEmbedder.from_gt(cfg.gt_path, **kw) if cfg.gt_path else TextProxyEmbedder(None, **kw)
    if cfg.embedder == "clip":
        from .clip import ClipEmbedder, load_clip

        dev = str(resolve_device(cfg.device))
        return ClipEmbedder(*load_clip(cfg.clip_model, cfg.clip_pretrained, dev), device=dev, scales=cfg.clip_scales)
    raise ValueError(f"unknown perception.embedder {cfg.embedder!r} (text_proxy | clip)")
