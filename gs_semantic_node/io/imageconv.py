"""sensor_msgs/Image and PointCloud2 <-> numpy without cv_bridge / sensor_msgs_py.

Works on the message *fields*, so the same code serves rclpy messages and rosbags messages.
Every malformed input raises ImageError with a short machine-readable `reason` that the node
counts and logs once per kind.
"""

from __future__ import annotations

import numpy as np

# encoding -> (channels, numpy dtype)
ENCODINGS = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "8UC1": (1, np.uint8),
    "16UC1": (1, np.uint16),
    "mono16": (1, np.uint16),
    "32FC1": (1, np.float32),
}


class ImageError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decode_image(encoding: str, height: int, width: int, step: int, is_bigendian: int | bool, data) -> np.ndarray:
    """-> (H,W,3) uint8 RGB for colour encodings, (H,W) array for single-channel ones."""
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise ImageError("encoding", f"unsupported encoding {encoding!r}")
    ch, dt = ENCODINGS[encoding]
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageError("size", f"empty image {width}x{height}")
    itemsize = np.dtype(dt).itemsize
    row = width * ch * itemsize
    if step < row:
        raise ImageError("size", f"step {step} < width*channels*bytes {row}")
    try:
        buf = (
            np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
        )
    except (TypeError, ValueError):
        try:
            buf = np.frombuffer(bytes(data), dtype=np.uint8)
        except (TypeError, ValueError) as e:
            raise ImageError("size", f"image data is not a byte buffer ({type(data).__name__})") from e
    if buf.size < step * (height - 1) + row:
        raise ImageError(
            "size",
            f"data has {buf.size} bytes, {encoding} {width}x{height} step {step} needs {step * (height - 1) + row}",
        )
    rows = (
        np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
        if step != row
        else buf[: height * row].reshape(height, row)
    )
    order = ">" if is_bigendian else "<"
    arr = np.ascontiguousarray(rows).view(np.dtype(dt).newbyteorder(order) if itemsize > 1 else dt)
    arr = arr.reshape(height, width, ch).astype(dt, copy=False)
    if ch == 1:
        return arr[..., 0]
    if encoding in ("bgr8", "bgra8"):
        arr = arr[..., [2, 1, 0]]
    return np.ascontiguousarray(arr[..., :3])


def encode_image(arr: np.ndarray, encoding: str) -> dict:
    """numpy -> Image fields (little-endian, unpadded)."""
    ch, dt = ENCODINGS[encoding]
    a = np.asarray(arr)
    if ch == 4 and a.shape[-1] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, a.dtype)], -1)
    if encoding in ("bgr8", "bgra8"):
        a = a[..., [2, 1, 0] + ([3] if ch == 4 else [])]
    a = np.ascontiguousarray(a.astype(np.dtype(dt).newbyteorder("<")))
    h, w = a.shape[:2]
    return {
        "encoding": encoding,
        "height": h,
        "width": w,
        "step": w * ch * np.dtype(dt).itemsize,
        "is_bigendian": 0,
        "data": a.tobytes(),
    }


def depth_to_metres(depth: np.ndarray, encoding: str, unit: str = "auto") -> np.ndarray:
    """16UC1 is millimetres (REP-118); 32FC1 is metres unless `unit` (or, with auto, an implausible
    median above 50) says millimetres. Non-finite and non-positive values become 0 (invalid)."""
    d = depth.astype(np.float32)
    if encoding in ("16UC1", "mono16") or unit == "mm":
        d = d * 0.001
    elif unit == "auto":
        pos = d[np.isfinite(d) & (d > 0)]
        if pos.size and float(np.median(pos)) > 50.0:
            d = d * 0.001
    d[~np.isfinite(d) | (d <= 0)] = 0.0
    return d


# ---------------------------------------------------------------- CompressedImage
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pil_decode(data: bytes, what: str):
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError("compressed", f"{what} does not decode: {e}") from e


