"""Render a scene along a robot-like camera trajectory, with exact GT (masks, boxes, surfaces)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

os.environ.setdefault("MUJOCO_GL", "egl")
# Mesa's EGL (llvmpipe) and triton (imported lazily by torch.optim via torch._dynamo) each carry an
# LLVM; when Mesa's loads first, importing triton later segfaults. Load triton's first.
try:
    import torch._dynamo  # noqa: F401,E402
except Exception:  # pragma: no cover - torch builds without dynamo/triton
    pass
import mujoco  # noqa: E402

from ..types import Camera, Frame, OrientedBox  # noqa: E402
from .changes import AWAY  # noqa: E402
from .libero import visual_points  # noqa: E402
from .scene import TABLE_HALF, TABLE_TOP, SceneSpec, scene_mjcf  # noqa: E402

# optical (x right, y down, z forward) -> MuJoCo camera (x right, y up, looking along -z)
OPTICAL_TO_MJ = np.diag([1.0, -1.0, -1.0])
TABLE_ID, FLOOR_ID = 1, 2


def look_at(eye, target, up=(0, 0, 1)) -> np.ndarray:
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:  # looking straight down
        x = np.cross(z, (0, 1, 0))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], 1)
    T[:3, 3] = eye
    return T


def trajectory(kind: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Camera optical-frame poses in the map frame for orbit | approach | wrist."""
    c = np.array([0.0, 0.0, TABLE_TOP])
    poses = []
    phase = rng.uniform(0, 2 * np.pi)
    for i in range(n):
        s = i / max(1, n - 1)
        if kind == "orbit":
            a = phase + 2 * np.pi * s
            r, h = 1.0 + 0.05 * np.sin(3 * a), 0.55 + 0.05 * np.cos(2 * a)
            eye = c + [r * np.cos(a), r * np.sin(a), h]
            poses.append(look_at(eye, c + [0, 0, 0.05]))
        elif kind == "approach":
            a = phase + 0.6 * np.sin(np.pi * s)
            r = 1.8 - 0.9 * s
            eye = c + [r * np.cos(a), r * np.sin(a), 0.6 - 0.1 * s]
            poses.append(look_at(eye, c + [0, 0, 0.05]))
        elif kind == "wrist":
            x = -TABLE_HALF[0] * 0.7 + 1.4 * TABLE_HALF[0] * s
            y = 0.2 * np.sin(2 * np.pi * s)
            eye = c + [x, y - 0.35, 0.55]
            poses.append(look_at(eye, c + [x, y + 0.05, 0]))
        else:
            raise ValueError(f"unknown trajectory {kind!r} (orbit | approach | wrist)")
    return poses


@dataclass
class GTObject:
    instance_id: int
    cls: str
    descriptions: list
    obb: OrientedBox
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    is_background: bool = False


