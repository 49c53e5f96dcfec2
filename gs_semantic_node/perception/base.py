"""The two small interfaces the rest of the pipeline sees: masks in, one vector per mask/text out."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..types import Frame

LEVELS = ("object", "part", "subpart")


@dataclass
class Mask:
    mask: np.ndarray  # (H, W) bool
    score: float  # generator's confidence
    level: str = "object"  # object | part | subpart

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
        """(T, dim) L2-normalised; a bare noun is read as a noun phrase (`noun_phrase`)."""


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


class TextCache:
    """Bounded LRU of text embeddings, safe across service threads. Instructions repeat, so hits
    are the common case; the bound keeps a node that runs for weeks from growing with every
    distinct sentence it was ever asked. `encode` runs outside the lock (it is the slow part)."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], dim: int, size: int = 4096):
        self.encode, self.dim, self.size = encode, dim, max(1, size)
        self._d: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._d)

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for t in dict.fromkeys(texts):
                if t in self._d:
                    self._d.move_to_end(t)
                    found[t] = self._d[t]
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            vecs = np.asarray(self.encode(missing), dtype=np.float32)
            found.update(zip(missing, vecs))
            with self._lock:
                self._d.update(zip(missing, vecs))
                while len(self._d) > self.size:
                    self._d.popitem(last=False)
        return np.stack([found[t] for t in texts])


_DETERMINERS = {
    "a",
    "an",
    "the",
    "some",
    "any",
    "this",
    "that",
    "these",
    "those",
    "my",
    "your",
    "our",
    "his",
    "her",
    "their",
    "its",
    "one",
    "two",
    "three",
    "four",
    "five",
    "every",
    "each",
    "no",
}


def noun_phrase(text: str) -> str:
    """'can' -> 'a can', 'apple' -> 'an apple'; phrases with a determiner and plurals stay as they are.
    A bare word is ambiguous to a text encoder ("can" the verb: MiniLM puts it at cosine 0.36-0.46
    from "a soda can", "a metal can", "a tin can"; "a can" at 0.63-0.72), and the object side is what
    things look like, not bare words."""
    t = " ".join(text.split())
    words = t.lower().split()
    if not words or words[0] in _DETERMINERS or words[0].isdigit():
        return t
    last = words[-1]
    if last.endswith("s") and not last.endswith(("ss", "us", "is")):
        return t
    return ("an " if words[0][0] in "aeiou" else "a ") + t