def decode_compressed(fmt: str, data) -> tuple[np.ndarray, str]:
    """sensor_msgs/CompressedImage -> (array, encoding it stands for), the way image_transport writes it:
    colour as JPEG/PNG (`format` "jpeg", "png", or "bgr8; jpeg compressed bgr8"; decoded to RGB), depth
    as compressed_depth_image_transport's "16UC1; compressedDepth png" / "32FC1; compressedDepth png"
    (a 12-byte header, absent in some versions, then a PNG; 32FC1 stores quantised inverse depth)."""
    fmt = str(fmt or "").lower()
    raw = bytes(data) if not isinstance(data, (bytes, bytearray)) else bytes(data)
    if "compresseddepth" in fmt:
        head, body = (b"", raw) if raw[:8] == PNG_MAGIC else (raw[:12], raw[12:])
        arr = np.asarray(_pil_decode(body, "compressedDepth PNG"))
        if fmt.startswith("32fc1"):
            if len(head) < 12:
                raise ImageError("compressed", "32FC1 compressedDepth without its quantisation header")
            qa, qb = np.frombuffer(head[4:12], "<f4")
            v = arr.astype(np.float32)
            with np.errstate(divide="ignore"):
                depth = np.where(v > 0, qa / (v - qb), 0.0).astype(np.float32)
            return depth, "32FC1"
        return arr.astype(np.uint16), "16UC1"
    img = _pil_decode(raw, "compressed colour image")
    if img.mode in ("I;16", "I;16B", "I"):
        return np.asarray(img).astype(np.uint16), "16UC1"
    return np.ascontiguousarray(np.asarray(img.convert("RGB"))), "rgb8"


def encode_compressed(arr: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> tuple[str, bytes]:
    """(format, data) of a sensor_msgs/CompressedImage: rgb uint8 as jpeg/png; uint16 depth (mm) as
    compressed_depth_image_transport's "16UC1; compressedDepth png" (12-byte header + PNG)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    a = np.asarray(arr)
    if a.dtype == np.uint16:
        Image.fromarray(a).save(buf, format="PNG")
        header = np.array([0], "<i4").tobytes() + np.zeros(2, "<f4").tobytes()
        return "16UC1; compressedDepth png", header + buf.getvalue()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="JPEG" if fmt == "jpeg" else "PNG", quality=quality)
    return f"rgb8; {fmt} compressed rgb8", buf.getvalue()


# ---------------------------------------------------------------- PointCloud2
PF_FLOAT32, PF_UINT32, PF_INT32 = 7, 6, 5


def pointcloud_fields(names_types: list[tuple[str, int]]) -> tuple[list[tuple[str, int, int]], int]:
    """[(name, datatype)] -> [(name, offset, datatype)], point_step (all 4-byte fields)."""
    return [(n, 4 * i, t) for i, (n, t) in enumerate(names_types)], 4 * len(names_types)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N,3) [0,1] float or uint8 -> PCL-style packed float32 rgb."""
    c = np.asarray(rgb)
    if c.dtype != np.uint8:
        c = (np.clip(c, 0, 1) * 255).astype(np.uint8)
    u = (c[:, 0].astype(np.uint32) << 16) | (c[:, 1].astype(np.uint32) << 8) | c[:, 2].astype(np.uint32)
    return u.view(np.float32)


def build_cloud_data(
    xyz: np.ndarray, rgb: np.ndarray, object_id: np.ndarray, class_id: np.ndarray
) -> tuple[bytes, int]:
    """Structured buffer x,y,z,rgb (float32), object_id, class_id (uint32); returns (bytes, point_step)."""
    n = xyz.shape[0]
    rec = np.zeros(
        n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("object_id", "<u4"), ("class_id", "<u4")]
    )
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rec["rgb"] = pack_rgb(rgb)
    rec["object_id"] = object_id.astype(np.uint32)
    rec["class_id"] = class_id.astype(np.uint32)
    return rec.tobytes(), rec.dtype.itemsize


CLOUD_FIELDS = [
    ("x", PF_FLOAT32),
    ("y", PF_FLOAT32),
    ("z", PF_FLOAT32),
    ("rgb", PF_FLOAT32),
    ("object_id", PF_UINT32),
    ("class_id", PF_UINT32),
]
