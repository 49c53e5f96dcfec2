"""Scoring against ground truth: a semantic map against the simulator's objects, and a map's
rendering against held-out views (what `bench mapping` and `bench speed` report).

Gaussians are matched to GT by the nearest GT surface sample. Predicted objects are matched
one-to-one to GT objects (Hungarian on shared Gaussians); all "stuff" (table, floor, the
background object) counts as one class, since which plane a Gaussian of the table edge belongs
to is not what a robot asks.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from ..mapping.mapper import Mapper, backproject
from ..mapping.shutter import rolling
from ..semantics.boxes import box_iou
from ..types import Frame, OrientedBox

STUFF = -2


def surface_distance(means: np.ndarray, gt: dict) -> np.ndarray:
    """Each Gaussian's distance to the nearest GT surface sample (m)."""
    return cKDTree(gt["surface_points"]).query(means, k=1)[0]


def table_top_offset(means: np.ndarray, gt: dict, reach: float = 0.03) -> float:
    """Median height of the Gaussians on the table top above its true height (m; < 0: sunk)."""
    tables = [o for o in gt["objects"] if o["class"] == "table"]
    if not tables:
        return float("nan")
    box = OrientedBox.from_dict(tables[0]["obb"])
    top = box.center[2] + box.size[2] / 2
    lab = gt["surface_ids"][cKDTree(gt["surface_points"]).query(means, k=1)[1]]
    z = means[(lab == tables[0]["instance_id"]) & (np.abs(means[:, 2] - top) < reach), 2]
    return float(np.median(z) - top) if len(z) else float("nan")


def gt_labels(means: np.ndarray, gt: dict, max_dist: float = 0.03) -> np.ndarray:
    """GT instance per Gaussian (STUFF for table/floor, -1 when no GT surface is within max_dist)."""
    tree = cKDTree(gt["surface_points"])
    d, i = tree.query(means, k=1)
    lab = gt["surface_ids"][i].astype(np.int64)
    stuff = {o["instance_id"] for o in gt["objects"] if o["is_background"]}
    lab[np.isin(lab, list(stuff))] = STUFF
    lab[d > max_dist] = -1
    return lab


def yaw_free_iou(pred: OrientedBox, gt: OrientedBox) -> float:
    """IoU with the GT box of a solid of revolution (about the vertical) turned to the predicted
    box's yaw: every yaw bounds that solid equally well, so the GT's own yaw is not evidence.
    (`evaluate` keeps the larger of this and the strict IoU.)"""
    axis = int(np.argmax(np.abs(pred.rotation[2])))  # the predicted box's vertical axis
    u = pred.rotation[:, (axis + 1) % 3].copy()
    u[2] = 0.0
    if np.linalg.norm(u) < 1e-6:
        return box_iou(pred, gt)
    u /= np.linalg.norm(u)
    R = np.column_stack([u, [-u[1], u[0], 0.0], [0.0, 0.0, 1.0]])
    g_vert = int(np.argmax(np.abs(gt.rotation[2])))
    horiz = [gt.size[i] for i in range(3) if i != g_vert]
    return box_iou(pred, OrientedBox(gt.center, R, np.array([horiz[0], horiz[1], gt.size[g_vert]])))


