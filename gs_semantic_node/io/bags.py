"""ROS 2 bags through rosbags (MCAP or sqlite3): write the node's input topics, read any robot's
recording back as Frames (topics from the node's parameters), and register our own .msg/.srv
types from the repository's msg/ folder."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Iterator

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from ..config import POSE_TYPES, NodeConfig
from ..types import Camera, Frame
from .assembler import FrameAssembler
from .imageconv import encode_compressed, encode_image

MSG_DIR = Path(__file__).resolve().parents[2] / "msg"


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
    return ts.types["sensor_msgs/msg/Image"](
        header=header(ts, t, frame_id),
        height=f["height"],
        width=f["width"],
        encoding=encoding,
        is_bigendian=0,
        step=f["step"],
        data=np.frombuffer(f["data"], np.uint8),
    )


def camera_info_msg(ts, cam: Camera, t: float, frame_id: str):
    T = ts.types
    K = cam.K.reshape(-1)
    P = np.array([cam.fx, 0, cam.cx, 0, 0, cam.fy, cam.cy, 0, 0, 0, 1, 0], dtype=np.float64)
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](
        header=header(ts, t, frame_id),
        height=cam.height,
        width=cam.width,
        distortion_model="rational_polynomial" if len(cam.distortion) > 5 else "plumb_bob",
        d=np.asarray((list(cam.distortion) + [0.0] * 5)[: max(5, len(cam.distortion))], np.float64),
        k=K,
        r=np.eye(3).reshape(-1),
        p=P,
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def pose_msg(ts, T_world_cam: np.ndarray, t: float, frame_id: str = "map"):
    from scipy.spatial.transform import Rotation

    T = ts.types
    q = Rotation.from_matrix(T_world_cam[:3, :3]).as_quat()
    p = T_world_cam[:3, 3]
    pose = T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=float(p[0]), y=float(p[1]), z=float(p[2])),
        orientation=T["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )
    return T["geometry_msgs/msg/PoseStamped"](header=header(ts, t, frame_id), pose=pose)


def compressed_msg(ts, arr: np.ndarray, t: float, frame_id: str):
    fmt, data = encode_compressed(arr)
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=header(ts, t, frame_id), format=fmt, data=np.frombuffer(data, np.uint8)
    )


def odometry_msg(ts, T_world_cam: np.ndarray, t: float, frame_id: str, child: str):
    T = ts.types
    p = pose_msg(ts, T_world_cam, t, frame_id)
    cov = T["geometry_msgs/msg/PoseWithCovariance"](pose=p.pose, covariance=np.zeros(36))
    zero = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
    tw = T["geometry_msgs/msg/TwistWithCovariance"](
        twist=T["geometry_msgs/msg/Twist"](linear=zero, angular=zero), covariance=np.zeros(36)
    )
    return T["nav_msgs/msg/Odometry"](header=p.header, child_frame_id=child, pose=cov, twist=tw)


def transform_msg(ts, T_world_cam: np.ndarray, t: float, frame_id: str, child: str):
    T = ts.types
    p = pose_msg(ts, T_world_cam, t, frame_id).pose
    tr = T["geometry_msgs/msg/Transform"](
        translation=T["geometry_msgs/msg/Vector3"](x=p.position.x, y=p.position.y, z=p.position.z),
        rotation=p.orientation,
    )
    return T["geometry_msgs/msg/TransformStamped"](header=header(ts, t, frame_id), child_frame_id=child, transform=tr)


class BagError(ValueError):
    """A bag that cannot be read as the node's input (missing topics, wrong types)."""


