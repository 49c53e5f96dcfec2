"""Refinement, run every few keyframes on the whole map: objects that fall apart are split, near
duplicates merged (one per stuff class; things sharing votes; touching parts that agree), labels
smoothed over the kNN graph, and a thing's Gaussians lying in the surface it stands on given to
that surface."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from sklearn.cluster import DBSCAN

from ..config import SemanticsConfig
from ..mapping.gaussians import GaussianMap
from .description import Labeller, support_height
from .features import object_features
from .records import ObjectRecord, free_id


def split_apart(records: dict, gmap: GaussianMap, labels: Labeller, cfg: SemanticsConfig, reserved: set = frozenset()):
    """Objects whose Gaussians fall apart in space become one object per part; stray fragments lose
    their vote for the object and fall back to their next-best one. No part takes a `reserved` column."""
    ids = gmap.state["object_id"].cpu().numpy()
    means = gmap.means.detach().cpu().numpy()
    votes = gmap.state["votes"]
    K = votes.shape[1]
    scales = gmap.activated()["scales"].detach().cpu().numpy().max(1)
    for oid in list(records):
        idx = np.nonzero(ids == oid)[0]
        if len(idx) < 2 or labels.is_stuff(records[oid]):
            continue
        # gap that separates two objects: never below the Gaussians' own spacing
        eps = max(cfg.split_eps, cfg.split_scale_factor * float(np.median(scales[idx])))
        lab = DBSCAN(eps=eps, min_samples=cfg.split_min_samples).fit_predict(means[idx])
        comps = [c for c in np.unique(lab) if c >= 0 and (lab == c).sum() >= cfg.min_object_gaussians]
        comps.sort(key=lambda c: -(lab == c).sum())
        # stray fragments lose their vote for this object and fall back to their next-best one
        stray = ~np.isin(lab, comps) if comps else np.zeros(len(idx), bool)
        if stray.any():
            votes[torch.as_tensor(idx[stray], device=votes.device), oid] = 0
        mass = float(votes[:, oid].sum())
        for c in comps[1:]:
            new = free_id(records, K, reserved)
            if new is None:
                break
            rows = torch.as_tensor(idx[lab == c], device=votes.device)
            # the part inherits the object's views at its share of the votes: a part that is another
            # thing (a mask bleeding onto it) must not outweigh that thing's own views once they merge
            share = float(votes[rows, oid].sum()) / max(mass, 1e-9)
            views = [(w * share, e) for w, e in records[oid].views]
            records[new] = ObjectRecord(new, views, records[oid].last_seen)
            votes[rows, new] = votes[rows, oid]
            votes[rows, oid] = 0


def merge_duplicates(records: dict, gmap: GaussianMap, labels: Labeller, cfg: SemanticsConfig):
    """One object per stuff class; things that share votes; touching near-duplicates whose embeddings
    and instance features agree (part masks of one thing). Records left without votes go."""
    ids = gmap.state["object_id"].cpu().numpy()
    means = gmap.means.detach().cpu().numpy()
    votes = gmap.state["votes"]
    live = [o for o in records if (ids == o).sum() > 0]
    trees = {o: cKDTree(means[ids == o]) for o in live}
    embs = {o: records[o].embedding() for o in live}
    stuff = {}
    for o in live:  # one object per stuff class (the floor seen piecewise is still one floor)
        label = labels.classify(embs[o])[0]
        if label in cfg.stuff_classes:
            if label in stuff:
                absorb(records, votes, stuff[label], o, cfg.top_k_views)
                embs[stuff[label]] = records[stuff[label]].embedding()
            else:
                stuff[label] = o
    merge_shared_votes(records, votes, labels, cfg)
    live = [o for o in live if o in records]
    feats = object_features(gmap.params["features"].detach().cpu().numpy(), ids, live) if cfg.feature_iters > 0 else {}
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            if a not in records or b not in records or embs[a] is None or embs[b] is None:
                continue
            if float(embs[a] @ embs[b]) < cfg.merge_similarity:
                continue
            if a in feats and b in feats and float(feats[a] @ feats[b]) < cfg.merge_feature_similarity:
                continue  # same class, touching, but distinct instances by their features
            small, big = (a, b) if trees[a].n < trees[b].n else (b, a)
            d, _ = trees[big].query(trees[small].data, k=1, distance_upper_bound=cfg.split_eps / 2)
            if np.isfinite(d).mean() < cfg.merge_touch_fraction:  # parts share a long boundary; neighbours barely touch
                continue
            keep, gone = elder(records, big, small)
            absorb(records, votes, keep, gone, cfg.top_k_views)
            embs[keep] = records[keep].embedding()
    for o in list(records):
        if float(votes[:, o].sum()) <= 0:
            del records[o]


def merge_shared_votes(records: dict, votes: torch.Tensor, labels: Labeller, cfg: SemanticsConfig):
    """Things whose masks voted for the same Gaussians are one thing, whatever each mask read as:
    a butter seen as "a small yellow box" in some views otherwise splits its votes over two
    records and loses its Gaussians to the table's dilated masks (tuning seeds 3, 4). The most
    alike pair merges first and the columns are compared again, so no chain A ~ bridge ~ B forms."""
    if cfg.merge_vote_cosine > 1:
        return
    mass = votes.sum(0).cpu().numpy()  # records that own no Gaussian yet count: they may win together
    things = [o for o in records if mass[o] > 0 and not labels.is_stuff(records[o])]
    while len(things) >= 2:
        cols = votes[:, things]
        cols = cols / cols.norm(dim=0, keepdim=True).clamp(min=1e-9)
        C = (cols.T @ cols).cpu().numpy()
        np.fill_diagonal(C, -1.0)
        i, j = np.unravel_index(int(np.argmax(C)), C.shape)
        if C[i, j] < cfg.merge_vote_cosine:
            break
        big, small = (things[i], things[j]) if mass[things[i]] >= mass[things[j]] else (things[j], things[i])
        keep, gone = elder(records, big, small)
        mass[keep] += mass[gone]
        absorb(records, votes, keep, gone, cfg.top_k_views)
        things.remove(gone)


def elder(records: dict, big: int, small: int) -> tuple[int, int]:
    """(keep, gone): which of two merging objects keeps its id: the one more masks saw (readers have known it
    longer), the bigger one on a tie. A newer record that outgrew an object already reported
    would otherwise take it over under a new id: an "added" event for a thing that stood there."""
    return (small, big) if records[small].n_masks > records[big].n_masks else (big, small)


def absorb(records: dict, votes: torch.Tensor, keep: int, gone: int, top_k: int):
    """Object `gone` becomes part of `keep`: votes, mask count and best views."""
    votes[:, keep] += votes[:, gone]
    votes[:, gone] = 0
    records[keep].n_masks += records[gone].n_masks
    records[keep].views = sorted(records[keep].views + records[gone].views, key=lambda v: -v[0])[:top_k]
    del records[gone]


def smooth_labels(gmap: GaussianMap, cfg: SemanticsConfig):
    """Each Gaussian takes its kNN neighbours' (colour-weighted) majority id where it clearly disagrees."""
    k = cfg.smooth_k
    n = len(gmap)
    if n <= k or k <= 0:
        return
    means = gmap.means.detach().cpu().numpy()
    rgb = gmap.activated()["rgb"].detach().cpu().numpy()
    ids = gmap.state["object_id"].cpu().numpy().copy()
    _, nb = cKDTree(means).query(means, k=k + 1)
    nb = nb[:, 1:]
    wcol = np.exp(-((rgb[nb] - rgb[:, None]) ** 2).sum(-1) / cfg.smooth_color_scale)  # similar colour counts more
    for _ in range(cfg.smooth_iters):
        lab = ids[nb]
        agree = (wcol * (lab == ids[:, None])).sum(1)
        # the neighbours' weighted majority label
        best_lab, best_w = ids.copy(), agree.copy()
        for j in range(k):
            w = (wcol * (lab == lab[:, j : j + 1])).sum(1)
            better = w > best_w
            best_lab[better], best_w[better] = lab[better, j], w[better]
        flip = best_w > cfg.smooth_flip_ratio * np.maximum(agree, 1e-6)
        ids[flip] = best_lab[flip]
    gmap.state["object_id"] = torch.as_tensor(ids, dtype=torch.int32, device=gmap.device)


