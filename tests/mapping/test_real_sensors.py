"""What real cameras bring: lens distortion, exposure changes, depth noise growing with distance."""

import dataclasses
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from builders import plane_frame, striped_plane

from gs_semantic_node.config import MapperConfig
from gs_semantic_node.io.validate import InputFault, camera_from_info
from gs_semantic_node.mapping.mapper import Mapper
from gs_semantic_node.mapping.rectify import distort, rectify
from gs_semantic_node.types import Camera, Frame

TUM_FR1 = (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)


def test_rectify_puts_a_distorted_point_where_the_pinhole_camera_sees_it():
    cam = Camera(500.0, 500.0, 319.5, 239.5, 640, 480, TUM_FR1)  # TUM-like Kinect
    x, y = 0.55, 0.4  # near the corner: several pixels of distortion
    xd, yd = distort(np.array(x), np.array(y), cam.distortion)
    ud, vd = int(round(float(xd) * cam.fx + cam.cx)), int(round(float(yd) * cam.fy + cam.cy))
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[vd - 1 : vd + 2, ud - 1 : ud + 2] = 255
    depth = np.ones((480, 640), np.float32)
    out = rectify(Frame(rgb, depth, cam, np.eye(4), 0.0))
    v, u = np.unravel_index(np.argmax(out.rgb[..., 0]), out.rgb.shape[:2])
    pin = out.camera  # the pinhole camera it was rectified to: sees (x, y) at its own focal length
    xd2, yd2 = distort(np.array((u - pin.cx) / pin.fx), np.array((v - pin.cy) / pin.fy), cam.distortion)
    assert abs(float(xd2) * cam.fx + cam.cx - ud) <= 1.5 and abs(float(yd2) * cam.fy + cam.cy - vd) <= 1.5
    assert pin.fx >= cam.fx  # zoomed in, never out
    edge = rectify(Frame(np.full((480, 640, 3), 200, np.uint8), depth, cam, np.eye(4), 0.0))
    assert edge.rgb.min() > 150  # no black border: every rectified pixel has a raw pixel behind it
    assert abs(ud - (x * cam.fx + cam.cx)) > 5  # the raw image had it elsewhere
    assert out.camera.distortion == () and out.depth.dtype == np.float32
    pinhole = Frame(rgb, depth, dataclasses.replace(cam, distortion=()), np.eye(4), 0.0)
    assert rectify(pinhole) is pinhole


def test_camera_info_carries_distortion_and_refuses_models_it_cannot_undo():
    info = NS(
        k=[200, 0, 159.5, 0, 200, 119.5, 0, 0, 1], width=320, height=240, d=list(TUM_FR1), distortion_model="plumb_bob"
    )
    assert camera_from_info(info).distortion == TUM_FR1
    with pytest.raises(InputFault, match="equidistant"):
        camera_from_info(NS(**{**vars(info), "distortion_model": "equidistant"}))
    assert camera_from_info(NS(**{**vars(info), "d": [0.0] * 5})).distortion == ()


def test_depth_weights_follow_the_noise_and_drop_edges():
    m = Mapper(MapperConfig(width=80, height=60, depth_noise_weighting=True))
    d = torch.ones(60, 80)
    d[:, 40:] = 2.0  # a far half and a depth edge between
    w = m.depth_weights(d)
    assert float(w[30, 10]) == pytest.approx(4 * float(w[30, 70]), rel=1e-5)  # std ~ z^2: twice as far, a quarter
    assert w[30, 39] == 0 and w[30, 40] == 0  # the edge
    assert (Mapper(MapperConfig()).depth_weights(d) == 1).all()


def brightened(f: Frame, gain: float) -> Frame:
    """The frame as a camera with `gain` times the exposure would have taken it."""
    return dataclasses.replace(f, rgb=np.clip(f.rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8))


def test_exposure_compensation_absorbs_a_brighter_keyframe_and_d_ssim_trains():
    torch.manual_seed(0)
    cfg = MapperConfig(
        width=80, height=60, iters_per_keyframe=0, exposure_compensation=True, lr_exposure=0.01, lambda_dssim=0.2
    )
    m = Mapper(cfg)
    a = plane_frame(x=0.0)
    b = brightened(plane_frame(x=0.06), 1.25)  # far enough to be a keyframe
    m.integrate(a)
    m.integrate(b)
    assert m.keyframes[0].exposure is None and m.keyframes[1].exposure is not None  # the first anchors
    before = float(m.loss(m.keyframes[1]))
    for _ in range(40):
        m.optimise(2)  # the newest keyframe, then one of the window
    gain = float(torch.diagonal(m.keyframes[1].exposure[:, :3]).mean())
    assert gain > 0.05 and float(m.loss(m.keyframes[1])) < before


def test_a_held_out_view_takes_the_exposure_of_its_instant_from_the_keyframes_either_side():
    from gs_semantic_node.eval.metrics import evaluate_view

    torch.manual_seed(0)
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0, exposure_compensation=True, lr_exposure=0.01))
    m.integrate(dataclasses.replace(plane_frame(x=0.0), stamp=0.0))
    m.integrate(dataclasses.replace(brightened(plane_frame(x=0.06), 1.25), stamp=1.0, index=1))
    for _ in range(60):
        m.optimise(2)
    E = m.keyframes[1].exposure.detach()
    assert torch.allclose(m.exposure_at(0.5), E / 2) and torch.allclose(m.exposure_at(3.0), E)
    assert bool((m.exposure_at(-1.0) == 0).all())  # before the first keyframe: the anchor's response
    held = dataclasses.replace(brightened(plane_frame(x=0.06), 1.25), stamp=1.0, index=2)
    with_response = evaluate_view(m, held)["psnr"]
    m.cfg.exposure_compensation = False  # the same map rendered as is
    assert m.exposure_at(0.5) is None and with_response > evaluate_view(m, held)["psnr"] + 1.0