class BagWriter:
    """Writes frames as the topics a robot's RGB-D camera + localisation publish: names from a
    NodeConfig (the node's `node.*` parameters), colour raw or as image_transport's `<topic>/compressed`,
    depth raw or `<topic>/compressedDepth`, poses as PoseStamped, Odometry or TransformStamped. A topic
    is only added to the bag when something is written on it."""

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        camera_frame: str = "camera_color_optical_frame",
        topics: NodeConfig | None = None,
        compressed: bool = False,
        compressed_depth: bool = False,
        pose_type: str = "pose",
    ):
        self.ts = typestore(with_ours=False)
        if storage not in ("mcap", "sqlite3"):
            raise ValueError(f"bag storage must be mcap or sqlite3, not {storage!r}")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(Path(path), version=9, storage_plugin=plugin)
        self.camera_frame = camera_frame
        n = topics or NodeConfig()
        if pose_type not in POSE_TYPES:
            raise ValueError(f"pose_type must be one of {sorted(POSE_TYPES)}")
        self.compressed, self.compressed_depth, self.pose_type = compressed, compressed_depth, pose_type
        self.map_frame = n.map_frame
        self.topics = {
            "rgb": (n.rgb_topic + "/compressed", "sensor_msgs/msg/CompressedImage")
            if compressed
            else (n.rgb_topic, "sensor_msgs/msg/Image"),
            "depth": (n.depth_topic + "/compressedDepth", "sensor_msgs/msg/CompressedImage")
            if compressed_depth
            else (n.depth_topic, "sensor_msgs/msg/Image"),
            "info": (n.camera_info_topic, "sensor_msgs/msg/CameraInfo"),
            "pose": (n.pose_topic, POSE_TYPES[pose_type]),
            "gt": (n.gt_instances_topic, "sensor_msgs/msg/Image"),
        }
        self.conns = {}

    def __enter__(self):
        self.writer.open()
        return self

    def __exit__(self, *exc):
        self.writer.close()

    def _write(self, key, msg, t):
        if key not in self.conns:
            topic, mtype = self.topics[key]
            self.conns[key] = self.writer.add_connection(topic, mtype, typestore=self.ts)
        self.writer.write(self.conns[key], int(round(t * 1e9)), self.ts.serialize_cdr(msg, self.topics[key][1]))

    def write_rgb(self, rgb: np.ndarray, t: float):
        cf = self.camera_frame
        self._write(
            "rgb", compressed_msg(self.ts, rgb, t, cf) if self.compressed else image_msg(self.ts, rgb, "rgb8", t, cf), t
        )

    def write_depth(self, depth_m: np.ndarray, t: float, encoding: str = "16UC1"):
        cf = self.camera_frame
        mm = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
        if self.compressed_depth:
            self._write("depth", compressed_msg(self.ts, mm, t, cf), t)
        else:
            self._write(
                "depth",
                image_msg(self.ts, mm if encoding == "16UC1" else depth_m.astype(np.float32), encoding, t, cf),
                t,
            )

    def write_info(self, cam: Camera, t: float):
        self._write("info", camera_info_msg(self.ts, cam, t, self.camera_frame), t)

    def write_pose(self, T_world_cam: np.ndarray, t: float):
        make = {
            "pose": lambda: pose_msg(self.ts, T_world_cam, t, self.map_frame),
            "odometry": lambda: odometry_msg(self.ts, T_world_cam, t, self.map_frame, self.camera_frame),
            "transform": lambda: transform_msg(self.ts, T_world_cam, t, self.map_frame, self.camera_frame),
        }
        self._write("pose", make[self.pose_type](), t)

    def write_gt(self, instances: np.ndarray, t: float):
        self._write("gt", image_msg(self.ts, instances.astype(np.uint16), "16UC1", t, self.camera_frame), t)

    def write_frame(self, frame: Frame, pose: np.ndarray | None = None, depth_encoding: str = "16UC1"):
        t = frame.stamp
        self.write_rgb(frame.rgb, t)
        self.write_depth(frame.depth, t, depth_encoding)
        self.write_info(frame.camera, t)
        self.write_pose(frame.T_world_cam if pose is None else pose, t)
        if frame.gt_instances is not None:
            self.write_gt(frame.gt_instances, t)