def evaluate(arrays: dict, objects: list, gt: dict) -> dict:
    means, pred = arrays["means"], arrays["object_id"].astype(np.int64)
    glab = gt_labels(means, gt)
    stuff_ids = {o.id for o in objects if o.is_background} | {0}
    obj_by_id = {o.id: o for o in objects}
    pred_m = np.where(np.isin(pred, list(stuff_ids)), STUFF, pred)
    real_gt = [o for o in gt["objects"] if not o["is_background"]]
    gids = [o["instance_id"] for o in real_gt]
    pids = sorted(set(pred_m[pred_m != STUFF].tolist()))
    C = np.array([[np.sum((glab == g) & (pred_m == p)) for p in pids] for g in gids], dtype=float).reshape(
        len(gids), len(pids)
    )
    match = {}
    if C.size:
        r, c = linear_sum_assignment(-C)
        match = {gids[i]: pids[j] for i, j in zip(r, c) if C[i, j] > 0}
    # per-Gaussian accuracy over Gaussians that lie on a GT surface
    on = glab != -1
    correct = np.zeros(len(means), bool)
    correct |= (glab == STUFF) & (pred_m == STUFF)
    for g, p in match.items():
        correct |= (glab == g) & (pred_m == p)
    acc = float(correct[on].mean()) if on.any() else 0.0
    obj_acc = float(correct[on & (glab >= 0)].mean()) if (on & (glab >= 0)).any() else 0.0
    ious, ious_sym, per = [], [], {}
    for o in real_gt:
        g = o["instance_id"]
        gbox = OrientedBox.from_dict(o["obb"])
        p = match.get(g)
        iou = box_iou(obj_by_id[p].obb, gbox) if p is not None and p in obj_by_id else 0.0
        iou_sym = (
            max(iou, yaw_free_iou(obj_by_id[p].obb, gbox))
            if p is not None and p in obj_by_id and o.get("axisymmetric")
            else iou
        )
        ious.append(iou)
        ious_sym.append(iou_sym)
        per[g] = {
            "class": o["class"],
            "pred": p,
            "box_iou": iou,
            "box_iou_sym": iou_sym,
            "label": obj_by_id[p].label if p is not None and p in obj_by_id else None,
            "missed": False,
        }
    n = max(1, len(means))
    counts = {"missed": 0, "split": 0, "merged": 0, "phantom": 0, "largest_phantom_frac": 0.0}
    for i, g in enumerate(gids):
        tot = C[i].sum()
        if tot == 0 or g not in match or C[i, pids.index(match[g])] < 0.5 * tot:
            counts["missed"] += 1
            per[g]["missed"] = True
        if tot and (C[i] >= 0.2 * tot).sum() >= 2:
            counts["split"] += 1
    for j, p in enumerate(pids):
        col = C[:, j]
        if col.sum() and (col >= 0.2 * np.sum(pred_m == p)).sum() >= 2:
            counts["merged"] += 1
        size = int(np.sum(pred_m == p))
        if p not in match.values() and size >= 1:
            counts["phantom"] += 1
            counts["largest_phantom_frac"] = max(counts["largest_phantom_frac"], size / n)
    return {
        "gaussian_accuracy": acc,
        "object_gaussian_accuracy": obj_acc,
        "mean_box_iou": float(np.mean(ious)) if ious else 0.0,
        "mean_box_iou_sym": float(np.mean(ious_sym)) if ious_sym else 0.0,
        "per_object": per,
        **counts,
        "n_gaussians": int(len(means)),
        "n_objects": len([o for o in objects if not o.is_background]),
    }


# ------------------------------------------------------------------ rendered views
@torch.no_grad()
def observed(m: Mapper, kf) -> torch.Tensor:
    """(H,W) pixels of a view whose surface some keyframe saw (in its frustum, its depth agreeing),
    plus the pixels with no depth (nothing there to see). A held-out view also shows surface
    no integrated frame saw; no map can render that, so fidelity is scored on the rest too."""
    P = backproject(kf.depth, kf.camera, kf.T_world_cam).reshape(-1, 3)
    seen = (kf.depth <= 0).reshape(-1)
    for k in m.keyframes:
        pc = P @ k.viewmat[:3, :3].T + k.viewmat[:3, 3]
        d, ok = m._observed_depth(k, pc)
        seen |= ok & ((pc[:, 2] - d).abs() < m.cfg.seed_depth_error * d)
    return seen.reshape(kf.depth.shape)


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def as_keyframe(m: Mapper, frame: Frame):
    """A (held-out) frame prepared as the mapper prepares keyframes, at its stamp's pose (its rows'
    poses go into the prediction instead: `predict_view`)."""
    return m.prepare(dataclasses.replace(frame, T_world_rows=None))


def predict_view(
    m: Mapper, frame: Frame, exposure: torch.Tensor | None = None, pose_delta: torch.Tensor | None = None, kf=None
):
    """(keyframe as recorded, render, colours the camera would have taken) for a (held-out) frame. A
    rolling-shutter view (row poses) is predicted as recorded: the render at its stamp rolled by the
    shutter model through the render's own depth (mapping.shutter); with exposure compensation, through
    the camera response of its instant (`Mapper.exposure_at`: from the keyframes either side in time),
    or through `exposure` (3,4) where given. `pose_delta` (6,): a correction of the frame's pose, as
    `Keyframe.pose_delta` (differentiable: `fit_view` optimises both). `kf`: the frame already prepared
    (`as_keyframe`)."""
    kf = as_keyframe(m, frame) if kf is None else kf
    kf.pose_delta = pose_delta
    out = m.render(kf, detach_geometry=True)
    response = m.exposure_at(frame.stamp) if exposure is None else exposure
    colors = m.respond(out.colors, response).clamp(0, 1)
    if frame.T_world_rows is not None:
        drawn = torch.where(out.alpha > 0.5, out.depth, torch.zeros_like(out.depth)).detach()
        colors = rolling(colors, drawn, kf.camera, frame.T_world_cam, frame.T_world_rows)
    return kf, out, colors


