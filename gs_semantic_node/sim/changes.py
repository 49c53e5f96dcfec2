"""Scenes that change while the camera maps them: objects moved, removed or added at one frame.

The changed objects are of a class the scene holds once (and an added one of a class it lacks), so
"the <class>" names one thing before and after. A moved object goes to a free place on the table
(clear of every object where it stands and where it stood); a removed or not yet added object
waits far below the floor, where no camera sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import CLASSES, ObjectSpec, SceneSpec
from .table import TABLE_HALF

CHANGE_KINDS = ("moved", "removed", "added")
CHANGE_SETS = {"moved": ("moved",), "removed": ("removed",), "added": ("added",), "mixed": CHANGE_KINDS}
AWAY = (40.0, 40.0, -40.0)  # below the floor plane and outside every view


@dataclass
class Change:
    kind: str  # moved | removed | added
    instance_id: int
    cls: str
    xy: tuple | None = None  # where it stands after the change (moved, added)
    yaw: float = 0.0


def _family_table(family: str) -> dict:
    if family == "libero":
        from .libero import LIBERO_CLASSES, object_extent

        return {c: {"radius": object_extent(c)[0], "desc": d} for c, (_, d) in LIBERO_CLASSES.items()}
    return CLASSES


def _free_place(rng: np.random.Generator, r: float, taken: list[tuple]) -> tuple | None:
    for _ in range(400):
        xy = (
            rng.uniform(-TABLE_HALF[0] + r + 0.05, TABLE_HALF[0] - r - 0.05),
            rng.uniform(-TABLE_HALF[1] + r + 0.05, TABLE_HALF[1] - r - 0.05),
        )
        if all(np.hypot(xy[0] - p[0], xy[1] - p[1]) > r + p[2] + 0.03 for p in taken):
            return xy
    return None


def sample_changes(spec: SceneSpec, kinds: str, seed: int, prefer: tuple = ()) -> list[Change]:
    """The changes of `kinds` (moved | removed | added | mixed) for a scene, objects of the `prefer`
    classes changed first; an added object is appended to spec.objects (the renderer keeps it away
    until the change)."""
    if kinds not in CHANGE_SETS:
        raise ValueError(f"unknown change set {kinds!r}: {sorted(CHANGE_SETS)}")
    rng = np.random.default_rng(seed + 1009)
    table = _family_table(spec.family)
    counts: dict[str, int] = {}
    for o in spec.objects:
        counts[o.cls] = counts.get(o.cls, 0) + 1
    unique = [o for o in spec.objects if counts[o.cls] == 1]
    rng.shuffle(unique)
    unique.sort(key=lambda o: o.cls in prefer)  # popped from the end: preferred first
    taken = [(o.xy[0], o.xy[1], table[o.cls]["radius"]) for o in spec.objects]
    out: list[Change] = []
    for kind in CHANGE_SETS[kinds]:
        if kind == "added":
            absent = [c for c in table if c not in counts]
            if not absent:
                continue
            cls = str(rng.choice(absent))
            xy = _free_place(rng, table[cls]["radius"], taken)
            if xy is None:
                continue
            taken.append((xy[0], xy[1], table[cls]["radius"]))
            iid = 3 + len(spec.objects)
            rgba = tuple(np.clip(np.array(table[cls].get("rgba", [(1.0, 1.0, 1.0)])[0]), 0, 1))
            spec.objects.append(ObjectSpec(iid, cls, xy, 0.0, rgba, list(table[cls]["desc"])))
            out.append(Change("added", iid, cls, xy, float(rng.uniform(-np.pi, np.pi))))
            continue
        if not unique:
            continue
        o = unique.pop()
        if kind == "removed":
            out.append(Change("removed", o.instance_id, o.cls))
            continue
        xy = _free_place(rng, table[o.cls]["radius"], taken)
        if xy is None:
            continue
        taken.append((xy[0], xy[1], table[o.cls]["radius"]))
        out.append(Change("moved", o.instance_id, o.cls, xy, float(rng.uniform(-np.pi, np.pi))))
    return out