def bag_path(path: str | Path) -> Path:
    """A bag folder, or a folder holding one as `bag/` (the simulator's and the importers' layout)."""
    p = Path(path)
    if (p / "bag" / "metadata.yaml").is_file() or ((p / "bag").is_dir() and not (p / "metadata.yaml").is_file()):
        return p / "bag"
    return p


def input_connections(connections, cfg: NodeConfig, with_gt: bool | None = None) -> dict[str, list]:
    """The bag's connections for each input the node reads, found by the node's topic parameters (colour
    also as `<rgb_topic>/compressed`, depth as `<depth_topic>/compressedDepth`). BagError names what is
    missing and what the bag holds."""
    by_topic = collections.defaultdict(list)
    for c in connections:
        by_topic[c.topic].append(c)
    have = ", ".join(f"{t} [{cs[0].msgtype}]" for t, cs in sorted(by_topic.items())) or "nothing"
    want = {
        "rgb": [
            (cfg.rgb_topic, "sensor_msgs/msg/Image"),
            (cfg.rgb_topic + "/compressed", "sensor_msgs/msg/CompressedImage"),
        ],
        "depth": [
            (cfg.depth_topic, "sensor_msgs/msg/Image"),
            (cfg.depth_topic + "/compressedDepth", "sensor_msgs/msg/CompressedImage"),
        ],
        "info": [(cfg.camera_info_topic, "sensor_msgs/msg/CameraInfo")],
        "pose": [(cfg.pose_topic, t) for t in POSE_TYPES.values()],
        "gt": [(cfg.gt_instances_topic, "sensor_msgs/msg/Image")],
    }
    if cfg.rgb_transport == "compressed":
        want["rgb"].reverse()
    if cfg.depth_transport == "compressedDepth":
        want["depth"].reverse()
    out = {}
    for key, options in want.items():
        for topic, mtype in options:
            cs = [c for c in by_topic.get(topic, []) if c.msgtype == mtype]
            if cs:
                out[key] = cs
                break
        else:
            if key == "gt" and not with_gt:
                continue
            names = (
                " or ".join(f"{t} [{m}]" for t, m in options)
                if key != "pose"
                else f"{cfg.pose_topic} [{' | '.join(POSE_TYPES.values())}]"
            )
            hint = "; oracle perception needs the simulator's instance masks" if key == "gt" else ""
            param = {"info": "camera_info_topic", "gt": "gt_instances_topic"}.get(key, f"{key}_topic")
            raise BagError(
                f"bag has no {key} topic {names}{hint} (set node.{param} with --params FILE or "
                f"-p node.{param}:=TOPIC); it holds: {have}"
            )
    return out


def read_frames(
    path: str | Path,
    cfg: NodeConfig | None = None,
    with_gt: bool | None = None,
    faults: collections.Counter | None = None,
) -> Iterator[Frame]:
    """Frames of a ROS 2 bag (MCAP or sqlite3), assembled exactly as the node assembles them
    (io.assembler.FrameAssembler). `with_gt`: read the simulator's instance masks (None: when the bag
    has them). Skipped inputs are counted by reason in `faults`."""
    cfg = cfg or NodeConfig()
    ts = typestore(with_ours=False)
    counts = faults if faults is not None else collections.Counter()
    with Reader(bag_path(path)) as reader:
        conns = input_connections(reader.connections, cfg, with_gt)
        gt = "gt" in conns and with_gt is not False
        asm = FrameAssembler(cfg, with_gt=gt, on_fault=lambda e: counts.update([e.reason]))
        key_of = {c.id: k for k, cs in conns.items() for c in cs if k != "gt" or gt}
        add = {
            "rgb": lambda m: asm.add_image("rgb", m),
            "depth": lambda m: asm.add_image("depth", m),
            "gt": lambda m: asm.add_image("gt", m),
            "info": asm.add_camera_info,
            "pose": asm.add_pose,
        }
        for conn, _, raw in reader.messages(connections=[c for cs in conns.values() for c in cs if c.id in key_of]):
            key = key_of[conn.id]
            yield from add[key](ts.deserialize_cdr(raw, conn.msgtype))
        yield from asm.finish()
