"""Validation layer: malformed messages become counted, named faults; hypothesis feeds garbage."""

from types import SimpleNamespace as NS

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_semantic_node.config import NodeConfig, QueryConfig
from gs_semantic_node.io.imageconv import encode_image
from gs_semantic_node.io.validate import ApproxSync, InputFault, InputValidator
from gs_semantic_node.query.engine import QueryEngine


def hdr(t):
    return NS(stamp=NS(sec=int(t), nanosec=int((t % 1) * 1e9)), frame_id="cam")


def img(arr, enc, t):
    return NS(header=hdr(t), **encode_image(arr, enc))


def info(w=8, h=6, f=5.0):
    return NS(k=[f, 0, w / 2, 0, f, h / 2, 0, 0, 1], width=w, height=h)


def pose(t, x=0.0, q=(0, 0, 0, 1)):
    return NS(header=hdr(t), pose=NS(position=NS(x=x, y=0.0, z=0.0), orientation=NS(x=q[0], y=q[1], z=q[2], w=q[3])))


def good(t, x=0.0):
    rgb = np.full((6, 8, 3), 100, np.uint8)
    d = np.full((6, 8), 1200, np.uint16)
    return img(rgb, "rgb8", t), img(d, "16UC1", t), info(), pose(t, x)


def test_good_frame_accepted():
    v = InputValidator(NodeConfig())
    f = v.frame(*good(1.0))
    assert f.depth[0, 0] == pytest.approx(1.2) and f.rgb.shape == (6, 8, 3)


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (
            lambda r, d, i, p: (
                img(np.zeros((6, 8, 3), np.uint8), "rgb8", 1.0)._replace
                if False
                else (NS(**{**vars(r), "encoding": "yuv422"}), d, i, p)
            ),
            "encoding",
        ),
        (lambda r, d, i, p: (NS(**{**vars(r), "data": b"\0" * 5}), d, i, p), "size"),
        (lambda r, d, i, p: (r, img(np.full((6, 8), np.nan, np.float32), "32FC1", 1.0), i, p), "depth_invalid"),
        (lambda r, d, i, p: (r, d, None, p), "camera_info_missing"),
        (lambda r, d, i, p: (r, d, info(f=float("nan")), p), "camera_info_invalid"),
        (lambda r, d, i, p: (r, d, info(w=16), p), "camera_info_mismatch"),
        (lambda r, d, i, p: (r, d, i, pose(1.0, q=(0, 0, 0, 2))), "pose_quaternion"),
        (lambda r, d, i, p: (r, d, i, pose(1.0, x=float("inf"))), "pose_nonfinite"),
        (lambda r, d, i, p: (r, img(np.zeros((3, 8), np.uint16), "16UC1", 1.0), i, p), "size_mismatch"),
    ],
)
def test_each_fault_kind_is_named(mutate, reason):
    v = InputValidator(NodeConfig())
    with pytest.raises(InputFault) as e:
        v.frame(*mutate(*good(1.0)))
    assert e.value.reason == reason
    assert v.accepted == 0


def test_time_and_pose_faults():
    v = InputValidator(NodeConfig(max_speed=1.0, max_stamp_age=5.0))
    v.frame(*good(10.0))
    with pytest.raises(InputFault, match="stamp_out_of_order"):
        v.frame(*good(9.9))
    with pytest.raises(InputFault, match="stamp_backwards"):
        v.frame(*good(1.0))
    with pytest.raises(InputFault, match="pose_jump"):
        v.frame(*good(10.1, x=5.0))
    v.frame(*good(10.2, x=0.05))
    assert v.accepted == 2


def test_huge_image_refused():
    v = InputValidator(NodeConfig(max_image_pixels=10))
    with pytest.raises(InputFault, match="image_too_large"):
        v.frame(*good(1.0))


def test_approx_sync_pairs_within_slop():
    s = ApproxSync(["a", "b"], 0.02)
    assert s.add("a", 1.0, "a1") is None
    assert s.add("b", 1.5, "b15") is None
    assert s.add("b", 1.01, "b1") == {"a": "a1", "b": "b1"}
    assert s.add("a", 1.49, "a15") == {"a": "a15", "b": "b15"}


field = st.one_of(
    st.none(), st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=5), st.binary(max_size=50)
)


@settings(max_examples=150, deadline=None)
@given(
    enc=st.one_of(st.text(max_size=6), st.sampled_from(["rgb8", "16UC1", "32FC1"])),
    h=field,
    w=field,
    step=field,
    data=field,
    k=st.lists(st.floats(allow_nan=True), min_size=0, max_size=12),
    iw=field,
    ih=field,
    q=st.tuples(*[st.floats(allow_nan=True)] * 4),
    t=st.floats(allow_nan=True, allow_infinity=True),
)
def test_random_fields_never_escape_validation(enc, h, w, step, data, k, iw, ih, q, t):
    v = InputValidator(NodeConfig())
    r = NS(header=NS(stamp=NS(sec=0, nanosec=0)), encoding=enc, height=h, width=w, step=step, is_bigendian=0, data=data)
    p = NS(header=r.header, pose=NS(position=NS(x=t, y=0.0, z=0.0), orientation=NS(x=q[0], y=q[1], z=q[2], w=q[3])))
    try:
        v.frame(r, r, NS(k=k, width=iw, height=ih), p)
    except InputFault:
        pass


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=800), st.integers(), st.none(), st.binary(max_size=20)))
def test_random_queries_are_answered_not_raised(text):
    eng = QueryEngine(QueryConfig(), embed_text=lambda ts: np.ones((len(ts), 4), np.float32) / 2)
    r = eng.query(text, [])
    assert r.found is False and r.message
