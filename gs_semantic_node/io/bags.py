"""ROS 2 bags through rosbags (MCAP or sqlite3): write the node's input topics, read them back
as Frames, and register our own .msg/.srv types from the repository's msg/ folder."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from ..types import Camera, Frame
from .imageconv import decode_image, depth_to_metres, encode_image
from .validate import camera_from_info, pose_matrix, stamp_seconds

MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
TOPICS = {
    "rgb": ("/camera/color/image_raw", "sensor_msgs/msg/Image"),
    "depth": ("/camera/depth/image_raw", "sensor_msgs/msg/Image"),
    "info": ("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo"),
    "pose": ("/camera/pose", "geometry_msgs/msg/PoseStamped"),
    "gt": ("/sim/instance_mask", "sensor_msgs/msg/Image"),
}


def typestore(with_ours: bool = True):
    """ROS 2 Kilted types, plus gs_semantic_msgs when the msg/ folder is at hand."""
    ts = get_typestore(Stores.ROS2_KILTED)
    if with_ours and MSG_DIR.is_dir():
        types = {}
        for f in sorted(MSG_DIR.glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"gs_semantic_msgs/msg/{f.stem}"))
        ts.register(types)
    return ts


def stamp_msg(ts, t: float):
    Time = ts.types["builtin_interfaces/msg/Time"]
    sec = int(np.floor(t))
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def header(ts, t: float, frame_id: str):
    return ts.types["std_msgs/msg/Header"](stamp=stamp_msg(ts, t), frame_id=frame_id)


def image_msg(ts, arr: np.ndarray, encoding: str, t: float, frame_id: str):
    f = encode_image(arr, encoding)
    return ts.types["sensor_msgs/msg/Image"](header=header(ts, t, frame_id), height=f["height"], width=f["width"],
                                             encoding=encoding, is_bigendian=0, step=f["step"],
                                             data=np.frombuffer(f["data"], np.uint8))


def camera_info_msg(ts, cam: Camera, t: float, frame_id: str):
    T = ts.types
    K = cam.K.reshape(-1)
    P = np.array([cam.fx, 0, cam.cx, 0, 0, cam.fy, cam.cy, 0, 0, 0, 1, 0], dtype=np.float64)
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](header=header(ts, t, frame_id), height=cam.height, width=cam.width,
                                           distortion_model="plumb_bob", d=np.zeros(5), k=K, r=np.eye(3).reshape(-1),
                                           p=P, binning_x=0, binning_y=0, roi=roi)


def pose_msg(ts, T_world_cam: np.ndarray, t: float, frame_id: str = "map"):
    from scipy.spatial.transform import Rotation
    T = ts.types
    q = Rotation.from_matrix(T_world_cam[:3, :3]).as_quat()
    p = T_world_cam[:3, 3]
    pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=float(p[0]), y=float(p[1]), z=float(p[2])),
                                       orientation=T["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]),
                                                                                    z=float(q[2]), w=float(q[3])))
    return T["geometry_msgs/msg/PoseStamped"](header=header(ts, t, frame_id), pose=pose)


class BagWriter:
    """Writes frames as the topics a robot's RGB-D camera + localisation would publish."""

    def __init__(self, path: str | Path, storage: str = "mcap", camera_frame: str = "camera_color_optical_frame"):
        self.ts = typestore(with_ours=False)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(Path(path), version=9, storage_plugin=plugin)
        self.camera_frame = camera_frame
        self.conns = {}

    def __enter__(self):
        self.writer.open()
        for key, (topic, mtype) in TOPICS.items():
            self.conns[key] = self.writer.add_connection(topic, mtype, typestore=self.ts)
        return self

    def __exit__(self, *exc):
        self.writer.close()

    def _write(self, key, msg, t):
        self.writer.write(self.conns[key], int(round(t * 1e9)), self.ts.serialize_cdr(msg, TOPICS[key][1]))

    def write_frame(self, frame: Frame, pose: np.ndarray | None = None, depth_encoding: str = "16UC1"):
        t, cf = frame.stamp, self.camera_frame
        self._write("rgb", image_msg(self.ts, frame.rgb, "rgb8", t, cf), t)
        d = frame.depth
        dd = np.clip(np.round(d * 1000.0), 0, 65535).astype(np.uint16) if depth_encoding == "16UC1" else d.astype(np.float32)
        self._write("depth", image_msg(self.ts, dd, depth_encoding, t, cf), t)
        self._write("info", camera_info_msg(self.ts, frame.camera, t, cf), t)
        self._write("pose", pose_msg(self.ts, frame.T_world_cam if pose is None else pose, t), t)
        if frame.gt_instances is not None:
            self._write("gt", image_msg(self.ts, frame.gt_instances.astype(np.uint16), "16UC1", t, cf), t)


def read_frames(path: str | Path) -> Iterator[Frame]:
    """Frames from a bag written by BagWriter (messages grouped by identical stamps)."""
    ts = typestore(with_ours=False)
    pending: dict[float, dict] = {}
    topic_key = {v[0]: k for k, v in TOPICS.items()}
    index = 0
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if c.topic in topic_key]
        for conn, _, raw in reader.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            t = stamp_seconds(msg.header)
            slot = pending.setdefault(t, {})
            slot[topic_key[conn.topic]] = msg
            if all(k in slot for k in ("rgb", "depth", "info", "pose")) and ("gt" in slot or "gt" not in
                                                                              {topic_key[c.topic] for c in conns}):
                del pending[t]
                yield frame_from_msgs(slot, index)
                index += 1


def frame_from_msgs(slot: dict, index: int = -1, depth_unit: str = "auto") -> Frame:
    rgb_m, d_m, info, pose = slot["rgb"], slot["depth"], slot["info"], slot["pose"]
    rgb = decode_image(rgb_m.encoding, rgb_m.height, rgb_m.width, rgb_m.step, rgb_m.is_bigendian, rgb_m.data)
    d_raw = decode_image(d_m.encoding, d_m.height, d_m.width, d_m.step, d_m.is_bigendian, d_m.data)
    depth = depth_to_metres(d_raw, d_m.encoding, depth_unit)
    cam = camera_from_info(info)
    gt = None
    if "gt" in slot:
        g = slot["gt"]
        gt = decode_image(g.encoding, g.height, g.width, g.step, g.is_bigendian, g.data).astype(np.int32)
    T = pose_matrix(pose.pose.position, pose.pose.orientation)
    return Frame(rgb, depth, cam, T, stamp_seconds(rgb_m.header), index, gt)
