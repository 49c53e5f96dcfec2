import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_semantic_node.io.imageconv import ENCODINGS, ImageError, decode_image, depth_to_metres, encode_image


@pytest.mark.parametrize("enc", sorted(ENCODINGS))
def test_roundtrip_every_encoding(enc):
    rng = np.random.default_rng(0)
    ch, dt = ENCODINGS[enc]
    shape = (5, 7, ch) if ch > 1 else (5, 7)
    a = (rng.random(shape) * 200).astype(dt)
    f = encode_image(a[..., :3] if ch == 4 else a, enc)
    out = decode_image(f["encoding"], f["height"], f["width"], f["step"], f["is_bigendian"], f["data"])
    expect = a[..., :3] if ch > 1 else a
    if ch == 4:
        expect = a[..., :3]
    np.testing.assert_array_equal(out, expect)


def test_bgr_is_swapped_to_rgb():
    a = np.zeros((2, 2, 3), np.uint8)
    a[..., 0] = 10  # b
    a[..., 2] = 200  # r
    out = decode_image("bgr8", 2, 2, 6, 0, a.tobytes())
    assert out[0, 0, 0] == 200 and out[0, 0, 2] == 10


def test_padded_rows_and_big_endian_depth():
    d = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    be = d.astype(">u2").tobytes()
    padded = b"".join(be[i * 8 : (i + 1) * 8] + b"\xff" * 4 for i in range(3))
    out = decode_image("16UC1", 3, 4, 12, 1, padded)
    np.testing.assert_array_equal(out, d)
    f = np.full((2, 3), 1.5, np.float32)
    out = decode_image("32FC1", 2, 3, 12, 1, f.astype(">f4").tobytes())
    np.testing.assert_array_equal(out, f)


def test_bad_inputs_raise_image_error():
    with pytest.raises(ImageError) as e:
        decode_image("yuv422", 2, 2, 4, 0, b"\0" * 8)
    assert e.value.reason == "encoding"
    with pytest.raises(ImageError) as e:
        decode_image("rgb8", 4, 4, 12, 0, b"\0" * 10)
    assert e.value.reason == "size"


def test_depth_units():
    mm = np.array([[1000, 0], [2500, 65535]], np.uint16)
    np.testing.assert_allclose(depth_to_metres(mm, "16UC1"), [[1.0, 0], [2.5, 65.535]])
    f = np.array([[np.nan, np.inf], [-1, 2.0]], np.float32)
    np.testing.assert_array_equal(depth_to_metres(f, "32FC1"), [[0, 0], [0, 2.0]])
    mm_as_float = np.full((2, 2), 1500.0, np.float32)  # a driver publishing millimetres as 32FC1
    np.testing.assert_allclose(depth_to_metres(mm_as_float, "32FC1", "auto"), 1.5)


@settings(max_examples=200, deadline=None)
@given(
    enc=st.sampled_from(sorted(ENCODINGS) + ["bogus", ""]),
    h=st.integers(-3, 20),
    w=st.integers(-3, 20),
    step=st.integers(-5, 100),
    be=st.integers(0, 1),
    data=st.binary(max_size=600),
)
def test_decode_never_raises_anything_but_image_error(enc, h, w, step, be, data):
    try:
        decode_image(enc, h, w, step, be, data)
    except ImageError:
        pass