def fit_view(m: Mapper, frame: Frame, steps: int, lr_pose: float = 2e-3, lr_exposure: float = 1e-3, kf=None):
    """The pose correction (6,) and camera response (3,4) under which the frozen map best predicts a
    held-out view (L1 over its pixels, `steps` Adam steps): test-time pose optimisation, as NeRF-- and
    BARF score views whose recorded poses are off. A recorded pose millimetres off shifts every edge by
    a pixel, which is the pose's error, not the map's; 6 + 12 numbers cannot fit a view's content.
    `kf`: the frame already prepared (`as_keyframe`)."""
    E0 = m.exposure_at(frame.stamp)
    exposure = (torch.zeros(3, 4, device=m.device) if E0 is None else E0.clone()).requires_grad_(True)
    delta = torch.zeros(6, device=m.device, requires_grad=True)
    opt = torch.optim.Adam([{"params": [delta], "lr": lr_pose}, {"params": [exposure], "lr": lr_exposure}])
    kf = as_keyframe(m, frame) if kf is None else kf
    for _ in range(steps):
        kf, _, colors = predict_view(m, frame, exposure, delta, kf)
        loss = (colors - kf.rgb).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return delta.detach(), exposure.detach()


@torch.no_grad()
def evaluate_view(m: Mapper, frame: Frame, fit_steps: int = 0) -> dict:
    """PSNR and depth L1 of the map rendered at a (held-out) frame (`predict_view`); `psnr_observed`
    over the pixels the keyframes saw (`observed`); with fit_steps, also `psnr_fitted`: the view
    through the pose and response `fit_view` finds."""
    kf, out, colors = predict_view(m, frame)
    se = (colors - kf.rgb) ** 2
    seen = observed(m, kf)
    valid = (kf.depth > 0) & (out.alpha > 0.5)
    dl1 = float((out.depth - kf.depth).abs()[valid].mean()) if bool(valid.any()) else float("nan")
    row = {
        "psnr": psnr(float(se.mean())),
        "psnr_observed": psnr(float(se[seen].mean())),
        "unseen_fraction": 1.0 - float(seen.float().mean()),
        "depth_l1": dl1,
        "coverage": float(((out.alpha > 0.5) & (kf.depth > 0)).sum() / max(1, int((kf.depth > 0).sum()))),
    }
    if fit_steps > 0:
        with torch.enable_grad():
            delta, exposure = fit_view(m, frame, fit_steps, kf=kf)
        _, _, colors = predict_view(m, frame, exposure, delta, kf)
        row["psnr_fitted"] = psnr(float(((colors - kf.rgb) ** 2).mean()))
        row["fit_correction_mm"] = 1e3 * float(delta[3:].norm())
    return row


def heldout_summary(ev: list[dict]) -> dict:
    """Means of evaluate_view over the held-out views (never integrated)."""

    def mean(k):
        return float(np.nanmean([e[k] for e in ev])) if ev else float("nan")

    out = {
        "heldout_frames": len(ev),
        "heldout_psnr_db": mean("psnr"),
        "heldout_psnr_observed_db": mean("psnr_observed"),
        "heldout_unseen_fraction": mean("unseen_fraction"),
        "heldout_depth_l1_m": mean("depth_l1"),
    }
    if ev and "psnr_fitted" in ev[0]:
        out["heldout_psnr_fitted_db"] = mean("psnr_fitted")
        out["heldout_fit_correction_mm"] = mean("fit_correction_mm")
    return out


def surface_error(m: Mapper, d: Path) -> dict:
    from ..sim.generate import load_gt

    gt = load_gt(d) if (d / "gt.json").exists() else {}
    if "surface_points" not in gt:  # gt.npz left out (the device carries scenes without it)
        return {}
    means = m.map.means.detach().cpu().numpy()
    dist = surface_distance(means, gt)
    return {
        "surface_dist_mm_p50": 1e3 * float(np.median(dist)),
        "surface_dist_mm_p90": 1e3 * float(np.percentile(dist, 90)),
        "table_top_offset_mm": 1e3 * table_top_offset(means, gt),
    }
