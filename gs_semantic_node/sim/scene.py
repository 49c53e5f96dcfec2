"""Tabletop scenes with exact ground truth, rendered headless by MuJoCo.

The `primitives` family builds household objects from MuJoCo primitives (no download, for tests
and CI). Objects rest upright on the table at random yaw, placed without interpenetration by
rejection sampling on their footprint circles; some seeds hold two instances of a class and
similar-shaped distractors (mug / can / bottle, bowl / plate).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from .table import TABLE_HALF, TABLE_TOP

# class -> (descriptions, footprint radius, builder). Builders return MJCF geoms in the body frame
# (body origin on the table surface) for a given rgba.
CLASSES: dict[str, dict] = {
    "mug": {
        "desc": ["a red coffee mug", "a mug", "a cup for coffee"],
        "radius": 0.06,
        "rgba": [(0.8, 0.1, 0.1), (0.85, 0.2, 0.15)],
    },
    "bowl": {
        "desc": ["a ceramic bowl", "a bowl", "a dish for soup"],
        "radius": 0.08,
        "rgba": [(0.9, 0.9, 0.85), (0.3, 0.45, 0.8)],
    },
    "wine bottle": {
        "desc": ["a wine bottle", "a green glass bottle", "a bottle of wine"],
        "radius": 0.045,
        "rgba": [(0.1, 0.45, 0.15), (0.15, 0.35, 0.1)],
    },
    "book": {
        "desc": ["a book", "a hardcover book", "a closed book lying flat"],
        "radius": 0.1,
        "rgba": [(0.2, 0.3, 0.7), (0.6, 0.5, 0.2)],
    },
    "can": {
        "desc": ["a soda can", "a metal can", "a tin can"],
        "radius": 0.045,
        "rgba": [(0.75, 0.75, 0.8), (0.9, 0.6, 0.1)],
    },
    "apple": {
        "desc": ["an apple", "a red apple", "a piece of fruit"],
        "radius": 0.045,
        "rgba": [(0.7, 0.05, 0.05), (0.5, 0.7, 0.1)],
    },
    "butter": {
        "desc": ["a box of butter", "a butter package", "a small yellow box"],
        "radius": 0.06,
        "rgba": [(0.95, 0.85, 0.3), (0.9, 0.8, 0.4)],
    },
}


# Solids of revolution about the vertical: their GT box yaw is the sampler's random yaw, which no
# observation can recover, so metrics also score them against the GT box turned to the prediction's yaw.
AXISYMMETRIC = frozenset({"bowl", "wine bottle", "can", "apple"})


def _geoms(cls: str, rgba: tuple, rng: np.random.Generator) -> str:
    c = "{:.3f} {:.3f} {:.3f} 1".format(*rgba)
    if cls == "mug":
        return (
            f'<geom type="cylinder" size="0.04 0.05" pos="0 0 0.05" rgba="{c}"/>'
            f'<geom type="box" size="0.012 0.008 0.028" pos="0.048 0 0.05" rgba="{c}"/>'
        )
    if cls == "bowl":
        return (
            f'<geom type="cylinder" size="0.035 0.006" pos="0 0 0.006" rgba="{c}"/>'
            f'<geom type="ellipsoid" size="0.075 0.075 0.035" pos="0 0 0.037" rgba="{c}"/>'
        )
    if cls == "wine bottle":
        return (
            f'<geom type="cylinder" size="0.036 0.08" pos="0 0 0.08" rgba="{c}"/>'
            f'<geom type="cylinder" size="0.014 0.045" pos="0 0 0.2" rgba="{c}"/>'
        )
    if cls == "book":
        return f'<geom type="box" size="0.1 0.075 0.018" pos="0 0 0.018" rgba="{c}"/>'
    if cls == "can":
        return f'<geom type="cylinder" size="0.033 0.06" pos="0 0 0.06" rgba="{c}"/>'
    if cls == "apple":
        return f'<geom type="sphere" size="0.04" pos="0 0 0.04" rgba="{c}"/>'
    if cls == "butter":
        return f'<geom type="box" size="0.055 0.03 0.025" pos="0 0 0.025" rgba="{c}"/>'
    raise KeyError(cls)


@dataclass
class ObjectSpec:
    instance_id: int
    cls: str
    xy: tuple
    yaw: float
    rgba: tuple
    descriptions: list = field(default_factory=list)


@dataclass
class SceneSpec:
    seed: int
    objects: list
    family: str = "primitives"


FAMILIES = ("primitives", "libero")


def sample_scene(seed: int, n_objects: int | None = None, family: str = "primitives") -> SceneSpec:
    """Random upright placement without overlap; instance ids start at 3 (1 table, 2 floor)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown scene family {family!r}: {FAMILIES}")
    if family == "libero":
        from .libero import LIBERO_CLASSES, object_extent

        table = {
            c: {"radius": object_extent(c)[0], "desc": d, "rgba": [(1.0, 1.0, 1.0)]}
            for c, (_, d) in LIBERO_CLASSES.items()
        }
    else:
        table = CLASSES
    rng = np.random.default_rng(seed)
    n = int(n_objects or rng.integers(4, 7))
    names = list(table)
    picks = list(rng.choice(names, size=n, replace=True))
    if "mug" not in picks:  # the demo's target: most scenes hold one
        picks[0] = "mug"
    objs, placed = [], []
    for i, cls in enumerate(picks):
        r = table[cls]["radius"]
        for _ in range(200):
            xy = (
                rng.uniform(-TABLE_HALF[0] + r + 0.05, TABLE_HALF[0] - r - 0.05),
                rng.uniform(-TABLE_HALF[1] + r + 0.05, TABLE_HALF[1] - r - 0.05),
            )
            if all(np.hypot(xy[0] - p[0], xy[1] - p[1]) > r + p[2] + 0.03 for p in placed):
                break
        else:
            continue
        placed.append((xy[0], xy[1], r))
        palette = table[cls]["rgba"]
        base = np.array(palette[int(rng.integers(len(palette)))])
        rgba = tuple(np.clip(base + rng.normal(0, 0.03, 3), 0, 1))
        objs.append(
            ObjectSpec(3 + len(objs), cls, xy, float(rng.uniform(-np.pi, np.pi)), rgba, list(table[cls]["desc"]))
        )
    return SceneSpec(seed, objs, family)


