"""Core types -> ROS messages for what the node publishes, and its diagnostics read back by clients."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from gs_semantic_msgs.msg import SemanticObject as SemanticObjectMsg
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ..io.imageconv import CLOUD_FIELDS, build_cloud_data, pointcloud_fields
from ..types import SemanticObject

DIAG_NAME = "gs_semantic: mapping"  # the node's DiagnosticStatus name


def mapping_diagnostics(msg) -> dict | None:
    """{key: value} of the node's status in a DiagnosticArray, or None if it holds none."""
    for st in msg.status:
        if st.name == DIAG_NAME:
            return {kv.key: kv.value for kv in st.values}
    return None


def to_time(t: float) -> Time:
    sec = int(np.floor(t))
    return Time(sec=sec, nanosec=min(999_999_999, int(round((t - sec) * 1e9))))


def point(v) -> Point:
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def object_msg(
    o: SemanticObject, arrays: dict | None = None, include_gaussians: bool = False, max_gaussians: int = 20000
) -> SemanticObjectMsg:
    m = SemanticObjectMsg()
    m.id, m.label, m.confidence = int(o.id), o.label, float(o.confidence)
    m.alt_labels = [a for a, _ in o.alternatives]
    m.alt_scores = [float(s) for _, s in o.alternatives]
    m.is_background = bool(o.is_background)
    if o.obb is not None:
        m.obb_center, m.obb_size = box_pose(o.obb)
    m.aabb_min, m.aabb_max, m.centroid = point(o.aabb_min), point(o.aabb_max), point(o.centroid)
    m.num_gaussians = int(o.num_gaussians)
    if include_gaussians and o.gaussian_indices is not None:
        idx = np.asarray(o.gaussian_indices)[:max_gaussians]
        m.gaussian_indices = idx.astype(np.uint32).tolist()
        if arrays is not None and len(idx) and idx.max() < len(arrays["means"]):
            m.gaussian_positions = arrays["means"][idx].astype(np.float32).reshape(-1).tolist()
    m.last_seen = to_time(o.last_seen)
    return m


def box_pose(box) -> tuple[Pose, Vector3]:
    q = Rotation.from_matrix(box.rotation).as_quat()
    pose = Pose(position=point(box.center), orientation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))
    return pose, Vector3(x=float(box.size[0]), y=float(box.size[1]), z=float(box.size[2]))


def change_msg(c, frame_id: str):
    """semantics.changes.ObjectChange -> gs_semantic_msgs/ObjectChange."""
    from gs_semantic_msgs.msg import ObjectChange

    m = ObjectChange(header=Header(stamp=to_time(c.stamp), frame_id=frame_id), id=int(c.id), label=c.label, kind=c.kind)
    if c.old_box is not None:
        m.has_old_box = True
        m.old_box_center, m.old_box_size = box_pose(c.old_box)
    if c.new_box is not None:
        m.has_new_box = True
        m.new_box_center, m.new_box_size = box_pose(c.new_box)
    return m


def id_color(i: int) -> tuple:
    rng = np.random.default_rng(int(i) * 7919 + 17)
    c = rng.uniform(0.25, 1.0, 3)
    return float(c[0]), float(c[1]), float(c[2])


def marker_array(objects: list[SemanticObject], header: Header, ns: str = "gs_semantic") -> MarkerArray:
    out = MarkerArray()
    clear = Marker(header=header, ns=ns, action=Marker.DELETEALL)
    out.markers.append(clear)
    for o in objects:
        if o.obb is None or o.is_background:
            continue
        r, g, b = id_color(o.id)
        box = Marker(header=header, ns=ns, id=2 * int(o.id), type=Marker.CUBE, action=Marker.ADD)
        box.pose, box.scale = box_pose(o.obb)
        box.color = ColorRGBA(r=r, g=g, b=b, a=0.35)
        text = Marker(header=header, ns=ns, id=2 * int(o.id) + 1, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        text.pose = Pose(position=point(o.obb.center + [0, 0, o.obb.size[2] / 2 + 0.03]), orientation=Quaternion(w=1.0))
        text.scale.z = 0.04
        text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        text.text = f"{o.label} #{o.id} ({o.confidence:.2f})"
        out.markers.extend([box, text])
    return out


def cloud_msg(arrays: dict, class_of_object: dict, header: Header) -> PointCloud2:
    xyz = arrays["means"].astype(np.float32)
    oid = arrays["object_id"].astype(np.int64)
    cls = (
        np.array([class_of_object.get(int(i), 0) for i in oid], dtype=np.uint32) if len(oid) else np.zeros(0, np.uint32)
    )
    data, step = build_cloud_data(xyz, arrays["rgb"], np.maximum(oid, 0), cls)
    fields, _ = pointcloud_fields(CLOUD_FIELDS)
    msg = PointCloud2(
        header=header,
        height=1,
        width=int(len(xyz)),
        is_bigendian=False,
        point_step=step,
        row_step=step * int(len(xyz)),
        is_dense=True,
    )
    msg.fields = [PointField(name=n, offset=o, datatype=t, count=1) for n, o, t in fields]
    msg.data = data
    return msg
