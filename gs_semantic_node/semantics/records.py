"""What the registry keeps per object: its best views (weight, embedding) and when it was seen.
Column 0 of the per-Gaussian votes is BACKGROUND (what no mask explained)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BACKGROUND = 0


@dataclass
class ObjectRecord:
    id: int
    views: list = field(default_factory=list)  # (weight, embedding), best top-k kept
    last_seen: float = 0.0
    n_masks: int = 0

    def embedding(self) -> np.ndarray | None:
        if not self.views:
            return None
        w = np.array([v[0] for v in self.views], dtype=np.float32)
        e = (self.view_embeddings() * w[:, None]).sum(0)
        return e / max(np.linalg.norm(e), 1e-8)

    def view_embeddings(self) -> np.ndarray | None:
        """(k, D) the kept views' embeddings, best first."""
        return np.stack([v[1] for v in self.views]) if self.views else None

    def add_view(self, weight: float, emb: np.ndarray, k: int):
        self.views.append((float(weight), np.asarray(emb, np.float32)))
        self.views.sort(key=lambda v: -v[0])
        del self.views[k:]


def appeared_where_free(appeared, members, share: float) -> bool:
    """Whether `share` of these Gaussians (a numpy or torch mask / index) were seeded where earlier views saw free
    space (GaussianMap.state["appeared"]): an object put down there, not one first looked at."""
    a = appeared[members]
    return len(a) > 0 and float(a.mean()) >= share


def free_id(records: dict, K: int, reserved: set = frozenset()) -> int | None:
    """The lowest vote column (object id) no record holds nor is reserved, None when all K are taken."""
    for i in range(1, K):
        if i not in records and i not in reserved:
            return i
    return None
