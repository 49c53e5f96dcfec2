"""SAM mask generation: batched point/box prompts, filtering and NMS on the model's device,
and map-guided prompting (boxes of known objects first, a sparse grid only where unexplained)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..types import Frame
from .base import Mask
from .sam_attention import set_sam_attention

# SAM's three multimask outputs, from the smallest to the largest region
MULTIMASK_LEVELS = ("subpart", "part", "object")


def load_sam(model_type: str, checkpoint: str):
    if model_type == "vit_t":
        try:
            from mobile_sam import sam_model_registry
        except ImportError as e:
            raise RuntimeError("perception.sam_model_type 'vit_t' needs the 'mobile_sam' package") from e
    else:
        from segment_anything import sam_model_registry
    if model_type not in sam_model_registry:
        raise ValueError(f"unknown SAM model type {model_type!r}: {sorted(sam_model_registry)}")
    if not checkpoint or not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f"SAM checkpoint for {model_type} not found at {checkpoint!r}: download the official "
            f"checkpoint (e.g. sam_{model_type}_*.pth) and set perception.sam_checkpoint"
        )
    return sam_model_registry[model_type](checkpoint=checkpoint)


def tiny_sam(img_size: int = 64, seed: int = 0):
    """A randomly initialised SAM small enough for CPU tests (same classes as the real ones)."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    dim = 32
    enc = ImageEncoderViT(
        img_size=img_size,
        patch_size=16,
        embed_dim=dim,
        depth=1,
        num_heads=2,
        out_chans=dim,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=0,
        global_attn_indexes=(),
    )
    emb = img_size // 16
    pe = PromptEncoder(
        embed_dim=dim, image_embedding_size=(emb, emb), input_image_size=(img_size, img_size), mask_in_chans=4
    )
    dec = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
        transformer_dim=dim,
        iou_head_depth=1,
        iou_head_hidden_dim=16,
    )
    return Sam(image_encoder=enc, prompt_encoder=pe, mask_decoder=dec).eval()


class SamMaskGenerator:
    def __init__(
        self,
        model,
        device: str = "cpu",
        points_per_side: int = 16,
        pred_iou_thresh: float = 0.8,
        stability_thresh: float = 0.9,
        nms_iou: float = 0.7,
        map_guided: bool = True,
        batch: int | None = None,
        min_pixels: int = 20,
        precision: str = "auto",
        attention: str = "sdpa",
    ):
        from segment_anything import SamPredictor

        self.device = torch.device(device)
        set_sam_attention(model, attention)
        self.predictor = SamPredictor(model.to(self.device))
        self.pps, self.iou_t, self.stab_t, self.nms_iou = points_per_side, pred_iou_thresh, stability_thresh, nms_iou
        # prompts per decoder call: the decoder repeats the image embedding per prompt (memory),
        # plentiful on a GPU, scarce on a CPU
        batch = batch or (256 if self.device.type == "cuda" else 64)
        self.map_guided, self.batch, self.min_pixels = map_guided, batch, min_pixels
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"perception.sam_precision must be auto|fp32|bf16, got {precision!r}")
        # bf16 autocast on CUDA (bench perception, bench/RESULTS.md); CPUs stay in fp32
        self.bf16 = self.device.type == "cuda" and precision in ("auto", "bf16")

    def generate(self, frame: Frame, prompts: np.ndarray | None = None) -> list[Mask]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            return self._generate(frame, prompts)

    def grid(self, W: int, H: int, prompts: np.ndarray | None) -> np.ndarray:
        s = (np.arange(self.pps) + 0.5) / self.pps
        pts = np.stack(np.meshgrid(s * W, s * H), -1).reshape(-1, 2)
        if self.map_guided and prompts is not None and len(prompts):
            inside = np.zeros(len(pts), bool)
            for x0, y0, x1, y1 in prompts:
                inside |= (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
            pts = pts[~inside][::2]  # sparse grid only for what the map does not explain yet
        return pts

    def _decode(self, points, boxes, multimask: bool):
        """Prompt encoder + mask decoder only: low-resolution logits, no upsampling yet."""
        model, p = self.predictor.model, self.predictor
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
        return model.mask_decoder(
            image_embeddings=p.features,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    @torch.no_grad()
    def _generate(self, frame: Frame, prompts: np.ndarray | None = None) -> list[Mask]:
        """Filtering (predicted IoU, stability, area) and NMS run on the decoder's low-resolution
        logits on the device; only the surviving masks are upsampled to the image. The stock
        generator upsamples every candidate and post-processes them on the CPU."""
        from torchvision.ops import batched_nms, masks_to_boxes

        p = self.predictor
        p.set_image(frame.rgb)
        H, W = frame.rgb.shape[:2]
        all_logits, all_iou, all_level = [], [], []
        if self.map_guided and prompts is not None and len(prompts):
            boxes = p.transform.apply_boxes_torch(
                torch.as_tensor(prompts, dtype=torch.float32, device=self.device), (H, W)
            )
            for i in range(0, len(boxes), self.batch):
                lg, iou = self._decode(None, boxes[i : i + self.batch], False)
                all_logits.append(lg[:, 0])
                all_iou.append(iou[:, 0])
                all_level.append(torch.full((lg.shape[0],), 2, device=self.device))
        pts = torch.as_tensor(self.grid(W, H, prompts), dtype=torch.float32, device=self.device)
        coords = p.transform.apply_coords_torch(pts, (H, W))[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int64, device=self.device)
        for i in range(0, len(coords), self.batch):
            lg, iou = self._decode((coords[i : i + self.batch], labels[i : i + self.batch]), None, True)
            all_logits.append(lg.flatten(0, 1))
            all_iou.append(iou.flatten())
            all_level.append(torch.arange(3, device=self.device).repeat(lg.shape[0]))
        if not all_logits:
            return []
        logits, iou, level = torch.cat(all_logits).float(), torch.cat(all_iou).float(), torch.cat(all_level)
        # the image occupies the top-left input_size/4 of the 256x256 low-res grid
        lh, lw = [
            max(1, (x * logits.shape[-1] + p.model.image_encoder.img_size - 1) // p.model.image_encoder.img_size)
            for x in p.input_size
        ]
        logits = logits[:, :lh, :lw]
        hi, lo = (logits > 1.0).flatten(1).sum(1), (logits > -1.0).flatten(1).sum(1)
        stability = hi.float() / lo.float().clamp(min=1)
        binm = logits > 0
        px = (H / lh) * (W / lw)  # image pixels per low-res cell
        keep = (iou >= self.iou_t) & (stability >= self.stab_t) & (binm.flatten(1).sum(1) * px >= self.min_pixels)
        if not bool(keep.any()):
            return []
        logits, binm, iou, level = logits[keep], binm[keep], iou[keep], level[keep]
        boxes = masks_to_boxes(binm).float() * torch.tensor([W / lw, H / lh, W / lw, H / lh], device=self.device)
        sel = batched_nms(boxes, iou, torch.zeros_like(level), self.nms_iou)
        full = torch.nn.functional.interpolate(logits[sel][:, None], (H, W), mode="bilinear", align_corners=False)
        masks = (full[:, 0] > 0).cpu().numpy()
        return [
            Mask(m, float(s), MULTIMASK_LEVELS[int(lv)])
            for m, s, lv in zip(masks, iou[sel].cpu().tolist(), level[sel].cpu().tolist())
            if m.sum() >= self.min_pixels
        ]
