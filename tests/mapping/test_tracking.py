import dataclasses

import numpy as np
import pytest
from builders import plane_frame
from scipy.spatial.transform import Rotation

from gs_semantic_node.config import MapperConfig
from gs_semantic_node.mapping.mapper import Mapper
from gs_semantic_node.mapping.tracking import fuse_weight
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
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0, track_map_sigma=0.0))  # the correction whole
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
    cfg = MapperConfig(width=80, height=60, iters_per_keyframe=0, keyframe_translation=0.0, track=True)
    m = Mapper(dataclasses.replace(cfg, track_map_sigma=0.0))  # the corner's map is exact
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
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0, track_map_sigma=0.0))
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


def test_the_given_and_the_aligned_pose_are_fused_by_their_noise():
    assert fuse_weight([1e-6] * 5, 0.005) == 0.0  # corrections within the map's own error: poses exact
    assert fuse_weight([0.02**2] * 5, 0.005) > 0.9  # corrections far beyond it: the given poses are off
    assert 0.4 < fuse_weight([2 * 0.005**2] * 5, 0.005) < 0.6  # equal noise: half of it
    assert fuse_weight([1e-6], 0.0) == 1.0  # no map error assumed: the whole correction


def walk(m, poses, truths, lift=0.0):
    """Integrate corner frames seen from `truths` at the given `poses`; after the first, the map's
    centres are lifted by `lift` (a map a few millimetres off the surface, as real ones are)."""
    for k, (T, truth) in enumerate(zip(poses, truths)):
        f = corner_frame(truth)
        f.T_world_cam = T
        m.integrate(f)
        if k == 0 and lift:
            m.map.params["means"].data[:, 2] += lift
    return [pose_error(kf.T_world_cam.double().numpy(), t)[0] for kf, t in zip(m.keyframes, truths)]


def test_exact_poses_keep_their_pose_against_a_map_that_is_off():
    truths = [np.eye(4) for _ in range(6)]
    for k, T in enumerate(truths):
        T[:3, 3] = [0.01 * k, -0.005 * k, 0.0]
    cfg = dict(width=80, height=60, iters_per_keyframe=0, keyframe_translation=0.0, track=True)
    whole = walk(Mapper(MapperConfig(**cfg, track_map_sigma=0.0)), [t.copy() for t in truths], truths, lift=0.003)
    fused = walk(Mapper(MapperConfig(**cfg)), [t.copy() for t in truths], truths, lift=0.003)
    assert max(whole) > 0.001, whole  # taken whole, the map's 3 mm go into the poses
    assert max(fused) < 0.0005, fused  # fused, the poses stay where they were given


def test_poses_off_by_more_than_the_map_are_still_aligned_to_it():
    """Given poses off by centimetres against a map trusted to 2 mm: nearly the whole correction."""
    truths = [np.eye(4) for _ in range(6)]
    for k, T in enumerate(truths):
        T[:3, 3] = [0.01 * k, -0.005 * k, 0.0]
    given = [truths[0].copy()] + [perturbed(t, 0.012, 0.4, seed=k) for k, t in enumerate(truths[1:])]
    cfg = MapperConfig(width=80, height=60, iters_per_keyframe=0, keyframe_translation=0.0, track=True)
    m = Mapper(dataclasses.replace(cfg, track_map_sigma=0.002))
    walk(m, given, truths)
    anchor = np.linalg.inv(m.keyframes[0].T_world_cam.double().numpy())  # the map moves with its keyframes
    after = [pose_error(anchor @ kf.T_world_cam.double().numpy(), t)[0] for kf, t in zip(m.keyframes, truths)]
    before = [pose_error(g, t)[0] for g, t in zip(given, truths)]
    assert m.last_alignment.weight > 0.8
    assert np.mean(after[1:]) < 0.35 * np.mean(before[1:]), (before, after)