class SceneRenderer:
    def __init__(self, spec: SceneSpec, width: int = 640, height: int = 480, fovy_deg: float = 58.0):
        self.spec = spec
        if spec.family == "libero":
            from .libero import libero_model

            self.model = libero_model(spec, scene_mjcf(spec))
        else:
            self.model = mujoco.MjModel.from_xml_string(scene_mjcf(spec))
        self.data = mujoco.MjData(self.model)
        mujoco.mj_forward(self.model, self.data)
        self.renderer = mujoco.Renderer(self.model, height, width)
        self.cam_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, "cam")
        self.model.cam_fovy[self.cam_id] = fovy_deg
        f = 0.5 * height / np.tan(np.radians(fovy_deg) / 2)
        self.camera = Camera(f, f, (width - 1) / 2, (height - 1) / 2, width, height)
        # geom -> instance id
        self.geom_instance = np.zeros(self.model.ngeom, dtype=np.int32)
        for g in range(self.model.ngeom):
            root = self.model.body_rootid[self.model.geom_bodyid[g]]  # objects may nest bodies
            name = mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, root) or ""
            self.geom_instance[g] = (
                TABLE_ID
                if name == "table"
                else FLOOR_ID
                if name == "floor"
                else int(name[3:])
                if name.startswith("obj")
                else 0
            )
        self.rest_height = {
            o.instance_id: float(self.model.body_pos[self._body(o.instance_id)][2]) for o in spec.objects
        }

    def close(self):
        self.renderer.close()

    def _body(self, instance_id: int) -> int:
        return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, f"obj{instance_id}")

    def place(self, instance_id: int, xy: tuple | None, yaw: float = 0.0) -> None:
        """Stand an object at xy with yaw on the table (at the height it rests at), or away (xy None):
        the objects have no joints, so their bodies' poses are the model's."""
        b = self._body(instance_id)
        if xy is None:
            self.model.body_pos[b] = AWAY
        else:
            self.model.body_pos[b] = [xy[0], xy[1], self.rest_height[instance_id]]
            self.model.body_quat[b] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        mujoco.mj_forward(self.model, self.data)

    def render(self, T_world_cam: np.ndarray, index: int = 0, stamp: float = 0.0) -> Frame:
        T_mj = T_world_cam[:3, :3] @ OPTICAL_TO_MJ
        self.model.cam_pos[self.cam_id] = T_world_cam[:3, 3]
        q = Rotation.from_matrix(T_mj).as_quat()  # xyzw
        self.model.cam_quat[self.cam_id] = [q[3], q[0], q[1], q[2]]
        mujoco.mj_forward(self.model, self.data)
        r = self.renderer
        r.update_scene(self.data, camera=self.cam_id)
        rgb = r.render().copy()
        r.enable_depth_rendering()
        r.update_scene(self.data, camera=self.cam_id)
        depth = r.render().astype(np.float32).copy()
        r.disable_depth_rendering()
        r.enable_segmentation_rendering()
        r.update_scene(self.data, camera=self.cam_id)
        seg = r.render()
        r.disable_segmentation_rendering()
        geom = seg[..., 0]
        inst = np.where(geom >= 0, self.geom_instance[np.clip(geom, 0, None)], 0).astype(np.int32)
        depth[inst == 0] = 0.0
        return Frame(rgb, depth, self.camera, T_world_cam.copy(), stamp, index, inst)

    def gt_objects(self) -> list[GTObject]:
        """The objects standing on the table now (not those kept away), then table and floor."""
        out = []
        m, d = self.model, self.data
        for o in self.spec.objects:
            if self.model.body_pos[self._body(o.instance_id)][2] == AWAY[2]:
                continue
            bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"obj{o.instance_id}")
            Rb = d.xmat[bid].reshape(3, 3)
            corners = []
            for g in np.nonzero((m.body_rootid[m.geom_bodyid] == bid) & (m.geom_rgba[:, 3] > 0))[0]:
                if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH:  # exact: the mesh's own vertices
                    wpts = visual_points(m, d, [g])
                else:
                    c, h = m.geom_aabb[g, :3], m.geom_aabb[g, 3:]
                    loc = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * h + c
                    wpts = loc @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g]
                corners.append((wpts - d.xpos[bid]) @ Rb)  # into the object's body frame
            pts = np.concatenate(corners)
            lo, hi = pts.min(0), pts.max(0)
            center = d.xpos[bid] + Rb @ ((lo + hi) / 2)
            obb = OrientedBox(center, Rb.copy(), hi - lo)
            wc = obb.corners()
            out.append(GTObject(o.instance_id, o.cls, o.descriptions, obb, wc.min(0), wc.max(0)))
        t_size = np.array([2 * TABLE_HALF[0], 2 * TABLE_HALF[1], TABLE_TOP])
        t_obb = OrientedBox(np.array([0, 0, TABLE_TOP / 2]), np.eye(3), t_size)
        out.append(
            GTObject(
                TABLE_ID,
                "table",
                ["a wooden table", "a table"],
                t_obb,
                -t_size / 2 + t_obb.center,
                t_size / 2 + t_obb.center,
                True,
            )
        )
        f_obb = OrientedBox(np.array([0, 0, -0.005]), np.eye(3), np.array([8.0, 8.0, 0.01]))
        out.append(
            GTObject(
                FLOOR_ID,
                "floor",
                ["the floor", "a tiled floor"],
                f_obb,
                np.array([-4, -4, -0.01]),
                np.array([4, 4, 0.0]),
                True,
            )
        )
        return out
