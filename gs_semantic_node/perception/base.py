"""The two small interfaces the rest of the pipeline sees: masks in, one vector per mask/text out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..types import Frame

LEVELS = ("object", "part", "subpart")


@dataclass
class Mask:
    mask: np.ndarray          # (H, W) bool
    score: float              # generator's confidence
    level: str = "object"     # object | part | subpart

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def bbox(self) -> tuple[int, int, int, int]:
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class MaskGenerator(Protocol):
    def generate(self, frame: Frame, prompts: np.ndarray | None = None) -> list[Mask]:
        """Masks for one image. `prompts` (K,4) xyxy boxes of known objects projected into the
        view (map-guided prompting); generators that cannot use them ignore them."""


class Embedder(Protocol):
    dim: int

    def embed_masks(self, frame: Frame, masks: list[Mask]) -> np.ndarray:
        """(M, dim) L2-normalised, one per mask."""

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """(T, dim) L2-normalised."""


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
