"""Oriented boxes from an object's Gaussians, robust to floaters, plus box IoU for metrics."""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from ..types import OrientedBox


def _o3d():
    """open3d is imported on first use so the mapping/lifting core loads where it is absent
    (a GPU box without it can still map and lift); fitting a box without it fails loudly."""
    try:
        import open3d
    except ImportError as e:
        raise RuntimeError("object boxes need the 'open3d' package (pip install open3d)") from e
    return open3d


def clean_index(
    points: np.ndarray, opacities: np.ndarray, min_opacity: float = 0.1, std_ratio: float = 2.0, nb: int = 16
) -> np.ndarray:
    """Indices of the points a box is fitted to: opaque enough, statistical outliers (floaters) dropped."""
    idx = np.nonzero(opacities >= min_opacity)[0] if (opacities >= min_opacity).sum() >= 4 else np.arange(len(points))
    if len(idx) < nb + 1:
        return idx
    o3d = _o3d()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[idx].astype(np.float64)))
    _, keep = pc.remove_statistical_outlier(nb_neighbors=nb, std_ratio=std_ratio)
    return idx[np.asarray(keep, dtype=int)] if len(keep) >= 4 else idx


def clean_points(points: np.ndarray, opacities: np.ndarray, *args, **kw) -> np.ndarray:
    """The points `clean_index` keeps."""
    return points[clean_index(points, opacities, *args, **kw)]


def seen_side(seen_from: np.ndarray, min_gap_deg: float, bins: int = 36) -> np.ndarray | None:
    """The horizontal direction (2,) an object was seen from when every view that seeded its Gaussians
    lies on one side of it: `seen_from` (N,3) points from each Gaussian to its seeding camera, and
    their azimuths leave a gap of at least min_gap_deg round the object (its back, which no view has
    shown). Azimuth bins holding under 2 % of the Gaussians count as empty (a stray seed does not close
    the gap). None when the views surround it, or when most directions are not known (zero vectors:
    Gaussians of a loaded map, which may have been seen from anywhere)."""
    known = np.linalg.norm(seen_from, axis=1) > 0.5
    if not len(known) or known.mean() < 0.5:
        return None
    h = seen_from[known, :2]
    h = h[np.linalg.norm(h, axis=1) > 0.1]  # seen from straight above: no side
    if len(h) < 8:
        return None
    az = np.arctan2(h[:, 1], h[:, 0])
    count = np.bincount(((az + np.pi) / (2 * np.pi) * bins).astype(int) % bins, minlength=bins)
    full = count >= max(1, 0.02 * len(h))
    run = best = end = 0
    for k in range(2 * bins):  # the longest circular run of empty bins
        run = 0 if full[k % bins] else run + 1
        if run > best:
            best, end = min(run, bins), k
    if best * 360 / bins < min_gap_deg:
        return None
    gap_centre = -np.pi + (end - (best - 1) / 2 + 0.5) * 2 * np.pi / bins
    return -np.array([np.cos(gap_centre), np.sin(gap_centre)])


