"""`gs-semantic bench perception`: per keyframe, our SAM generator (device-side filtering + NMS,
batched prompts, map-guided boxes) against the stock SamAutomaticMaskGenerator, SAM's image encoder
with stock and fused attention, and CLIP per mask. SAM/CLIP carry random weights (timing only: the
cost does not depend on them, but how many masks survive the filters does, so mask counts are printed
beside every time and a "keep-all" setting runs where no filter removes anything)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..mapping.mapper import resolve_device
from ..perception.base import Mask
from .common import Rows, device_name, load_frames, scenes, timed, write_rows
from .fixtures import random_clip, random_sam, rect_masks


def _encoder_rows(rows, sam, model_type: str, frame, dev, repeats: int) -> None:
    """SAM's image encoder alone, with stock and with fused attention (the generators run fused)."""
    from ..perception.sam import SamMaskGenerator

    for attention in ("stock", "sdpa"):
        enc = SamMaskGenerator(sam, str(dev), attention=attention)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=enc.bf16):
            te, _ = timed(lambda: enc.predictor.set_image(frame.rgb), dev, repeats)
        rows.append(
            {
                "what": f"SAM {model_type} image encoder alone ({enc.bf16 and 'bf16' or 'fp32'}, "
                f"{attention} attention)",
                "ms": float(np.median(te)),
            }
        )


def bench_perception(
    frame,
    sam_models: list[str],
    clip_model: str,
    device: str = "auto",
    repeats: int = 3,
    clip_masks: int = 40,
    stock: bool = True,
    stock_keep_all: bool = False,
    report=None,
    encoder_only: bool = False,
) -> list[dict]:
    """Per keyframe: our SAM generator (device-side filtering + NMS, batched prompts) vs the stock
    SamAutomaticMaskGenerator, and CLIP per mask, on one 640x480 frame (`encoder_only`: SAM's image
    encoder rows alone, which a CPU runs in minutes)."""
    from segment_anything import SamAutomaticMaskGenerator

    from ..perception.sam import SamMaskGenerator
    from ..perception.sam_attention import set_sam_attention

    dev = resolve_device(device)
    rows = Rows(report, device_name(dev))
    if encoder_only:
        for mt in sam_models:
            _encoder_rows(rows, random_sam(mt).to(dev).eval(), mt, frame, dev, repeats)
        return list(rows)
    H, W = frame.rgb.shape[:2]
    # what a running map projects into a keyframe: one box per object already known (GT instances)
    inst = frame.gt_instances
    known = None
    if inst is not None:
        boxes = [Mask(inst == i, 1.0).bbox() for i in np.unique(inst) if i > 2 and (inst == i).sum() >= 50]
        known = np.array(boxes, np.float32) if boxes else None
    clip = random_clip(clip_model, dev)
    cmasks = rect_masks(W, H, clip_masks)
    ts, _ = timed(lambda: clip.embed_masks(frame, cmasks), dev, repeats)
    clip_ms = float(np.median(ts))
    rows.append(
        {
            "what": f"CLIP {clip_model} ({len(clip.scales)} crops/mask)",
            "masks": clip_masks,
            "ms": clip_ms,
            "ms_per_mask": clip_ms / clip_masks,
        }
    )
    settings = {"default filters": (0.88, 0.95), "keep-all": (-1e9, 0.0)}
    sams = {}
    for sname, (iou_t, stab_t) in settings.items():  # every model's default row before any keep-all row
        for mt in sam_models:
            sam = sams.setdefault(mt, random_sam(mt).to(dev).eval())
            if sname == "default filters":
                _encoder_rows(rows, sam, mt, frame, dev, repeats)
            for pps in (32, 16):
                gen = SamMaskGenerator(
                    sam, str(dev), points_per_side=pps, pred_iou_thresh=iou_t, stability_thresh=stab_t, map_guided=False
                )
                ts, masks = timed(lambda: gen.generate(frame), dev, repeats)
                rows.append(
                    {
                        "what": f"SAM {mt} ours ({pps}x{pps} points, {gen.bf16 and 'bf16' or 'fp32'})",
                        "filters": sname,
                        "ms": float(np.median(ts)),
                        "masks": len(masks),
                    }
                )
                if pps == 16 and known is not None:
                    guided = SamMaskGenerator(
                        sam,
                        str(dev),
                        points_per_side=pps,
                        pred_iou_thresh=iou_t,
                        stability_thresh=stab_t,
                        map_guided=True,
                    )
                    tg, gm = timed(lambda: guided.generate(frame, known), dev, repeats)
                    rows.append(
                        {
                            "what": f"SAM {mt} ours, map-guided ({len(known)} known-object boxes + "
                            f"{len(guided.grid(W, H, known))} grid points)",
                            "filters": sname,
                            "ms": float(np.median(tg)),
                            "masks": len(gm),
                        }
                    )
                if pps == 16 and sname == "default filters":
                    tf, _ = timed(lambda: clip.embed_masks(frame, gen.generate(frame) or cmasks[:1]), dev, repeats)
                    rows.append(
                        {
                            "what": f"full perception: SAM {mt} ours 16x16 + CLIP on its masks "
                            f"(one stand-in mask when none survive)",
                            "filters": sname,
                            "ms": float(np.median(tf)),
                            "masks": len(masks),
                        }
                    )
            if stock and (sname != "keep-all" or stock_keep_all):  # stock keep-all: over a minute per call
                set_sam_attention(sam, "stock")
                gen = SamAutomaticMaskGenerator(
                    sam, points_per_side=32, pred_iou_thresh=iou_t, stability_score_thresh=stab_t
                )
                n = 1 if sname == "keep-all" else repeats  # the stock path is slow: few calls
                ts, masks = timed(lambda: gen.generate(frame.rgb), dev, n, warmup=0)
                rows.append(
                    {
                        "what": f"SAM {mt} stock SamAutomaticMaskGenerator (32x32, fp32)",
                        "filters": sname,
                        "ms": float(np.median(ts)),
                        "masks": len(masks),
                    }
                )
    return list(rows)


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = load_frames(scenes(a, out)[0])[0]
    rows = bench_perception(
        frame,
        a.sam_models.split(","),
        a.clip_model or "ViT-B-16",
        a.device,
        a.repeats,
        stock_keep_all=a.stock_keep_all,
        encoder_only=a.encoder_only,
        report=lambda r: (out / "perception.json").write_text(json.dumps(r, indent=1)),
    )
    cols = ["what", "filters", "ms", "masks", "ms_per_mask", "device"]
    return write_rows(out, "perception", rows, cols)
