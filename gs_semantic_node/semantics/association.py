"""Association: each keyframe's masks join an object of the map, found a new one, or vote for none.

A mask joins the object holding most of its weight among the objects whose embedding agrees with
it, or founds a new one. Each rule below names one way a mask misleads (SAM merging neighbours,
CLIP misreading a crop, blur across a shared border) and what the mask does then. Votes live per
Gaussian per object column in the map's state, so densify/prune carry them; `assign` turns them
into one object id per Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..config import SemanticsConfig
from ..mapping.gaussians import GaussianMap
from .records import BACKGROUND, ObjectRecord, free_id


def spans_known_objects(records: dict, coverage: np.ndarray, share: np.ndarray, cfg: SemanticsConfig) -> bool:
    """A mask holding most of two known objects is SAM merging neighbours: it votes for none. Known =
    reportable (`min_object_masks`): a record one mask founded may be a part of the thing this mask
    holds whole (a bottle split in two by its first view); rejecting the whole then leaves the parts
    without a second view, and an object put down late is reported views later."""
    k = cfg.min_object_masks
    whole = [
        o
        for o, r in records.items()
        if r.n_masks >= k and coverage[o] >= cfg.assoc_whole_coverage and share[o] >= cfg.ambiguous_share
    ]
    return len(whole) >= 2


def agreeing_objects(K: int, emb: dict, e: np.ndarray, cfg: SemanticsConfig) -> torch.Tensor:
    """(K,) bool: objects whose embedding does not clearly disagree with the mask's. Joining the object
    holding most of the mask among these, a thing on a table whose Gaussians the table's votes dominate
    still finds its own object, instead of founding a new fragment each view (fragments never win a
    Gaussian: a missed object)."""
    agree = torch.ones(K, dtype=torch.bool)
    known = [o for o, eo in emb.items() if eo is not None]
    if known:
        disagree = np.stack([emb[o] for o in known]) @ e < cfg.assoc_min_similarity
        agree[torch.as_tensor(known)[torch.as_tensor(disagree)]] = False
    return agree


def misreads_known_object(
    records: dict, coverage: np.ndarray, share: np.ndarray, agree: torch.Tensor, cfg: SemanticsConfig
) -> bool:
    """A mask that is most of a known object and lies mostly on it, with an embedding that disagrees, is
    that object misread (CLIP on a bad crop): it votes for none, else a wrong-class twin of the table
    grows from such masks."""
    return any(
        coverage[o] >= cfg.assoc_whole_coverage and share[o] >= cfg.assoc_misread_share and not agree[o]
        for o in records
    )


def disjoint(Wm: torch.Tensor, mass: torch.Tensor, m: int, others: list[int], max_overlap: float) -> torch.Tensor:
    """Per mask in `others`: its Gaussian weights and mask m's overlap by less than max_overlap of
    the smaller (a part inside its whole overlaps by nearly all of the part). Only the Gaussians
    m touches are read: one view founds dozens of records on a 500k map."""
    rows = torch.nonzero(Wm[:, m] > 0).squeeze(1)
    inter = torch.minimum(Wm[rows, m][:, None], Wm[rows][:, others]).sum(0)
    return inter < max_overlap * torch.minimum(mass[m], mass[others]).clamp(min=1e-9)


def exclude_founded_apart(
    agree: torch.Tensor, Wm: torch.Tensor, mass: torch.Tensor, m: int, founded: dict, cfg: SemanticsConfig
) -> None:
    """A record another mask of this view founded is that mask's thing: a disjoint mask reaching it
    through blur on their shared border (book on book, apple on floor) is a different thing."""
    if not founded:
        return
    apart = disjoint(Wm, mass, m, list(founded.values()), cfg.same_view_overlap).tolist()
    for o, a in zip(founded, apart):
        if a:
            agree[o] = False


def shares(votes: torch.Tensor, core_m: torch.Tensor, cols: torch.Tensor) -> np.ndarray:
    """Share of one mask's core weight per object, each Gaussian split by its votes among `cols`. Of the
    Gaussians no mask voted for yet, none has a say: an object put down late is seeded anew each view,
    and counting its fresh Gaussians against its record has every view found another record."""
    rows = torch.nonzero(core_m > 0).squeeze(1)
    if rows.numel() == 0:
        return np.zeros(votes.shape[1], np.float32)
    vr, c = votes[rows], core_m[rows]
    V = vr * cols[None].to(votes.dtype)
    P = V / V.sum(1, keepdim=True).clamp(min=1e-9)
    return ((c @ P) / c[vr.sum(1) > 0].sum().clamp(min=1e-9)).cpu().numpy()


@torch.no_grad()
def associate(
    records: dict[int, ObjectRecord],
    gmap: GaussianMap,
    W: torch.Tensor,
    embeddings: np.ndarray,
    stamp: float,
    areas: list[int] | None,
    cfg: SemanticsConfig,
    reserved: set = frozenset(),
) -> list[int]:
    """W (N, M+1) from lifting, embeddings (M, D): votes added, records created (never in a `reserved`
    column); `assign` then turns the votes into ids. Returns the object id per mask (-1: it voted for none)."""
    votes = gmap.state["votes"]
    K = votes.shape[1]
    Wm, Wb = W[:, 1:], W[:, 0]
    P = votes / votes.sum(1, keepdim=True).clamp(min=1e-9)
    mass = Wm.sum(0).clamp(min=1e-9)
    total = W.sum(1, keepdim=True).clamp(min=1e-9)  # each Gaussian's weight in this view
    core = Wm * (Wm / total)  # weight x inside-fraction: border bleed of
    all_shares = (core.T @ P) / core.sum(0).clamp(min=1e-9)[:, None]  # neighbours barely counts (thin objects)
    visible = (total[:, 0] @ P).clamp(min=1e-9)  # each object's weight in this view
    coverage = ((Wm.T @ P) / visible[None]).cpu().numpy()  # share of the object inside the mask
    emb = {i: r.embedding() for i, r in records.items()}
    founded: dict[int, int] = {}  # record -> the mask of this view that founded it
    assigned = []
    for m in range(Wm.shape[1]):
        if float(mass[m]) < 1e-6:
            assigned.append(-1)
            continue
        e = embeddings[m]
        sh = all_shares[m].cpu().numpy().copy()
        sh[BACKGROUND] = 0
        if spans_known_objects(records, coverage[m], sh, cfg):
            assigned.append(-1)
            continue
        agree = agreeing_objects(K, emb, e, cfg)
        if misreads_known_object(records, coverage[m], sh, agree, cfg):
            assigned.append(-1)
            continue
        exclude_founded_apart(agree, Wm, mass, m, founded, cfg)
        sh = shares(votes, core[:, m], agree.to(votes.device))
        sh[BACKGROUND] = 0
        best = int(np.argmax(sh))
        target = best if best in records and sh[best] >= cfg.assoc_overlap else None
        if target is None:
            target = free_id(records, K, reserved)
            if target is None:
                assigned.append(-1)
                continue
            records[target] = ObjectRecord(target)
            emb[target] = None
            founded[target] = m
        rec = records[target]
        rec.add_view(float(areas[m]) if areas else float(mass[m]), e, cfg.top_k_views)
        rec.last_seen = stamp
        rec.n_masks += 1
        votes[:, target] += Wm[:, m]
        assigned.append(target)
    votes[:, BACKGROUND] += Wb * cfg.background_prior
    return assigned


@torch.no_grad()
def assign(gmap: GaussianMap, stuff: Sequence[int] = (), stuff_weight: float = 1.0):
    """Every Gaussian -> the object with most of its votes (BACKGROUND when none), and that share; the
    votes of the `stuff` columns count stuff_weight each."""
    votes = gmap.state["votes"]
    if len(stuff) and stuff_weight != 1.0:
        scale = torch.ones(votes.shape[1], dtype=votes.dtype, device=votes.device)
        scale[torch.as_tensor(list(stuff), device=votes.device)] = stuff_weight
        votes = votes * scale
    total = votes.sum(1)
    best = votes.max(1)
    ids = best.indices.to(torch.int32)
    ids[total <= 1e-9] = BACKGROUND
    gmap.state["object_id"] = ids
    gmap.state["confidence"] = torch.where(total > 1e-9, best.values / total.clamp(min=1e-9), torch.zeros_like(total))
