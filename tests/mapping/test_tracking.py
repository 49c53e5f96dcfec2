import numpy as np
import pytest
from builders import plane_frame
from scipy.spatial.transform import Rotation

from gs_semantic_node.config import MapperConfig
from gs_semantic_node.mapping.mapper import Mapper
from gs_semantic_node.types import Camera, Frame


def corner_frame(T=np.eye(4)):
    """A room corner (back wall, right wall, floor) seen from pose T: every direction of motion
    changes the depth somewhere, so the view pins all six degrees of freedom."""
    cam = Camera(60, 60, 39.5, 29.5, 80, 60)
    v, u = np.mgrid[0:60, 0:80].astype(np.float64)
    rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)
    d = rays @ T[:3, :3].T  # ray directions in the world
    o = T[:3, 3]
    t = np.full(u.shape, np.inf)
    for axis, at in ((2, 1.5), (0, 0.5), (1, 0.4)):  # planes world[axis] = at
        ti = (at - o[axis]) / np.where(np.abs(d[..., axis]) > 1e-9, d[..., axis], np.nan)
        t = np.where((ti > 0) & (ti < t), ti, t)
    rgb = np.full((60, 80, 3), 128, np.uint8)
    return Frame(rgb, t.astype(np.float32), cam, T, 0.0, 0)  # t along a ray with unit z = depth


def perturbed(T, m, deg, seed=0):
    rng = np.random.default_rng(seed)
    out = T.copy()
    out[:3, :3] = Rotation.from_rotvec(np.radians(deg) * rng.normal(size=3) / np.sqrt(3)).as_matrix() @ T[:3, :3]
    out[:3, 3] += m * rng.normal(size=3) / np.sqrt(3)
    return out


def pose_error(A, B):
    R = A[:3, :3] @ B[:3, :3].T
    return np.linalg.norm(A[:3, 3] - B[:3, 3]), np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_keyframe_given_a_wrong_pose_is_aligned_onto_the_map(seed):
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    m.integrate(corner_frame())
    truth = np.eye(4)
    truth[:3, 3] = [0.06, 0.0, 0.0]  # the next keyframe's true pose ...
    f = corner_frame(truth)
    f.T_world_cam = perturbed(truth, 0.008, 0.6, seed)  # ... as odometry gives it
    kf = m.prepare(f)
    a = m.track(kf)
    before = pose_error(f.T_world_cam, truth)
    anchor = m.keyframes[0].T_world_cam.double().numpy()  # the map moved (Mapper._hold_to_given_poses) ...
    after = pose_error(np.linalg.inv(anchor) @ kf.T_world_cam.double().numpy(), truth)  # ... with its keyframes
    assert a.accepted and a.rms_after < a.rms_before
    assert after[0] < 0.25 * before[0] and after[1] < 0.25 * before[1], (before, after)


def test_the_map_stays_where_the_given_poses_put_it_on_average():
    """Aligned to the map, every keyframe would inherit the first keyframe's pose error. The map
    moves by the mean correction instead: the first keyframe's error is shared by all."""
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0, keyframe_translation=0.0, track=True))
    f = corner_frame()
    f.T_world_cam = perturbed(np.eye(4), 0.008, 0.0, seed=3)  # the first pose is off, the rest are right
    m.integrate(f)
    for k in range(1, 6):
        truth = np.eye(4)
        truth[:3, 3] = [0.01 * k, -0.005 * k, 0.0]
        m.integrate(corner_frame(truth))
    given = pose_error(f.T_world_cam, np.eye(4))[0]
    first = pose_error(m.keyframes[0].T_world_cam.double().numpy(), np.eye(4))[0]
    assert first < 0.3 * given, (first, given)  # 6 keyframes share it: 1/6 of it is left


def test_a_bare_plane_corrects_only_what_it_constrains():
    """Seen square on, a plane tells the distance to it and nothing about sliding along it: the
    correction fixes the distance and leaves the slide as given (no drift)."""
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    m.integrate(plane_frame(d=1.5))
    f = plane_frame(d=1.5)
    f.T_world_cam = f.T_world_cam.copy()
    f.T_world_cam[:3, 3] = [0.004, -0.003, 0.006]  # slid 5 mm along the plane, 6 mm off it
    kf = m.prepare(f)
    assert m.track(kf).accepted
    t = (np.linalg.inv(m.keyframes[0].T_world_cam.double().numpy()) @ kf.T_world_cam.double().numpy())[:3, 3]
    assert abs(t[2]) < 0.001 and np.allclose(t[:2], [0.004, -0.003], atol=5e-4), t


def test_a_correction_past_the_bounds_is_refused():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0, track_max_translation=0.002))
    m.integrate(corner_frame())
    f = corner_frame()
    f.T_world_cam = perturbed(np.eye(4), 0.008, 0.0)
    kf = m.prepare(f)
    assert not m.track(kf).accepted
    assert np.allclose(kf.T_world_cam.double().numpy(), f.T_world_cam, atol=1e-6) and m.track_refused == 1