def peel_support(records: dict, gmap: GaussianMap, labels: Labeller, cfg: SemanticsConfig):
    """Gaussians of a thing lying in the surface it stands on belong to that surface: masks
    bleed onto the table around an object's base, and those Gaussians widen its box. A "thing"
    lying almost wholly in it (a spurious mask on the floor read as "a spoon") is that surface."""
    if cfg.support_peel <= 0:
        return
    ids = gmap.state["object_id"].cpu().numpy().copy()
    means = gmap.means.detach().cpu().numpy()
    stuff = labels.stuff_mask(ids, records)
    if not stuff.any() or stuff.all():
        return
    stuff_idx = np.nonzero(stuff)[0]
    tree = cKDTree(means[stuff_idx])
    for oid in np.unique(ids[~stuff]).tolist():
        idx = np.nonzero(ids == oid)[0]
        pts = means[idx]
        support = support_height(cfg, pts, means[stuff_idx], float(pts[:, 2].min()))
        if support is None:
            continue
        low = idx[pts[:, 2] < support + cfg.support_peel]
        if len(low) >= cfg.support_patch * len(idx):
            low = idx  # nearly all of it lies in the surface: a patch of the surface misread as a thing
        elif len(low) == 0 or len(idx) - len(low) < cfg.min_object_gaussians:
            continue
        ids[low] = ids[stuff_idx[tree.query(means[low], k=1)[1]]]
    gmap.state["object_id"] = torch.as_tensor(ids, dtype=torch.int32, device=gmap.device)