# procedural textures of the primitives family (no files)
PRIMITIVE_ASSETS = """<texture name="wood" type="2d" builtin="checker" rgb1="0.55 0.38 0.22" rgb2="0.48 0.32 0.18"
             width="256" height="256" mark="random" random="0.15" markrgb="0.62 0.45 0.28"/>
    <material name="wood" texture="wood" texrepeat="6 6"/>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.75 0.75 0.72" rgb2="0.55 0.55 0.55"
             width="256" height="256"/>
    <material name="floor" texture="floor" texrepeat="8 8"/>"""


def scene_mjcf(spec: SceneSpec) -> str:
    rng = np.random.default_rng(spec.seed + 7)
    bodies = []
    if spec.family == "libero":  # textured assets; the objects are attached by libero_model()
        from .libero import textures_xml

        assets = textures_xml()
    else:
        assets = PRIMITIVE_ASSETS
    for o in spec.objects if spec.family == "primitives" else []:
        q = (np.cos(o.yaw / 2), 0, 0, np.sin(o.yaw / 2))
        bodies.append(
            f'<body name="obj{o.instance_id}" pos="{o.xy[0]:.4f} {o.xy[1]:.4f} {TABLE_TOP}" '
            f'quat="{q[0]:.6f} 0 0 {q[3]:.6f}">{_geoms(o.cls, o.rgba, rng)}</body>'
        )
    return f"""<mujoco model="tabletop_{spec.seed}">
  <visual><headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5"/><quality shadowsize="0"/>
    <global offwidth="1280" offheight="960"/></visual>
  <asset>
    {assets}
  </asset>
  <worldbody>
    <light pos="0.5 -0.5 3" dir="-0.2 0.2 -1" diffuse="0.5 0.5 0.5"/>
    <body name="floor"><geom type="plane" size="4 4 0.1" material="floor"/></body>
    <body name="table" pos="0 0 {TABLE_TOP / 2}">
      <geom type="box" size="{TABLE_HALF[0]} {TABLE_HALF[1]} {TABLE_TOP / 2}" material="wood"/></body>
    {"".join(bodies)}
    <camera name="cam" pos="0 -1 1.2" xyaxes="1 0 0 0 0.6 0.8" fovy="58"/>
  </worldbody>
</mujoco>"""
