"""`gs-semantic bench lift`: one keyframe's lifting as the pipeline runs it (semantic tracing, the
registry's vote update, the contrastive feature steps) at chosen map sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import SemanticsConfig
from ..perception.base import l2n
from .common import device_name, load_frames, scenes, timed, write_rows
from .fixtures import rect_masks, synthetic_map


def bench_lift(
    frame,
    sizes: list[int],
    width: int,
    height: int,
    n_masks: int = 40,
    device: str = "auto",
    repeats: int = 5,
    emb_dim: int = 512,
) -> list[dict]:
    """One keyframe's lifting as `SemanticMappingPipeline.lift` runs it: semantic tracing, the
    registry's vote update and the contrastive feature steps (the refresh runs every
    `semantics.refresh_every` keyframes, not per keyframe, and is not timed here)."""
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        rows.append(_lift_row(frame, n, width, height, n_masks, device, repeats, emb_dim, rng))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def _lift_row(
    frame,
    n: int,
    width: int,
    height: int,
    n_masks: int,
    device: str,
    repeats: int,
    emb_dim: int,
    rng: np.random.Generator,
) -> dict:
    from ..semantics.features import distill
    from ..semantics.lifting import mask_weights
    from ..semantics.registry import ObjectRegistry

    sc = SemanticsConfig()
    m, kf = synthetic_map(frame, n, width, height, device)
    dev = m.device
    masks = [mk.mask for mk in rect_masks(width, height, n_masks)]
    emb = l2n(rng.normal(size=(n_masks, emb_dim)).astype(np.float32))
    reg = ObjectRegistry(sc, lambda t: l2n(rng.normal(size=(len(t), emb_dim)).astype(np.float32)))
    tw, Wt = timed(lambda: mask_weights(m, kf, masks), dev, repeats)
    tu, _ = timed(lambda: reg.update(m.map, Wt, emb, 0.0, [int(x.sum()) for x in masks]), dev, repeats)
    td, _ = timed(
        lambda: distill(m, kf, masks, sc.feature_iters, sc.feature_pixels, sc.feature_temperature), dev, repeats
    )
    parts = {
        "trace_ms": float(np.median(tw)),
        "registry_update_ms": float(np.median(tu)),
        "distill_ms": float(np.median(td)),
    }
    return {
        "gaussians": len(m.map),
        "resolution": [width, height],
        "masks": n_masks,
        **parts,
        "distill_iters": sc.feature_iters,
        "lift_ms": sum(parts.values()),
        "device": device_name(dev),
        "backend": type(m.raster).__name__,
    }


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    W, H = a.width, a.height
    frame = load_frames(scenes(a, out)[0])[0]
    rows = bench_lift(frame, [int(x) for x in a.sizes.split(",")], W, H, device=a.device, repeats=a.repeats)
    cols = [
        "gaussians",
        "resolution",
        "masks",
        "trace_ms",
        "registry_update_ms",
        "distill_ms",
        "lift_ms",
        "device",
        "backend",
    ]
    return write_rows(out, "lift", rows, cols)
