"""Description: what a planner receives per object. Labels come from the vocabulary (the object's
embedding against the class names' text embeddings); boxes are upright (yaw only) and fitted to the
object's Gaussians, robust to floaters, grown where the surface curves, and reaching down to the
surface the object stands on."""

from __future__ import annotations

import numpy as np

from ..config import SemanticsConfig
from ..types import SemanticObject
from .boxes import clean_index, fit_box, grow_sides, mirror_back, seen_side
from .records import BACKGROUND, ObjectRecord, appeared_where_free


class Labeller:
    """Vocabulary labels of embeddings; "stuff" (table, floor, ...) is a label too."""

    def __init__(self, cfg: SemanticsConfig, embed_text=None):
        self.cfg = cfg
        self.embed_text = embed_text
        self._vocab_emb = None

    def vocab_embeddings(self) -> np.ndarray:
        if self._vocab_emb is None:
            self._vocab_emb = self.embed_text(list(self.cfg.vocabulary))
        return self._vocab_emb

    def classify(self, emb: np.ndarray | None) -> tuple[str, float, list]:
        if self.embed_text is None or emb is None:
            return "object", 0.0, []
        s = self.vocab_embeddings() @ emb / self.cfg.label_temperature
        p = np.exp(s - s.max())
        p /= p.sum()
        order = np.argsort(-p)
        voc = self.cfg.vocabulary
        return voc[order[0]], float(p[order[0]]), [(voc[i], float(p[i])) for i in order[1:4]]

    def is_stuff(self, rec: ObjectRecord) -> bool:
        return self.classify(rec.embedding())[0] in self.cfg.stuff_classes

    def stuff_ids(self, records: dict[int, ObjectRecord]) -> list[int]:
        """The objects labelled as stuff (table, floor, ...)."""
        return [o for o, r in records.items() if self.is_stuff(r)]

    def stuff_mask(self, ids: np.ndarray, records: dict[int, ObjectRecord]) -> np.ndarray:
        """Gaussians of the background or of an object labelled as stuff."""
        return np.isin(ids, [BACKGROUND, *self.stuff_ids(records)])


def support_height(
    cfg: SemanticsConfig,
    pts: np.ndarray | None,
    stuff_pts: np.ndarray,
    bottom: float,
    center=None,
    rotation=None,
    half=None,
) -> float | None:
    """Median height of the stuff around an object's footprint, near its lowest Gaussian."""
    if len(stuff_pts) == 0:
        return None
    reach, margin = cfg.support_reach, cfg.support_margin
    if center is None:  # axis-aligned footprint of the points
        lo, hi = pts.min(0), pts.max(0)
        center, rotation, half = (lo + hi) / 2, np.eye(3), (hi - lo) / 2
    loc = (stuff_pts - center) @ rotation
    near = np.all(np.abs(loc[:, :2]) <= half[:2] + margin, axis=1)
    z = stuff_pts[near, 2]
    z = z[(z > bottom - reach) & (z < bottom + 0.5 * reach)]
    return float(np.median(z)) if len(z) >= 3 else None


def describe(
    snap: dict,
    records: dict[int, ObjectRecord],
    labels: Labeller,
    cfg: SemanticsConfig,
    box_mode: str = "upright",
    appeared: np.ndarray | None = None,
) -> list[SemanticObject]:
    """Every object of a host snapshot: label, confidence, alternatives, box, members, embedding.
    `appeared` (per Gaussian, 0..1): seeded where earlier views saw free space (Mapper.seed)."""
    out = []
    ids = snap["object_id"]
    names, embs = {}, {}
    for oid in sorted(set(np.unique(ids).tolist()) | {BACKGROUND}):
        rec = records.get(oid)
        embs[oid] = rec.embedding() if rec else None
        names[oid] = labels.classify(embs[oid]) if oid != BACKGROUND else ("background", 1.0, [])
    stuff = labels.stuff_mask(ids, records)
    for oid, (label, conf, alts) in names.items():
        idx = np.nonzero(ids == oid)[0]
        if len(idx) == 0:
            continue
        rec = records.get(oid)
        is_bg = bool(stuff[idx[0]])
        # a thing needs enough Gaussians and more than one supporting mask (spurious SAM masks), or one on
        # surface that appeared where earlier views saw free space: the map is the second witness of an object
        # put down, and a missed or merged mask in its next views does not hold it back
        masks = cfg.min_object_masks
        if appeared is not None and appeared_where_free(appeared, idx, cfg.added_share):
            masks = min(masks, 1)
        if not is_bg and (len(idx) < cfg.min_object_gaussians or rec is None or rec.n_masks < masks):
            continue
        pts = snap["means"][idx]
        keep = clean_index(pts, snap["opacities"][idx], cfg.box_min_opacity, cfg.box_outlier_std)
        clean = pts[keep]
        sigma = float(np.median(snap["scales"][idx].max(1)))
        body = clean  # what the box bounds: the points, and behind an object seen from one side their mirror
        if not is_bg and box_mode == "upright" and cfg.box_one_sided_gap_deg < 360:
            side = seen_side(snap["seen_from"][idx[keep]], cfg.box_one_sided_gap_deg)
            if side is not None:
                body = np.concatenate([clean, mirror_back(clean, side, sigma)])
        box = fit_box(body, box_mode, cfg.box_axis_tolerance)
        bottom = box.center[2] - box.size[2] / 2
        if box_mode == "upright":  # the vertical sides grow by what their shape says (boxes.grow_sides)
            box = grow_sides(body, box, sigma, cfg.box_grow_sigma, cfg.box_flat_coverage, cfg.box_round_coverage)
        else:
            box.size[:2] += 2 * sigma * cfg.box_grow_sigma
        box.size[2] += 2 * sigma * cfg.box_grow_sigma_z
        if not is_bg and box_mode == "upright":
            support = support_height(cfg, None, snap["means"][stuff], bottom, box.center, box.rotation, box.size / 2)
            top = box.center[2] + box.size[2] / 2
            if support is not None and top - support > 1e-3:  # its unseen underside reaches down to it
                box.center[2], box.size[2] = (top + support) / 2, top - support
        out.append(
            SemanticObject(
                id=int(oid),
                label=label,
                confidence=conf,
                alternatives=alts,
                is_background=is_bg,
                obb=box,
                aabb_min=clean.min(0),
                aabb_max=clean.max(0),
                centroid=clean.mean(0),
                num_gaussians=len(idx),
                gaussian_indices=idx,
                last_seen=rec.last_seen if rec else 0.0,
                embedding=embs[oid],
                view_embeddings=rec.view_embeddings() if rec else None,
            )
        )
    return out
