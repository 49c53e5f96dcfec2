"""A frame aligned to the map's render by its colour and depth (mapping.direct)."""

import dataclasses

import numpy as np
import pytest
import torch
from builders import striped_plane
from test_tracking import perturbed, pose_error

from gs_semantic_node.config import MapperConfig
from gs_semantic_node.mapping.direct import align_to_render
from gs_semantic_node.mapping.mapper import Mapper
from gs_semantic_node.types import Camera


def textured_corner(T, W=80, H=60, f=60.0):
    """Colour and depth of a room corner (walls x = 0.5, y = 0.4, z = 1.5) painted with smooth
    patterns fixed in the world, seen from pose T: colour pins the pose, depth the scale."""
    cam = Camera(f, f, (W - 1) / 2, (H - 1) / 2, W, H)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1) @ T[:3, :3].T
    o = T[:3, 3]
    t = np.full(u.shape, np.inf)
    for axis, at in ((2, 1.5), (0, 0.5), (1, 0.4)):
        ti = (at - o[axis]) / np.where(np.abs(d[..., axis]) > 1e-9, d[..., axis], np.nan)
        t = np.where((ti > 0) & (ti < t), ti, t)
    X = o + d * t[..., None]
    rgb = np.stack(
        [
            0.5 + 0.3 * np.sin(20 * X[..., 0]) * np.cos(15 * X[..., 1]),
            0.5 + 0.3 * np.sin(18 * X[..., 2] + 10 * X[..., 1]),
            0.5 + 0.2 * np.cos(12 * X[..., 0] - 15 * X[..., 2]),
        ],
        -1,
    )
    return torch.tensor(rgb, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), cam  # t: depth (unit-z rays)


def align(frame_pose, start_pose, gain=1.0, offset=0.0, **kw):
    rgb, depth, cam = textured_corner(frame_pose)
    ref_rgb, ref_depth, _ = textured_corner(start_pose)  # the map as rendered from where the frame is thought to be
    T0 = torch.tensor(start_pose, dtype=torch.float32)
    a = align_to_render(rgb * gain + offset, depth, cam, T0, ref_rgb, ref_depth, torch.ones_like(ref_depth), **kw)
    return a, pose_error(start_pose, frame_pose), pose_error(a.T_world_cam.double().numpy(), frame_pose)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_pose_off_by_millimetres_is_aligned_to_the_render(seed):
    truth = perturbed(np.eye(4), 0.01, 0.5, seed)
    a, before, after = align(truth, np.eye(4))
    assert a.accepted and a.cost_after < a.cost_before
    assert after[0] < 0.15 * before[0] and after[1] < 0.25 * before[1], (before, after)


def test_the_frames_exposure_is_solved_with_its_pose():
    truth = perturbed(np.eye(4), 0.01, 0.5, 3)
    a, before, after = align(truth, np.eye(4), gain=1.2, offset=0.03)
    assert a.accepted and after[0] < 0.15 * before[0], (before, after)
    assert torch.allclose(a.gain, torch.full((3,), 1.2), atol=0.03) and torch.allclose(
        a.offset, torch.full((3,), 0.03), atol=0.02
    )


def test_a_correction_past_the_bounds_is_refused():
    truth = perturbed(np.eye(4), 0.01, 0.5, 4)
    a, _, _ = align(truth, np.eye(4), max_translation=0.002)
    assert not a.accepted and torch.equal(a.T_world_cam, torch.eye(4))
    a, _, _ = align(truth, np.eye(4))
    assert a.accepted and 0.005 < a.translation < 0.015  # within 3 cm of the start pose ...
    given = torch.eye(4)
    given[0, 3] = 0.04
    a, _, _ = align(truth, np.eye(4), bounds_from=given)
    assert not a.accepted  # ... but not of the pose the bounds are measured from


def test_a_keyframe_slid_along_a_textured_plane_is_put_back():
    """Depth alone cannot tell a slide along a plane (mapping.tracking leaves it as given); the
    plane's stripes can."""
    cfg = MapperConfig(width=80, height=60, iters_per_keyframe=10, track_map_sigma=0.0)
    places = {}
    for direct in (False, True):
        m = Mapper(dataclasses.replace(cfg, track_direct=direct))
        m.integrate(striped_plane(0.0, 0.0))
        m.integrate(striped_plane(0.06, 0.08))  # recorded 2 cm off along the plane
        anchor = np.linalg.inv(m.keyframes[0].T_world_cam.double().numpy())  # the map moves with its keyframes
        places[direct] = float((anchor @ m.keyframes[1].T_world_cam.double().numpy())[0, 3])
        assert m.track_direct_refused == 0 and (m.last_alignment.direct is not None) == direct
    assert abs(places[False] - 0.08) < 0.003  # as recorded
    assert abs(places[True] - 0.06) < 0.004, places  # where it was
