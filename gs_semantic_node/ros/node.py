"""The gs_semantic ROS 2 node: thin adapter around SemanticMappingPipeline.

Callbacks only validate, sync and enqueue (bounded, oldest dropped); one worker thread maps;
services answer from the pipeline's snapshot, so they stay responsive while mapping runs.
"""
from __future__ import annotations

import collections
import os
import threading
import time
import traceback

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from gs_semantic_msgs.msg import ObjectArray
from gs_semantic_msgs.srv import ListObjects, LoadMap, QueryObjects, SaveMap, SegmentAt

from ..config import Config
from ..io.validate import ApproxSync, InputFault, InputValidator, camera_from_info, pose_matrix, stamp_seconds
from ..pipeline import SemanticMappingPipeline
from .convert import DIAG_NAME, cloud_msg, marker_array, object_msg


def service_qos(depth: int) -> QoSProfile:
    """Reliable, volatile, KEEP_LAST `depth`: the node's services, and clients that call them at a
    high rate (with ROS's default depth 10 both sides lost responses under load: bench/RESULTS.md)."""
    return QoSProfile(depth=max(1, int(depth)), history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def _ros_value(v):
    return [str(x) for x in v] if isinstance(v, list) and v and isinstance(v[0], str) else v


class GsSemanticNode(Node):
    def __init__(self, **kw):
        super().__init__("gs_semantic", **kw)
        defaults = Config()
        for name, value in defaults.flat().items():
            self.declare_parameter(name, _ros_value(value))
        self.cfg = Config()
        for name in defaults.flat():
            self.cfg.set(name, self.get_parameter(name).value)
        nc = self.cfg.node
        self.get_logger().info(f"perception: masks={self.cfg.perception.masks} embedder={self.cfg.perception.embedder}"
                               + (" (oracle perception: simulator GT masks + MiniLM text proxy)"
                                  if self.cfg.perception.masks == "oracle" else ""))
        self.pipeline = SemanticMappingPipeline(self.cfg)
        self.get_logger().info(f"mapping backend: {self.pipeline.mapper.raster.name} on {self.pipeline.mapper.device}")
        self.validator = InputValidator(nc)
        self.needs_gt = self.cfg.perception.masks == "oracle" or self.cfg.perception.embedder == "text_proxy"
        keys = ["rgb", "depth", "pose"] + (["gt"] if self.needs_gt else [])
        self.sync = ApproxSync(keys, nc.sync_slop)
        self.sync_lock = threading.Lock()
        self.camera_info = None
        self.queue: collections.deque = collections.deque(maxlen=max(1, nc.queue_size))
        self.queue_cv = threading.Condition()
        self.stats = collections.Counter()
        self.received = collections.Counter()
        self.last_processed_stamp = 0.0
        self.last_input_stamp = 0.0
        self.processing = False
        self.published_version = -1
        self.version = 0
        self.running = True
        self.t0 = time.monotonic()

        sensors = MutuallyExclusiveCallbackGroup()
        services = ReentrantCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        health = MutuallyExclusiveCallbackGroup()   # diagnostics keep flowing while a publish folds in keyframes
        # deep reader history: callbacks compete with the mapper for the GIL, KEEP_LAST would overwrite
        qos = QoSProfile(depth=max(50, 10 * nc.queue_size), history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE if nc.reliable_input else ReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(Image, nc.rgb_topic, lambda m: self.on_msg("rgb", m), qos, callback_group=sensors)
        self.create_subscription(Image, nc.depth_topic, lambda m: self.on_msg("depth", m), qos, callback_group=sensors)
        self.create_subscription(CameraInfo, nc.camera_info_topic, self.on_info, qos, callback_group=sensors)
        self.create_subscription(PoseStamped, nc.pose_topic, lambda m: self.on_msg("pose", m), qos,
                                 callback_group=sensors)
        if self.needs_gt:
            self.create_subscription(Image, nc.gt_instances_topic, lambda m: self.on_msg("gt", m), qos,
                                     callback_group=sensors)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.pub_objects = self.create_publisher(ObjectArray, "~/objects", latched)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", latched)
        self.pub_cloud = self.create_publisher(PointCloud2, "~/gaussians", latched)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        srv_qos = service_qos(nc.service_depth)
        for srv_type, name, cb in ((QueryObjects, "~/query_objects", self.srv_query),
                                   (SegmentAt, "~/segment_at", self.srv_segment),
                                   (ListObjects, "~/list_objects", self.srv_list),
                                   (SaveMap, "~/save_map", self.srv_save), (LoadMap, "~/load_map", self.srv_load)):
            self.create_service(srv_type, name, cb, qos_profile=srv_qos, callback_group=services)
        self.create_timer(nc.publish_period, self.publish, callback_group=timers)
        self.create_timer(nc.diagnostics_period, self.publish_diagnostics, callback_group=health)
        if nc.autosave_period > 0:
            self.create_timer(nc.autosave_period, self.autosave, callback_group=timers)
        self.worker = threading.Thread(target=self.work, name="gs_semantic_mapper", daemon=True)
        self.worker.start()
        self.publish(force=True)
        self.get_logger().info("gs_semantic ready")

    # ------------------------------------------------------------ input
    def fault(self, reason: str, detail: str):
        self.stats[f"skipped_{reason}"] += 1
        if self.validator.should_log(reason):
            self.get_logger().warning(f"skipping input ({reason}): {detail} "
                                      f"[{self.stats[f'skipped_{reason}']} so far]")

    def on_info(self, msg: CameraInfo):
        self.received["camera_info"] += 1
        try:
            camera_from_info(msg)
            self.camera_info = msg
        except InputFault as e:
            self.fault(e.reason, str(e))

    def on_msg(self, key: str, msg):
        self.received[key] += 1
        try:
            st = stamp_seconds(msg.header)
            with self.sync_lock:
                got = self.sync.add(key, st, msg)
            if got is None:
                return
            self.last_input_stamp = st
            try:
                frame = self.validator.frame(got["rgb"], got["depth"], self.camera_info, got["pose"], got.get("gt"),
                                             index=self.validator.accepted)
            except InputFault as e:
                if e.reason == "stamp_backwards":       # a bag restarted / the clock jumped back
                    self.validator.reset_time()
                    if self.cfg.node.clear_on_time_jump:
                        self.get_logger().warning("time jumped back: clearing the map (node.clear_on_time_jump)")
                        self.pipeline = SemanticMappingPipeline(self.cfg, self.pipeline.masks, self.pipeline.embedder)
                self.fault(e.reason, str(e))
                return
            with self.queue_cv:
                if len(self.queue) == self.queue.maxlen:
                    self.stats["dropped_queue_full"] += 1
                self.queue.append(frame)
                self.queue_cv.notify()
        except Exception as e:  # never let one odd message take the node down
            self.fault("internal", f"{type(e).__name__}: {e}")

    def work(self):
        while self.running:
            with self.queue_cv:
                while self.running and not self.queue:
                    self.queue_cv.wait(timeout=0.2)
                if not self.running:
                    return
                frame = self.queue.popleft()
                self.processing = True
            try:
                if self.pipeline.process(frame):
                    self.stats["keyframes"] += 1
                    self.version += 1
                self.stats["frames_processed"] += 1
                self.last_processed_stamp = frame.stamp
            except Exception as e:
                self.stats["mapping_errors"] += 1
                self.get_logger().error(f"mapping failed on frame {frame.index}: {e}\n{traceback.format_exc(limit=3)}")
            finally:
                self.processing = False

    # ------------------------------------------------------------ outputs
    def header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.cfg.node.map_frame)

    def publish(self, force: bool = False):
        if not force and self.version == self.published_version:
            return
        if self.version != self.published_version:
            self.pipeline.finish()      # fold keyframes not yet refreshed into labels and boxes
        self.published_version = self.version
        snap = self.pipeline.snapshot
        h = self.header()
        objs = [o for o in snap.objects]
        self.pub_objects.publish(ObjectArray(header=h, objects=[object_msg(o) for o in objs]))
        self.pub_markers.publish(marker_array(objs, h))
        if snap.arrays:
            vocab = {c: i for i, c in enumerate(self.cfg.semantics.vocabulary)}
            cls = {o.id: vocab.get(o.label, len(vocab)) for o in objs}
            self.pub_cloud.publish(cloud_msg(snap.arrays, cls, h))

    def publish_diagnostics(self):
        try:
            import resource
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        except Exception:
            rss_mb = float("nan")
        snap = self.pipeline.snapshot
        gpu = 0.0
        try:
            import torch
            if torch.cuda.is_available():
                gpu = torch.cuda.memory_allocated() / 2 ** 20
        except Exception:
            pass
        values = {
            "frames_accepted": self.validator.accepted, "queue": len(self.queue), "processing": int(self.processing),
            "keyframes": len(self.pipeline.mapper.keyframes), "gaussians": len(self.pipeline.mapper.map),
            "map_resolution_m": round(self.pipeline.mapper.resolution, 4),    # > 0: coarsened under the cap
            "objects": len([o for o in snap.objects if not o.is_background]),
            "mapping_lag_s": round(max(0.0, self.last_input_stamp - self.last_processed_stamp), 3),
            "cpu_rss_mb": round(rss_mb, 1), "gpu_mem_mb": round(gpu, 1),
            "uptime_s": round(time.monotonic() - self.t0, 1), "published_version": self.published_version,
            "version": self.version,
        }
        for k, v in self.received.items():
            values[f"received_{k}"] = v
        values.update(self.stats)
        values.update({f"skipped_{k}": v for k, v in self.validator.counts.items()})
        skipped = sum(v for k, v in values.items() if k.startswith("skipped_"))
        st = DiagnosticStatus(level=DiagnosticStatus.WARN if skipped else DiagnosticStatus.OK,
                              name=DIAG_NAME, hardware_id="gs_semantic",
                              message=f"{values['keyframes']} keyframes, {values['objects']} objects, {skipped} skipped")
        st.values = [KeyValue(key=k, value=str(v)) for k, v in sorted(values.items())]
        self.pub_diag.publish(DiagnosticArray(header=self.header(), status=[st]))

    # ------------------------------------------------------------ services
    def srv_query(self, req, res):
        try:
            r = self.pipeline.query(req.instruction, int(req.max_results))
        except Exception as e:
            res.found, res.message = False, f"query failed: {type(e).__name__}: {e}"
            return res
        snap = self.pipeline.snapshot
        res.found = bool(r.found)
        res.target_phrase = r.parsed.target if r.parsed else ""
        res.objects = [object_msg(o, snap.arrays, bool(req.include_gaussians), self.cfg.query.max_response_gaussians)
                       for o in r.objects]
        res.scores = [float(s) for s in r.scores]
        res.message = r.message
        self.stats["queries"] += 1
        return res

    def srv_segment(self, req, res):
        try:
            snap = self.pipeline.snapshot
            if req.use_latest_keyframe:
                if snap.latest_keyframe is None:
                    res.found, res.message = False, "no keyframe yet"
                    return res
                cam, T = snap.latest_keyframe
            else:
                cam = camera_from_info(req.camera_info)
                p = req.camera_pose
                T = pose_matrix(p.position, p.orientation)
            if not (0 <= req.u < cam.width and 0 <= req.v < cam.height):
                res.found, res.message = False, f"pixel ({req.u},{req.v}) outside {cam.width}x{cam.height}"
                return res
            ids = self.pipeline.render_object_ids(cam, T)
            oid = int(ids[req.v, req.u])
            match = [o for o in snap.objects if o.id == oid]
            if oid < 0 or not match:
                res.found, res.message = False, "no object at that pixel"
                return res
            res.found, res.object, res.message = True, object_msg(match[0]), f"{match[0].label} #{oid}"
        except InputFault as e:
            res.found, res.message = False, f"bad view: {e}"
        except Exception as e:
            res.found, res.message = False, f"segment_at failed: {type(e).__name__}: {e}"
        return res

    def srv_list(self, req, res):
        objs = self.pipeline.objects(include_background=bool(req.include_background))
        res.objects = [object_msg(o) for o in objs]
        res.message = f"{len(objs)} objects" if objs else "the map is empty"
        return res

    def _path(self, p: str) -> str:
        return p or self.cfg.node.map_path

    def srv_save(self, req, res):
        try:
            path = self.pipeline.save(self._path(req.path))
            res.success, res.message = True, f"saved {len(self.pipeline.mapper.map)} Gaussians to {path}"
        except Exception as e:
            res.success, res.message = False, f"save failed: {type(e).__name__}: {e}"
        return res

    def srv_load(self, req, res):
        try:
            self.pipeline.load(self._path(req.path))
            self.version += 1
            res.success, res.message = True, f"loaded {len(self.pipeline.mapper.map)} Gaussians"
        except Exception as e:
            res.success, res.message = False, f"load failed, current map kept: {type(e).__name__}: {e}"
        return res

    def autosave(self):
        try:
            self.pipeline.save(self.cfg.node.map_path)
        except Exception as e:
            self.get_logger().error(f"autosave failed: {e}")

    def shutdown(self):
        self.running = False
        with self.queue_cv:
            self.queue_cv.notify_all()
        self.worker.join(timeout=5.0)


def main(args=None):
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init(args=args)
    node = None
    executor = MultiThreadedExecutor(num_threads=4)
    try:
        node = GsSemanticNode()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