@pytest.mark.parametrize("refine", [True, False])
def test_pose_refinement_pulls_a_misplaced_keyframe_onto_the_map(refine):
    torch.manual_seed(0)
    cfg = MapperConfig(width=80, height=60, iters_per_keyframe=0, pose_refinement=refine, lr_pose=2e-3, track=False)
    m = Mapper(cfg)
    m.integrate(striped_plane(0.0, 0.0))
    m.integrate(striped_plane(0.06, 0.09))  # reported 3 cm off (1.8 px at this depth)
    assert m.keyframes[0].pose_delta is None  # the first anchors the map frame
    for _ in range(30):
        m.optimise(2)
    x = float(m.keyframes[1].T_world_cam[0, 3])
    if refine:
        assert abs(x - 0.06) < 0.01, x
        assert float(m.keyframes[0].T_world_cam[0, 3]) == 0.0
    else:
        assert x == pytest.approx(0.09)


def test_depth_captured_elsewhere_is_moved_to_the_colour_camera():
    from gs_semantic_node.mapping.registration import depth_at_colour_instant

    cam = Camera(60, 60, 39.5, 29.5, 80, 60)
    depth = np.full((60, 80), 2.0, np.float32)
    depth[:, :40] = 1.0  # a near surface on the left, its edge at column 40
    T_depth = np.eye(4)
    T_depth[0, 3] = 0.03  # the depth was captured 3 cm to the right of where the colour was
    f = Frame(np.zeros((60, 80, 3), np.uint8), depth, cam, np.eye(4), 0.0, 0, None, T_depth)
    out = depth_at_colour_instant(f).depth
    # seen from 3 cm further left, everything shifts right by fx * 0.03 / z: 1.8 px near, 0.9 px far
    assert out[30, 41] == 1.0 and out[30, 42] == 2.0 and depth[30, 41] == 2.0  # the near surface occludes
    assert (out[:, :2] == 0).all() and (out[:, 2:40] == 1.0).all()  # nothing lands at the left border: holes
    assert depth_at_colour_instant(dataclasses.replace(f, T_world_depth=None)).depth is depth


def _edge_columns(rgb: np.ndarray) -> np.ndarray:
    """Per row, where a dark-left / bright-right edge lies: the count of dark pixels."""
    return (rgb[..., 0] < 128).sum(axis=1).astype(float)


def _yaw(a: float) -> np.ndarray:
    """A camera turned by a rad about its y axis."""
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    return T


def test_a_rolling_shutter_image_is_carried_to_the_stamp_and_rolled_back():
    from gs_semantic_node.mapping.shutter import global_shutter, rolling

    cam = Camera(60, 60, 39.5, 29.5, 80, 60)
    turn = 0.12  # rad the camera turns about its y axis during the readout (first row -> last)

    # a vertical edge at x = 0 on a plane 2 m ahead of the camera at the stamp; each row sees it from
    # its own instant's yaw (the stamp is the middle row's)
    v, u = np.mgrid[0:60, 0:80].astype(float)
    th = ((v + 0.5) / 60 - 0.5) * turn
    x, z = (u - cam.cx) / cam.fx, np.ones_like(u)
    xw = np.cos(th) * x + np.sin(th) * z  # the ray turned to the stamp's camera; it meets x = 0 where xw = 0
    rgb = np.where(xw > 0, 255, 0).astype(np.uint8)[..., None].repeat(3, -1)
    rows = (_yaw(-turn / 2), _yaw(turn / 2))
    f = Frame(rgb, np.full((60, 80), 2.0, np.float32), cam, np.eye(4), 0.0, 0, None, None, rows)
    before = _edge_columns(rgb)
    assert before.max() - before.min() > 5  # the recorded edge leans: 60 * 0.12 = 7 px top to bottom
    out = global_shutter(f)
    after = _edge_columns(out.rgb)
    assert np.abs(after - (cam.cx + 0.5)).max() <= 1.0, after  # upright, where the stamp's camera sees it
    assert out.T_world_rows is None and global_shutter(out) is out
    rolled = rolling(torch.from_numpy(out.rgb).float() / 255, torch.full((60, 80), 2.0), cam, np.eye(4), rows)
    assert np.abs(_edge_columns((rolled.numpy() * 255).astype(np.uint8)) - before).max() <= 1.0


def test_a_held_out_rolling_shutter_view_is_scored_against_the_rolled_render():
    from gs_semantic_node.eval.metrics import evaluate_view

    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=4))
    m.integrate(plane_frame())
    still = dataclasses.replace(plane_frame(), T_world_rows=(np.eye(4), np.eye(4)))  # no motion in the readout
    assert evaluate_view(m, still)["psnr"] == pytest.approx(evaluate_view(m, plane_frame())["psnr"], abs=1e-3)
    turning = dataclasses.replace(plane_frame(), T_world_rows=(_yaw(-0.1), _yaw(0.1)))
    # the recorded image shows the colour edge upright, as a global shutter would: a render rolled by a
    # 0.2 rad turn leans it, so the prediction is worse than for a still camera
    assert evaluate_view(m, turning)["psnr"] < evaluate_view(m, still)["psnr"] - 1.0