def front_circle(t: np.ndarray, side: np.ndarray, tolerance: float, bins: int = 12) -> tuple[float, float] | None:
    """(t, radius) of the circle through an object's front outline seen from above: per bin across
    its width, the point nearest the cameras (largest t), fitted algebraically (Kasa). A sphere's or a
    cylinder's outline is its equator's front arc, whose centre is the object's middle. None for fewer
    than 4 bins, an outline the circle misses by more than `tolerance` rms, one two straight lines
    from its front point fit better (a box's corner: there the rim's points are opposite corners,
    whose mean is its middle), or one too flat for a circle to mean anything (radius over 3/4 of the
    width: a face seen square-on)."""
    lo, w = float(side.min()), float(np.ptp(side))
    n = int(np.clip(len(t) // 3, 4, bins))
    b = np.minimum(((side - lo) / max(w, 1e-9) * n).astype(int), n - 1)
    order = np.lexsort((t, b))  # by bin, then t: each bin's last is its front
    env = order[np.r_[b[order][1:] != b[order][:-1], True]]
    if len(env) < 4:
        return None
    s_env, t_env = side[env], t[env]
    A = np.column_stack([s_env, t_env, np.ones(len(env))])
    (a, c, d), *_ = np.linalg.lstsq(A, -(s_env**2 + t_env**2), rcond=None)
    r2 = (a * a + c * c) / 4 - d
    if r2 <= 0 or np.sqrt(r2) > 0.75 * w:
        return None
    r = float(np.sqrt(r2))
    miss = float(np.sqrt(np.mean((np.hypot(s_env + a / 2, t_env + c / 2) - r) ** 2)))
    return (-c / 2, r) if miss <= min(tolerance, _corner_miss(s_env, t_env)) else None


def _corner_miss(s: np.ndarray, t: np.ndarray) -> float:
    """Rms miss of an outline by the two lines from its front point that fit each side of it best."""
    k = int(np.argmax(t))
    ds, dt = s - s[k], t - t[k]
    miss = [np.zeros(1)]
    for part in (ds < 0, ds > 0):
        if part.any():
            slope = float(ds[part] @ dt[part]) / float(ds[part] @ ds[part])
            miss.append(dt[part] - slope * ds[part])
    return float(np.sqrt(np.mean(np.concatenate(miss) ** 2)))


def mirror_back(points: np.ndarray, toward: np.ndarray, resolution: float, rim: float = 5.0) -> np.ndarray:
    """The seen front of an object turned round behind itself: what lies in front of its middle,
    turned half a turn about the vertical axis through the middle, spans what the object occupies
    behind it. Half a turn maps a box, a cylinder, a sphere onto itself whatever the side it was seen
    from (a reflection about a plane facing the cameras turns a box's seen face askew whenever the
    view is not square-on to it). The middle: across the view, halfway between the silhouette's
    rims (the outer `rim` %); along it, the farther back of the rim's depth (where a round or boxy
    object's middle is when seen whole) and the centre of the circle through the front outline, where
    one fits it within `resolution`, the Gaussians' scale (front_circle). Seeds stop short of the rim
    by up to a pixel, and on a round object a pixel in from the rim lies well in front of its middle;
    the circle through the outline does not depend on the rim."""
    u = np.array([toward[0], toward[1], 0.0])
    v = np.array([-toward[1], toward[0], 0.0])
    t, side = points @ u, points @ v
    lo, hi = np.percentile(side, [rim, 100 - rim])
    t_mid = float(np.median(t[(side <= lo) | (side >= hi)]))
    circle = front_circle(t, side, resolution)
    if circle is not None:
        t_mid = min(t_mid, circle[0])
    ahead = t > t_mid
    mid = t_mid * u + 0.5 * float(side.min() + side.max()) * v
    out = points[ahead].copy()
    out[:, :2] = 2 * mid[:2] - out[:, :2]
    return out


def _footprint(xy: np.ndarray, u: np.ndarray) -> tuple:
    v = np.array([-u[1], u[0]])
    a, b = xy @ u, xy @ v
    return (
        (a.max() - a.min()) * (b.max() - b.min()),
        u,
        v,
        (a.min() + a.max()) / 2,
        (b.min() + b.max()) / 2,
        a.max() - a.min(),
        b.max() - b.min(),
    )


def upright_box(points: np.ndarray, axis_tolerance: float = 0.0) -> OrientedBox:
    """Gravity-aligned box (yaw only) of minimal footprint: what a tabletop grasp planner wants.

    With axis_tolerance > 0 the footprint is turned to the points' principal axis when that costs
    at most this fraction of extra area: a mug's minimal box stands askew to its handle (a little
    less area than the body-aligned one), a yaw no planner or annotator would pick."""
    z0, z1 = points[:, 2].min(), points[:, 2].max()
    xy = points[:, :2]
    best = None
    try:
        hull = xy[ConvexHull(xy).vertices]
    except (QhullError, ValueError):
        hull = xy
    for i in range(len(hull)):
        e = hull[(i + 1) % len(hull)] - hull[i]
        n = np.linalg.norm(e)
        if n < 1e-9:
            continue
        cand = _footprint(xy, e / n)
        if best is None or cand[0] < best[0]:
            best = cand
    if best is None:
        lo, hi = points.min(0), points.max(0)
        return OrientedBox((lo + hi) / 2, np.eye(3), np.maximum(hi - lo, 1e-3))
    if axis_tolerance > 0 and len(xy) >= 3:
        w, V = np.linalg.eigh(np.cov((xy - xy.mean(0)).T))
        pca = _footprint(xy, V[:, int(np.argmax(w))])
        if pca[0] <= best[0] * (1 + axis_tolerance):
            best = pca
    _, u, v, ca, cb, sa, sb = best
    R = np.eye(3)
    R[:2, 0], R[:2, 1] = u, v
    center = np.array([*(ca * u + cb * v), (z0 + z1) / 2])
    return OrientedBox(center, R, np.maximum(np.array([sa, sb, z1 - z0]), 1e-3))


def side_coverage(points: np.ndarray, box: OrientedBox, depth: float) -> np.ndarray:
    """(4, 2): for the vertical sides of an upright box (+x, -x, +y, -y in its frame), how much of
    the side's width and of its height the points within `depth` of it span. A flat face puts
    centres over the whole side (about 1, 1), a cylinder's wall a vertical strip (small, about 1),
    a sphere a patch (small, small)."""
    loc = (points - box.center) @ box.rotation
    out = np.zeros((4, 2))
    for k, (ax, sgn) in enumerate(((0, 1), (0, -1), (1, 1), (1, -1))):
        t = sgn * loc[:, ax]
        near = loc[t >= t.max() - depth]
        span = near.max(0) - near.min(0)
        out[k] = span[1 - ax] / max(float(box.size[1 - ax]), 1e-6), span[2] / max(float(box.size[2]), 1e-6)
    return out


def grow_sides(
    points: np.ndarray, box: OrientedBox, sigma: float, grow: float, flat: float = 0.0, round_: float = 0.0
) -> OrientedBox:
    """Widen an upright box around Gaussian centres to the surface they render.

    Centres on a flat face lie on it; where the surface curves, rendering pulls them inside the
    silhouette (an 80 mm apple's centres end at radius 33 mm, its seeds at 39). Each side grows by
    `grow` scales times the share of its two directions (across, up) that curve: a direction is
    curved at coverage <= `round_`, flat at >= `flat`, linear between. So a sphere grows `grow`, a
    cylinder's wall half of it, a flat face nothing; flat <= round_ grows every side by `grow`."""
    if flat <= round_:
        k = np.full(4, grow)
    else:
        k = grow * np.clip((flat - side_coverage(points, box, sigma)) / (flat - round_), 0.0, 1.0).mean(1)
    d = sigma * k  # +x, -x, +y, -y
    shift = np.array([(d[0] - d[1]) / 2, (d[2] - d[3]) / 2, 0.0])
    return OrientedBox(
        box.center + box.rotation @ shift, box.rotation, box.size + np.array([d[0] + d[1], d[2] + d[3], 0.0])
    )


def minimal_box(points: np.ndarray) -> OrientedBox:
    o3d = _o3d()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    b = pc.get_minimal_oriented_bounding_box()
    return OrientedBox(np.asarray(b.center), np.asarray(b.R), np.asarray(b.extent))


def fit_box(points: np.ndarray, mode: str = "upright", axis_tolerance: float = 0.0) -> OrientedBox:
    if len(points) < 4:
        lo, hi = (points.min(0), points.max(0)) if len(points) else (np.zeros(3), np.zeros(3))
        return OrientedBox((lo + hi) / 2, np.eye(3), np.maximum(hi - lo, 1e-3))
    return minimal_box(points) if mode == "minimal" else upright_box(points, axis_tolerance)


def _inside(box: OrientedBox, pts: np.ndarray) -> np.ndarray:
    loc = (pts - box.center) @ box.rotation
    return np.all(np.abs(loc) <= box.size / 2 + 1e-9, axis=1)


def box_iou(a: OrientedBox, b: OrientedBox, n: int = 40000, seed: int = 0) -> float:
    """3D IoU of two oriented boxes by quasi-uniform sampling of both (error ~1% at n=40k)."""
    rng = np.random.default_rng(seed)
    va, vb = float(np.prod(a.size)), float(np.prod(b.size))
    if va <= 0 or vb <= 0:
        return 0.0
    ua = a.center + ((rng.random((n, 3)) - 0.5) * a.size) @ a.rotation.T
    inter_a = _inside(b, ua).mean() * va
    ub = b.center + ((rng.random((n, 3)) - 0.5) * b.size) @ b.rotation.T
    inter_b = _inside(a, ub).mean() * vb
    inter = 0.5 * (inter_a + inter_b)
    return float(inter / max(va + vb - inter, 1e-12))
