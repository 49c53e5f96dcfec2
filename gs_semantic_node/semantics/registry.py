"""Object registry: masks -> discrete objects, every Gaussian -> exactly one object id.

Votes live per Gaussian per object column in the map's state (column 0 = unexplained
background), so densify/prune carry them. Each keyframe's masks join the object that already
holds most of their weight (if their embedding agrees) or found a new one; a mask spread over
two objects votes for none (SAM merging neighbours). Periodic refresh splits objects that fall
apart in space, merges touching near-duplicates (part masks), smooths labels over the kNN graph
and recomputes labels and boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from sklearn.cluster import DBSCAN

from ..config import SemanticsConfig
from ..mapping.gaussians import GaussianMap
from ..types import SemanticObject
from .boxes import clean_points, fit_box, grow_sides
from .features import object_features

BACKGROUND = 0


@dataclass
class ObjectRecord:
    id: int
    views: list = field(default_factory=list)   # (weight, embedding), best top-k kept
    last_seen: float = 0.0
    n_masks: int = 0

    def embedding(self) -> np.ndarray | None:
        if not self.views:
            return None
        w = np.array([v[0] for v in self.views], dtype=np.float32)
        e = (np.stack([v[1] for v in self.views]) * w[:, None]).sum(0)
        return e / max(np.linalg.norm(e), 1e-8)

    def add_view(self, weight: float, emb: np.ndarray, k: int):
        self.views.append((float(weight), np.asarray(emb, np.float32)))
        self.views.sort(key=lambda v: -v[0])
        del self.views[k:]


class ObjectRegistry:
    def __init__(self, cfg: SemanticsConfig, embed_text=None):
        self.cfg = cfg
        self.records: dict[int, ObjectRecord] = {}
        self.embed_text = embed_text
        self._vocab_emb = None
        self.objects: list[SemanticObject] = []      # last refreshed, for readers
        self.keyframes = 0

    # ------------------------------------------------------------ incremental update
    def _free_id(self, K: int) -> int | None:
        for i in range(1, K):
            if i not in self.records:
                return i
        return None

    @torch.no_grad()
    def update(self, gmap: GaussianMap, W: torch.Tensor, embeddings: np.ndarray, stamp: float,
               areas: list[int] | None = None) -> list[int]:
        """W (N, M+1) from lifting, embeddings (M, D). Returns the object id per mask (-1 skipped)."""
        cfg = self.cfg
        votes = gmap.state["votes"]
        K = votes.shape[1]
        Wm, Wb = W[:, 1:], W[:, 0]
        P = votes / votes.sum(1, keepdim=True).clamp(min=1e-9)
        mass = Wm.sum(0).clamp(min=1e-9)
        total = W.sum(1, keepdim=True).clamp(min=1e-9)              # each Gaussian's weight in this view
        core = Wm * (Wm / total)                                     # weight x inside-fraction: border bleed of
        shares = (core.T @ P) / core.sum(0).clamp(min=1e-9)[:, None]  # neighbours barely counts (thin objects)
        visible = (total[:, 0] @ P).clamp(min=1e-9)                  # each object's weight in this view
        coverage = ((Wm.T @ P) / visible[None]).cpu().numpy()        # share of the object inside the mask
        emb = {i: r.embedding() for i, r in self.records.items()}
        founded: dict[int, int] = {}       # record -> the mask of this view that founded it
        assigned = []
        for m in range(Wm.shape[1]):
            if float(mass[m]) < 1e-6:
                assigned.append(-1)
                continue
            e = embeddings[m]
            sh = shares[m].cpu().numpy().copy()
            sh[BACKGROUND] = 0
            # a mask holding most of two known objects is SAM merging neighbours: it votes for none
            whole = [o for o in self.records if coverage[m, o] >= 0.5 and sh[o] >= cfg.ambiguous_share]
            if len(whole) >= 2:
                assigned.append(-1)
                continue
            # join the object holding most of the mask among those whose embedding agrees: a thing on a
            # table whose Gaussians the table's votes dominate still finds its own object, instead
            # of founding a new fragment each view (fragments never win a Gaussian: a missed object)
            agree = torch.ones(K, dtype=torch.bool)
            known = [o for o, eo in emb.items() if eo is not None]
            if known:
                disagree = np.stack([emb[o] for o in known]) @ e < cfg.assoc_min_similarity
                agree[torch.as_tensor(known)[torch.as_tensor(disagree)]] = False
            # ... but a mask that is most of a known object and lies mostly on it, with an embedding that
            # disagrees, is that object misread (CLIP on a bad crop): it votes for none, else a
            # wrong-class twin of the table grows from such masks
            if any(coverage[m, o] >= 0.5 and sh[o] >= 0.5 and not agree[o] for o in self.records):
                assigned.append(-1)
                continue
            # a record another mask of this view founded is that mask's thing: a disjoint mask reaching
            # it through blur on their shared border (book on book, apple on floor) is a different thing
            if founded:
                apart = self._disjoint(Wm, mass, m, list(founded.values()), cfg.same_view_overlap).tolist()
                for o, a in zip(founded, apart):
                    if a:
                        agree[o] = False
            sh = self._shares(votes, core[:, m], agree.to(votes.device))
            sh[BACKGROUND] = 0
            best = int(np.argmax(sh))
            target = best if best in self.records and sh[best] >= cfg.assoc_overlap else None
            if target is None:
                target = self._free_id(K)
                if target is None:
                    assigned.append(-1)
                    continue
                self.records[target] = ObjectRecord(target)
                emb[target] = None
                founded[target] = m
            rec = self.records[target]
            rec.add_view(float(areas[m]) if areas else float(mass[m]), e, cfg.top_k_views)
            rec.last_seen = stamp
            rec.n_masks += 1
            votes[:, target] += Wm[:, m]
            assigned.append(target)
        votes[:, BACKGROUND] += Wb * cfg.background_prior
        self.keyframes += 1
        self.assign(gmap)
        return assigned

    @staticmethod
    def _disjoint(Wm: torch.Tensor, mass: torch.Tensor, m: int, others: list[int],
                  max_overlap: float) -> torch.Tensor:
        """Per mask in `others`: its Gaussian weights and mask m's overlap by less than max_overlap of
        the smaller (a part inside its whole overlaps by nearly all of the part). Only the Gaussians
        m touches are read: one view founds dozens of records on a 500k map."""
        rows = torch.nonzero(Wm[:, m] > 0).squeeze(1)
        inter = torch.minimum(Wm[rows, m][:, None], Wm[rows][:, others]).sum(0)
        return inter < max_overlap * torch.minimum(mass[m], mass[others]).clamp(min=1e-9)

    @staticmethod
    def _shares(votes: torch.Tensor, core_m: torch.Tensor, cols: torch.Tensor) -> np.ndarray:
        """Share of one mask's core weight per object, each Gaussian split by its votes among `cols`."""
        rows = torch.nonzero(core_m > 0).squeeze(1)
        if rows.numel() == 0:
            return np.zeros(votes.shape[1], np.float32)
        V = votes[rows] * cols[None].to(votes.dtype)
        P = V / V.sum(1, keepdim=True).clamp(min=1e-9)
        return ((core_m[rows] @ P) / core_m[rows].sum().clamp(min=1e-9)).cpu().numpy()

    @torch.no_grad()
    def assign(self, gmap: GaussianMap):
        votes = gmap.state["votes"]
        total = votes.sum(1)
        best = votes.max(1)
        ids = best.indices.to(torch.int32)
        ids[total <= 1e-9] = BACKGROUND
        gmap.state["object_id"] = ids
        gmap.state["confidence"] = torch.where(total > 1e-9, best.values / total.clamp(min=1e-9), torch.zeros_like(total))

    # ------------------------------------------------------------ refresh
    @torch.no_grad()
    def refresh(self, gmap: GaussianMap, recompute: bool = True):
        """Split / merge / smooth, then labels and boxes (only the latter with recompute=False: a
        loaded map keeps its saved ids). Runs on a host snapshot."""
        with gmap.lock:
            if recompute:
                self.assign(gmap)
                self._split(gmap)
                self._merge(gmap)
                self.assign(gmap)
                self._smooth(gmap)
                self._peel_support(gmap)
            snap = gmap.snapshot()
            self.objects = self.describe(snap)
            # Gaussians of objects too weak to report belong to the background: one published id each
            orphan = ~np.isin(snap["object_id"], [o.id for o in self.objects])
            if orphan.any():
                snap["object_id"][orphan] = BACKGROUND
                gmap.state["object_id"][torch.as_tensor(orphan, device=gmap.device)] = BACKGROUND
                self.objects = self.describe(snap)

    def _split(self, gmap: GaussianMap):
        ids = gmap.state["object_id"].cpu().numpy()
        means = gmap.means.detach().cpu().numpy()
        votes = gmap.state["votes"]
        K = votes.shape[1]
        scales = gmap.activated()["scales"].detach().cpu().numpy().max(1)
        for oid in list(self.records):
            idx = np.nonzero(ids == oid)[0]
            if len(idx) < 2 or self._is_stuff(oid):
                continue
            # gap that separates two objects: never below the Gaussians' own spacing
            eps = max(self.cfg.split_eps, 4.0 * float(np.median(scales[idx])))
            lab = DBSCAN(eps=eps, min_samples=3).fit_predict(means[idx])
            comps = [c for c in np.unique(lab) if c >= 0 and (lab == c).sum() >= self.cfg.min_object_gaussians]
            comps.sort(key=lambda c: -(lab == c).sum())
            # stray fragments lose their vote for this object and fall back to their next-best one
            stray = ~np.isin(lab, comps) if comps else np.zeros(len(idx), bool)
            if stray.any():
                votes[torch.as_tensor(idx[stray], device=votes.device), oid] = 0
            for c in comps[1:]:
                new = self._free_id(K)
                if new is None:
                    break
                rows = torch.as_tensor(idx[lab == c], device=votes.device)
                self.records[new] = ObjectRecord(new, list(self.records[oid].views), self.records[oid].last_seen)
                votes[rows, new] = votes[rows, oid]
                votes[rows, oid] = 0

    def _merge(self, gmap: GaussianMap):
        ids = gmap.state["object_id"].cpu().numpy()
        means = gmap.means.detach().cpu().numpy()
        votes = gmap.state["votes"]
        live = [o for o in self.records if (ids == o).sum() > 0]
        trees = {o: cKDTree(means[ids == o]) for o in live}
        embs = {o: self.records[o].embedding() for o in live}
        stuff = {}
        for o in live:      # one object per stuff class (the floor seen piecewise is still one floor)
            label = self.classify(embs[o])[0]
            if label in self.cfg.stuff_classes:
                if label in stuff:
                    self._absorb(votes, stuff[label], o)
                    embs[stuff[label]] = self.records[stuff[label]].embedding()
                else:
                    stuff[label] = o
        self._merge_shared_votes(votes)
        live = [o for o in live if o in self.records]
        feats = object_features(gmap.params["features"].detach().cpu().numpy(), ids, live) \
            if self.cfg.feature_iters > 0 else {}
        for i, a in enumerate(live):
            for b in live[i + 1:]:
                if a not in self.records or b not in self.records or embs[a] is None or embs[b] is None:
                    continue
                if float(embs[a] @ embs[b]) < self.cfg.merge_similarity:
                    continue
                if a in feats and b in feats and float(feats[a] @ feats[b]) < self.cfg.merge_feature_similarity:
                    continue          # same class, touching, but distinct instances by their features
                small, big = (a, b) if trees[a].n < trees[b].n else (b, a)
                d, _ = trees[big].query(trees[small].data, k=1, distance_upper_bound=self.cfg.split_eps / 2)
                if np.isfinite(d).mean() < 0.2:       # parts share a long boundary; neighbours barely touch
                    continue
                self._absorb(votes, big, small)
                embs[big] = self.records[big].embedding()
        for o in list(self.records):
            if float(votes[:, o].sum()) <= 0:
                del self.records[o]

    def _merge_shared_votes(self, votes: torch.Tensor):
        """Things whose masks voted for the same Gaussians are one thing, whatever each mask read as:
        a butter seen as "a small yellow box" in some views otherwise splits its votes over two
        records and loses its Gaussians to the table's dilated masks (tuning seeds 3, 4). The most
        alike pair merges first and the columns are compared again, so no chain A ~ bridge ~ B forms."""
        if self.cfg.merge_vote_cosine > 1:
            return
        mass = votes.sum(0).cpu().numpy()     # records that own no Gaussian yet count: they may win together
        things = [o for o in self.records if mass[o] > 0 and not self._is_stuff(o)]
        while len(things) >= 2:
            cols = votes[:, things]
            cols = cols / cols.norm(dim=0, keepdim=True).clamp(min=1e-9)
            C = (cols.T @ cols).cpu().numpy()
            np.fill_diagonal(C, -1.0)
            i, j = np.unravel_index(int(np.argmax(C)), C.shape)
            if C[i, j] < self.cfg.merge_vote_cosine:
                break
            keep, gone = (things[i], things[j]) if mass[things[i]] >= mass[things[j]] else (things[j], things[i])
            mass[keep] += mass[gone]
            self._absorb(votes, keep, gone)
            things.remove(gone)

    def _absorb(self, votes: torch.Tensor, keep: int, gone: int):
        votes[:, keep] += votes[:, gone]
        votes[:, gone] = 0
        self.records[keep].n_masks += self.records[gone].n_masks
        self.records[keep].views = sorted(self.records[keep].views + self.records[gone].views,
                                          key=lambda v: -v[0])[: self.cfg.top_k_views]
        del self.records[gone]

    def _smooth(self, gmap: GaussianMap):
        k = self.cfg.smooth_k
        n = len(gmap)
        if n <= k or k <= 0:
            return
        means = gmap.means.detach().cpu().numpy()
        rgb = gmap.activated()["rgb"].detach().cpu().numpy()
        ids = gmap.state["object_id"].cpu().numpy().copy()
        _, nb = cKDTree(means).query(means, k=k + 1)
        nb = nb[:, 1:]
        wcol = np.exp(-((rgb[nb] - rgb[:, None]) ** 2).sum(-1) / 0.05)        # similar colour counts more
        for _ in range(self.cfg.smooth_iters):
            lab = ids[nb]
            agree = (wcol * (lab == ids[:, None])).sum(1)
            # the neighbours' weighted majority label
            best_lab, best_w = ids.copy(), agree.copy()
            for j in range(k):
                w = (wcol * (lab == lab[:, j:j + 1])).sum(1)
                better = w > best_w
                best_lab[better], best_w[better] = lab[better, j], w[better]
            flip = best_w > 2.0 * np.maximum(agree, 1e-6)
            ids[flip] = best_lab[flip]
        gmap.state["object_id"] = torch.as_tensor(ids, dtype=torch.int32, device=gmap.device)

    def _is_stuff(self, oid: int) -> bool:
        return self.classify(self.records[oid].embedding())[0] in self.cfg.stuff_classes

    def _stuff_mask(self, ids: np.ndarray) -> np.ndarray:
        """Gaussians of the background or of an object labelled as stuff (table, floor, ...)."""
        stuff_ids = [BACKGROUND] + [o for o in self.records if self._is_stuff(o)]
        return np.isin(ids, stuff_ids)

    def _support_height(self, pts: np.ndarray, stuff_pts: np.ndarray, bottom: float, center=None,
                        rotation=None, half=None) -> float | None:
        """Median height of the stuff around an object's footprint, near its lowest Gaussian."""
        if len(stuff_pts) == 0:
            return None
        reach, margin = self.cfg.support_reach, self.cfg.support_margin
        if center is None:                   # axis-aligned footprint of the points
            lo, hi = pts.min(0), pts.max(0)
            center, rotation, half = (lo + hi) / 2, np.eye(3), (hi - lo) / 2
        loc = (stuff_pts - center) @ rotation
        near = np.all(np.abs(loc[:, :2]) <= half[:2] + margin, axis=1)
        z = stuff_pts[near, 2]
        z = z[(z > bottom - reach) & (z < bottom + 0.5 * reach)]
        return float(np.median(z)) if len(z) >= 3 else None

    def _peel_support(self, gmap: GaussianMap):
        """Gaussians of a thing lying in the surface it stands on belong to that surface: masks
        bleed onto the table around an object's base, and those Gaussians widen its box. A "thing"
        lying almost wholly in it (a spurious mask on the floor read as "a spoon") is that surface."""
        if self.cfg.support_peel <= 0:
            return
        ids = gmap.state["object_id"].cpu().numpy().copy()
        means = gmap.means.detach().cpu().numpy()
        stuff = self._stuff_mask(ids)
        if not stuff.any() or stuff.all():
            return
        stuff_idx = np.nonzero(stuff)[0]
        tree = cKDTree(means[stuff_idx])
        for oid in np.unique(ids[~stuff]).tolist():
            idx = np.nonzero(ids == oid)[0]
            pts = means[idx]
            support = self._support_height(pts, means[stuff_idx], float(pts[:, 2].min()))
            if support is None:
                continue
            low = idx[pts[:, 2] < support + self.cfg.support_peel]
            if len(low) >= self.cfg.support_patch * len(idx):
                low = idx      # nearly all of it lies in the surface: a patch of the surface misread as a thing
            elif len(low) == 0 or len(idx) - len(low) < self.cfg.min_object_gaussians:
                continue
            ids[low] = ids[stuff_idx[tree.query(means[low], k=1)[1]]]
        gmap.state["object_id"] = torch.as_tensor(ids, dtype=torch.int32, device=gmap.device)

    # ------------------------------------------------------------ labels, boxes
    def vocab_embeddings(self) -> np.ndarray:
        if self._vocab_emb is None:
            self._vocab_emb = self.embed_text(list(self.cfg.vocabulary))
        return self._vocab_emb

    def classify(self, emb: np.ndarray) -> tuple[str, float, list]:
        if self.embed_text is None or emb is None:
            return "object", 0.0, []
        s = self.vocab_embeddings() @ emb / self.cfg.label_temperature
        p = np.exp(s - s.max())
        p /= p.sum()
        order = np.argsort(-p)
        voc = self.cfg.vocabulary
        return voc[order[0]], float(p[order[0]]), [(voc[i], float(p[i])) for i in order[1:4]]

    def describe(self, snap: dict, box_mode: str = "upright") -> list[SemanticObject]:
        out = []
        ids = snap["object_id"]
        labels, embs = {}, {}
        for oid in sorted(set(np.unique(ids).tolist()) | {BACKGROUND}):
            rec = self.records.get(oid)
            embs[oid] = rec.embedding() if rec else None
            labels[oid] = self.classify(embs[oid]) if oid != BACKGROUND else ("background", 1.0, [])
        stuff = self._stuff_mask(ids)
        for oid, (label, conf, alts) in labels.items():
            idx = np.nonzero(ids == oid)[0]
            if len(idx) == 0:
                continue
            rec = self.records.get(oid)
            is_bg = bool(stuff[idx[0]])
            # a thing needs enough Gaussians and more than one supporting mask (spurious SAM masks)
            if not is_bg and (len(idx) < self.cfg.min_object_gaussians or rec is None
                              or rec.n_masks < self.cfg.min_object_masks):
                continue
            pts = snap["means"][idx]
            clean = clean_points(pts, snap["opacities"][idx], self.cfg.box_min_opacity, self.cfg.box_outlier_std)
            box = fit_box(clean, box_mode, self.cfg.box_axis_tolerance)
            sigma = float(np.median(snap["scales"][idx].max(1)))
            bottom = box.center[2] - box.size[2] / 2
            if box_mode == "upright":     # the vertical sides grow by what their shape says (boxes.grow_sides)
                box = grow_sides(clean, box, sigma, self.cfg.box_grow_sigma, self.cfg.box_flat_coverage,
                                 self.cfg.box_round_coverage)
            else:
                box.size[:2] += 2 * sigma * self.cfg.box_grow_sigma
            box.size[2] += 2 * sigma * self.cfg.box_grow_sigma_z
            if not is_bg and box_mode == "upright":
                support = self._support_height(None, snap["means"][stuff], bottom, box.center, box.rotation,
                                               box.size / 2)
                top = box.center[2] + box.size[2] / 2
                if support is not None and top - support > 1e-3:     # its unseen underside reaches down to it
                    box.center[2], box.size[2] = (top + support) / 2, top - support
            out.append(SemanticObject(
                id=int(oid), label=label, confidence=conf, alternatives=alts, is_background=is_bg, obb=box,
                aabb_min=clean.min(0), aabb_max=clean.max(0), centroid=clean.mean(0), num_gaussians=len(idx),
                gaussian_indices=idx, last_seen=rec.last_seen if rec else 0.0, embedding=embs[oid],
                view_embeddings=np.stack([v[1] for v in rec.views]) if rec and rec.views else None))
        return out
