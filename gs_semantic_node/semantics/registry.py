"""Object registry: masks -> discrete objects, every Gaussian -> exactly one object id.

A small facade over the three seams of the work: association (each keyframe's masks join objects,
found new ones or vote for none: semantics/association.py), refinement (every few keyframes: split,
merge, smooth, peel: semantics/refinement.py) and description (labels and boxes for the readers:
semantics/description.py). Votes live per Gaussian per object column in the map's state
(column 0 = unexplained background), so densify/prune carry them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import SemanticsConfig
from ..mapping.gaussians import GaussianMap
from ..types import SemanticObject
from .association import assign, associate
from .changes import ChangeTracker
from .description import Labeller, describe
from .records import BACKGROUND, ObjectRecord, appeared_where_free
from .refinement import merge_duplicates, peel_support, smooth_labels, split_apart

__all__ = ["BACKGROUND", "ObjectRecord", "ObjectRegistry"]


class ObjectRegistry:
    def __init__(self, cfg: SemanticsConfig, embed_text=None):
        self.cfg = cfg
        self.records: dict[int, ObjectRecord] = {}
        self.labels = Labeller(cfg, embed_text)
        self.objects: list[SemanticObject] = []  # last refreshed, for readers
        self.keyframes = 0
        self.changes = self.new_changes()
        self.due = False  # an object became reportable: readers should see it now, not at the next refresh

    def update(
        self, gmap: GaussianMap, W: torch.Tensor, embeddings: np.ndarray, stamp: float, areas: list[int] | None = None
    ) -> list[int]:
        """One keyframe's masks: W (N, M+1) from lifting, embeddings (M, D). The object id per mask (-1: none)."""
        self.keyframes += 1
        before = {i: r.n_masks for i, r in self.records.items()}
        out = associate(self.records, gmap, W, embeddings, stamp, areas, self.cfg, self.changes.reserved())
        self.assign(gmap)
        k = self.cfg.min_object_masks
        self.due |= any(r.n_masks >= k > before.get(i, 0) for i, r in self.records.items())
        self.due |= self._appeared(gmap, [i for i, r in self.records.items() if r.n_masks and i not in before])
        return out

    def _appeared(self, gmap: GaussianMap, ids: list[int]) -> bool:
        """Whether one of these records holds surface that appeared where free space was (reportable at once)."""
        if not ids or not self.cfg.track_changes:
            return False
        own, appeared = gmap.state["object_id"], gmap.state["appeared"]
        return any(appeared_where_free(appeared, own == i, self.cfg.added_share) for i in ids)

    @torch.no_grad()
    def refresh(self, gmap: GaussianMap, recompute: bool = True, stamp: float = 0.0):
        """Objects free space took retired; split / merge / smooth, then labels and boxes (only the
        latter with recompute=False: a loaded map keeps its saved ids); then moved and added objects
        recognised (semantics/changes.py). Runs on a host snapshot."""
        self.due = False
        track = recompute and self.cfg.track_changes
        with gmap.lock:
            if track:
                self.changes.retire(self.records, gmap, stamp)
            if recompute:
                self.assign(gmap)
                split_apart(self.records, gmap, self.labels, self.cfg, self.changes.reserved())
                merge_duplicates(self.records, gmap, self.labels, self.cfg)
                self.assign(gmap)
                smooth_labels(gmap, self.cfg)
                peel_support(self.records, gmap, self.labels, self.cfg)
            snap = gmap.snapshot()
            appeared = gmap.state["appeared"].cpu().numpy() if track else None
            self.objects = self.describe(snap, appeared=appeared)
            # Gaussians of objects too weak to report belong to the background: one published id each
            orphan = ~np.isin(snap["object_id"], [o.id for o in self.objects])
            if orphan.any():
                snap["object_id"][orphan] = BACKGROUND
                gmap.state["object_id"][torch.as_tensor(orphan, device=gmap.device)] = BACKGROUND
                self.objects = self.describe(snap, appeared=appeared)
            if track:
                self.changes.update(self.objects, self.records, gmap, stamp)

    def new_changes(self) -> ChangeTracker:
        """A change tracker that knows nothing yet: the map as it stands is the scene as it is."""
        return ChangeTracker(self.cfg, self.labels.classify)

    def assign(self, gmap: GaussianMap):
        w = self.cfg.stuff_vote_weight
        assign(gmap, self.labels.stuff_ids(self.records) if w != 1.0 else [], w)

    def describe(
        self, snap: dict, box_mode: str = "upright", appeared: np.ndarray | None = None
    ) -> list[SemanticObject]:
        return describe(snap, self.records, self.labels, self.cfg, box_mode, appeared)

    def classify(self, emb: np.ndarray | None) -> tuple[str, float, list]:
        return self.labels.classify(emb)
