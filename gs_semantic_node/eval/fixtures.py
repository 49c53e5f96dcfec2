"""Builders the benchmarks measure on: synthetic maps and objects, grown copies of a saved map,
randomly initialised SAM / CLIP (and CLIP checkpoints on disk for the node's own loader),
rectangular masks, and instruction sets whose target phrases all differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import DEFAULT_VOCABULARY, MapperConfig
from ..mapping.mapper import Mapper, backproject
from ..perception.base import Mask, l2n


def rect_masks(W: int, H: int, n: int, seed: int = 0) -> list[Mask]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = int(rng.integers(W // 20, W // 4)), int(rng.integers(H // 20, H // 4))
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        m = np.zeros((H, W), bool)
        m[y : y + h, x : x + w] = True
        out.append(Mask(m, 1.0, "object"))
    return out


def random_sam(model_type: str):
    if model_type == "tiny":
        from ..perception.sam import tiny_sam

        return tiny_sam(64)
    from segment_anything import sam_model_registry

    return sam_model_registry[model_type](checkpoint=None)  # random init: timing only


def random_clip(model_name: str, dev: torch.device):
    import open_clip

    if model_name == "tiny":
        from ..perception.clip import register_tiny_clip

        model_name = register_tiny_clip()
    model, _, pre = open_clip.create_model_and_transforms(model_name, pretrained=None, device=dev)
    from ..perception.clip import ClipEmbedder

    return ClipEmbedder(model.eval(), pre, open_clip.get_tokenizer(model_name), device=str(dev))


def synthetic_map(frame, n: int, width: int, height: int, device: str = "auto", seed: int = 0):
    """A mapper holding `n` Gaussians on the frame's observed surface (jittered copies of its
    back-projected depth), plus the frame as a keyframe: lifting cost at a chosen map size."""
    cfg = MapperConfig(width=width, height=height, device=device, max_gaussians=max(n, 1))
    m = Mapper(cfg, seed=seed)
    kf = m.prepare(frame)
    pts = backproject(kf.depth, kf.camera, kf.T_world_cam)[kf.depth > 0]
    rgb = kf.rgb[kf.depth > 0]
    g = torch.Generator(device=m.device).manual_seed(seed)
    idx = torch.randint(0, pts.shape[0], (n,), generator=g, device=m.device)
    jitter = torch.randn(n, 3, generator=g, device=m.device) * 0.003
    scales = torch.full((n, 3), 0.004, device=m.device)
    m.map.append(pts[idx] + jitter, rgb[idx], scales, opacity=0.9)
    m.keyframes.append(kf)
    return m, kf


def grow_map(src: str | Path, dst: str | Path, n: int, seed: int = 0) -> int:
    """Save a copy of a map grown to n Gaussians (the service load test at the issue's map sizes).
    Copies are jittered by half their parent's size and carry its object id, votes, features and
    confidence, so every object keeps its place and label; object records are unchanged."""
    from ..io.mapfile import load_map, save_map

    arrays, records, meta = load_map(src)
    m = len(arrays["means"])
    if m == 0:
        raise ValueError(f"{src} holds no Gaussians to grow")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([np.arange(min(m, n)), rng.integers(0, m, max(0, n - m))])
    out = {k: np.asarray(v)[idx] for k, v in arrays.items()}
    copies = np.arange(n) >= m
    jitter = rng.normal(size=(int(copies.sum()), 3)) * 0.5 * out["scales"][copies]
    out["means"] = out["means"].astype(np.float32)
    out["means"][copies] += jitter.astype(np.float32)
    save_map(dst, out, records, {**meta, "grown_from": str(src), "grown_to": n})
    return n


def random_clip_checkpoint(model: str, out: Path) -> Path:
    """A randomly initialised open_clip checkpoint on disk, loaded by the node's real loading code
    (no weights can be downloaded here; the cost of encoding text does not depend on them)."""
    import open_clip

    path = out / f"random_{model}.pt"
    if not path.is_file():
        m = open_clip.create_model(model, pretrained=None)
        torch.save(m.state_dict(), path)
    return path


PHRASES = ["grab the {}", "pick up the {}", "where is the {}?", "bring me the {} please", "the {} next to the bowl"]
ATTRS = ["", "red ", "small ", "white ", "big ", "green ", "metal ", "wooden "]
MORE = ["", "shiny ", "old ", "plastic ", "blue ", "tiny ", "dirty ", "striped ", "empty ", "heavy "]


def instructions(n: int, vocab: list[str] | None = None) -> list[str]:
    """n instructions whose target phrases all differ (up to 18,000 with the default vocabulary),
    phrased five ways in turn. Text caches are keyed by the target phrase, so each one is new to
    the cache and timing them times the text encoder too."""
    vocab = vocab or DEFAULT_VOCABULARY
    targets = dict.fromkeys(m + b + a + v for m in MORE for b in ATTRS for a in ATTRS for v in vocab if b != a or not b)
    return [PHRASES[i % len(PHRASES)].format(t) for i, t in zip(range(n), targets)]


def synthetic_objects(n_gaussians: int, n_objects: int, dim: int, seed: int = 0) -> list:
    from ..types import OrientedBox, SemanticObject

    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n_gaussians), n_objects - 1, replace=False))
    parts = np.split(np.arange(n_gaussians), cuts)
    objs = []
    for i, idx in enumerate(parts):
        c = rng.uniform(-1, 1, 3)
        objs.append(
            SemanticObject(
                i,
                "object",
                0.9,
                is_background=(i == 0),
                obb=OrientedBox(c, np.eye(3), np.full(3, 0.1)),
                centroid=c,
                num_gaussians=len(idx),
                gaussian_indices=idx,
                embedding=l2n(rng.normal(size=dim).astype(np.float32)),
            )
        )
    return objs
