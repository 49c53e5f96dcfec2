"""`gs-semantic bench changes`: the map through a changing scene (oracle perception).

Each seed's scene changes once (`sim --changes`: objects moved, removed, added) and the camera goes
round again. Scored per change, with change handling (free-space carving + the change tracker) and
without, side by side:
- found_new: the query for a moved / added object answers with box IoU >= 0.5 against its new box;
- ghost: a query answers (any result) with IoU >= 0.25 against a moved / removed object's old box;
- id_kept: the moved object answers with the id it had before the change;
- removed_forgotten: no object of ListObjects and no query answer lies at a removed object's old box;
- announced: `~/changes` carried the change's own event (its kind, its class's label) after it happened;
- keyframes_to_update: keyframes from the first that has seen the changed places (the old one: its box
  centre in view and not hidden; the new one: the object in view; for a move, both) to the one after
  which a reader's snapshot reflects the change, both counted.
Wall time per keyframe (map + perception + lift + refresh) is recorded for the cost comparison, and
spurious change events: any before the scene changed, and those after it about a class nobody changed.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..io.bags import read_frames
from ..pipeline import SemanticMappingPipeline
from ..semantics.boxes import box_iou
from ..sim.generate import load_gt
from ..types import OrientedBox
from .common import scene, scene_options
from .quality import bench_config

FOUND_IOU, GHOST_IOU = 0.5, 0.25
MIN_PIXELS = 400  # of an object's GT mask at the bag's 640x480: ~25 pixels at the 160x120 it is mapped at
HANDLING_OFF = {"mapper.free_space_carving": False, "semantics.track_changes": False}


def _box(d):
    return OrientedBox.from_dict(d) if d else None


def _in_view(frame, box: OrientedBox | None) -> bool:
    """The box centre projects into the view and nothing observed stands in front of it."""
    if box is None:
        return False
    c = np.linalg.inv(frame.T_world_cam) @ np.append(box.center, 1.0)
    if c[2] <= 0.1:
        return False
    cam = frame.camera
    u, v = int(round(cam.fx * c[0] / c[2] + cam.cx)), int(round(cam.fy * c[1] / c[2] + cam.cy))
    if not (0 <= u < cam.width and 0 <= v < cam.height):
        return False
    d = float(frame.depth[v, u])
    return d == 0 or d >= c[2] - float(np.max(box.size)) / 2


def sees(frame, c: dict) -> tuple[bool, bool]:
    """Whether a frame sees a change's old place (in view, not hidden) and its new one (the object in
    view: MIN_PIXELS of its GT mask). A change counts as seen once each place it has was seen."""
    old, new = _box(c["old_obb"]), _box(c["new_obb"])
    seen_new = new is not None and int((frame.gt_instances == c["instance_id"]).sum()) >= MIN_PIXELS
    return (old is not None and _in_view(frame, old), seen_new)


def score(p: SemanticMappingPipeline, c: dict, id_before: int | None) -> dict:
    """One change against what a reader of the pipeline sees now."""
    old, new = _box(c["old_obb"]), _box(c["new_obb"])
    r = p.query(f"grab the {c['class']}", 0)
    top = r.objects[0] if r.found else None
    out = {}
    if new is not None:
        out["found_new"] = bool(top is not None and box_iou(top.obb, new) >= FOUND_IOU)
    if old is not None:
        out["ghost"] = any(box_iou(o.obb, old) >= GHOST_IOU for o in r.objects)
    if c["kind"] == "moved":
        out["id_kept"] = bool(out["found_new"] and id_before is not None and top.id == id_before)
    if c["kind"] == "removed":
        listed = [o for o in p.objects() if o.id == id_before or box_iou(o.obb, old) >= GHOST_IOU]
        out["removed_forgotten"] = not listed and not out["ghost"]
    out["reflected"] = out.get("found_new", True) and not out.get("ghost", False) and out.get("removed_forgotten", True)
    return out


def spurious(events: list[dict], changes: list[dict], t_change: float) -> list[dict]:
    """Change events nobody's change explains: any before the scene changed, and those after it
    about a class nobody changed."""
    changed = {c["class"] for c in changes}
    return [e for e in events if e["stamp"] < t_change or e["label"] not in changed]


def announced(events: list[dict], c: dict, t_change: float) -> bool:
    """A change's own event reached `~/changes`: its kind, under its class's label, after it happened."""
    return any(e["kind"] == c["kind"] and e["label"] == c["class"] and e["stamp"] >= t_change for e in events)


def changes_one(seed: int, frames: int, root: Path, cfg, opts: dict) -> dict:
    d = scene(seed, frames, root, opts)
    gt = load_gt(d)
    cfg = copy.deepcopy(cfg)
    cfg.perception.gt_path = str(d / "gt.json")
    p = SemanticMappingPipeline(cfg)
    changes = gt.get("changes") or []
    at = changes[0]["frame"] if changes else frames
    before: dict[int, int | None] = {}
    first_seen: dict[int, int] = {}
    seen = {i: [c["old_obb"] is None, c["new_obb"] is None] for i, c in enumerate(changes)}
    updated: dict[int, int] = {}
    kfs_after, t_kf, t_change = 0, [], float("inf")
    for f in read_frames(d, cfg.node, with_gt=True):  # the GT masks tell where the objects are seen
        if f.index == at:  # what the map said about the changed objects just before
            t_change = f.stamp
            p.finish()
            for i, c in enumerate(changes):
                old = _box(c["old_obb"])
                r = p.query(f"grab the {c['class']}", 0)
                hit = [o for o in r.objects if old is not None and box_iou(o.obb, old) >= GHOST_IOU]
                before[i] = hit[0].id if hit else None
        t = time.perf_counter()
        if not p.process(f):
            continue
        t_kf.append(1e3 * (time.perf_counter() - t))
        if f.index < at:
            continue
        kfs_after += 1
        for i, c in enumerate(changes):
            if i not in first_seen:
                seen[i] = [a or b for a, b in zip(seen[i], sees(f, c))]
                if all(seen[i]):
                    first_seen[i] = kfs_after
            if i in first_seen and i not in updated and score(p, c, before.get(i))["reflected"]:
                updated[i] = kfs_after
    p.finish()
    events = [{"kind": e.kind, "id": e.id, "label": e.label, "stamp": e.stamp} for e in p.snapshot.changes]
    rows = []
    for i, c in enumerate(changes):
        s = score(p, c, before.get(i))
        lag = updated[i] - first_seen[i] + 1 if i in updated and s["reflected"] else None
        rows.append(
            {
                "seed": seed,
                "kind": c["kind"],
                "class": c["class"],
                **s,
                "announced": announced(events, c, t_change),
                "keyframes_to_update": lag,
            }
        )
    return {
        "seed": seed,
        "changes": rows,
        "events": events,
        "spurious_events": len(spurious(events, changes, t_change)),
        "keyframe_ms": t_kf,
        "keyframes_after": kfs_after,
    }


def summarise(rows: list[dict]) -> dict:
    def mean(key):
        v = [float(r[key]) for r in rows if key in r]
        return float(np.mean(v)) if v else None

    lags = [r["keyframes_to_update"] for r in rows]
    done = [x for x in lags if x is not None]

    def pct(q):  # a change never reflected counts as slower than any that was: "never" when it sets the figure
        if not lags:
            return None
        v = float(np.percentile([x if x is not None else np.inf for x in lags], q, method="higher"))
        return v if np.isfinite(v) else "never"

    return {
        "changes": len(rows),
        **{k: mean(k) for k in ("found_new", "ghost", "id_kept", "removed_forgotten", "announced")},
        "never_updated": len(lags) - len(done),
        "keyframes_to_update_p50": pct(50),
        "keyframes_to_update_p90": pct(90),
        "keyframes_to_update_mean_of_updated": float(np.mean(done)) if done else None,
    }


COLS = (
    "found_new",
    "ghost",
    "id_kept",
    "removed_forgotten",
    "announced",
    "keyframes_to_update_p50",
    "keyframes_to_update_p90",
)


def _fmt(v) -> str:
    return "-" if v is None else v if isinstance(v, str) else f"{v:.2f}"


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in a.seeds.split(",") if s]
    opts = {**scene_options(a), "changes": a.changes or "mixed"}
    t0 = time.monotonic()
    res = {
        "perception": "oracle perception (GT masks + SAM-like noise) + MiniLM text proxy",
        "scene": opts,
        "seeds": seeds,
        "frames": a.frames,
        "overrides": list(a.param),
        "methods": {},
    }
    cfg_on = bench_config(a)
    cfg_off = copy.deepcopy(cfg_on)
    for k, v in HANDLING_OFF.items():
        cfg_off.set(k, v)
    for name, cfg in (("change handling", cfg_on), ("no change handling", cfg_off)):
        runs = [changes_one(s, a.frames, out, cfg, opts) for s in tqdm(seeds, desc=name)]
        rows = [r for x in runs for r in x["changes"]]
        kinds = sorted({r["kind"] for r in rows})
        res["methods"][name] = {
            "overall": summarise(rows),
            "per_kind": {k: summarise([r for r in rows if r["kind"] == k]) for k in kinds},
            "keyframe_ms_mean": float(np.mean([t for x in runs for t in x["keyframe_ms"]])),
            "keyframe_ms_per_seed": {x["seed"]: float(np.mean(x["keyframe_ms"])) for x in runs},
            "spurious_events_per_scene": float(np.mean([x["spurious_events"] for x in runs])),
            "rows": rows,
            "events": {x["seed"]: x["events"] for x in runs},
        }
    res["wall_s"] = round(time.monotonic() - t0, 1)
    (out / "changes.json").write_text(json.dumps(res, indent=1))
    print(f"changes (ORACLE PERCEPTION, scenes {opts}, seeds {seeds}, {a.frames} frames)")
    print(f"{'method':20} {'kind':8} {'n':>3} " + " ".join(f"{c[:18]:>18}" for c in COLS) + f" {'ms/keyframe':>12}")
    for name, m in res["methods"].items():
        for kind, s in [("overall", m["overall"]), *m["per_kind"].items()]:
            vals = " ".join(f"{_fmt(s[c]):>18}" for c in COLS)
            ms = f"{m['keyframe_ms_mean']:12.0f}" if kind == "overall" else ""
            print(f"{name:20} {kind:8} {s['changes']:3d} {vals} {ms}")
        print(f"{name}: spurious change events per scene {m['spurious_events_per_scene']:.2f}")
    return 0
