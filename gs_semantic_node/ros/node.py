"""The gs_semantic ROS 2 node: thin adapter around SemanticMappingPipeline.

Callbacks only validate, sync and enqueue (bounded, oldest dropped); one worker thread maps;
services answer from the pipeline's snapshot, so they stay responsive while mapping runs.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TransformStamped
from gs_semantic_msgs.msg import ObjectArray, ObjectChange
from gs_semantic_msgs.srv import ListObjects, LoadMap, QueryObjects, SaveMap, SegmentAt
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..config import Config
from ..health import StageHealth, StartupError, preflight
from ..io.assembler import FrameAssembler
from ..io.mapfile import MapFileError, confined_path
from ..io.validate import InputFault, camera_from_info, pose_matrix
from ..pipeline import SemanticMappingPipeline
from .convert import DIAG_NAME, change_msg, cloud_msg, marker_array, object_msg


def service_qos(depth: int) -> QoSProfile:
    """Reliable, volatile, KEEP_LAST `depth`: the node's services, and clients that call them at a
    high rate (with ROS's default depth 10 both sides lost responses under load: bench/RESULTS.md)."""
    return QoSProfile(
        depth=max(1, int(depth)),
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


CHANGES_HISTORY = 50


def latched_history(depth: int) -> QoSProfile:
    """RELIABLE + TRANSIENT_LOCAL: a subscriber that joins later gets the last `depth` messages."""
    return QoSProfile(
        depth=depth,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
        reliability=ReliabilityPolicy.RELIABLE,
        history=HistoryPolicy.KEEP_LAST,
    )


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
        nc, pc = self.cfg.node, self.cfg.perception
        preflight(self.cfg)  # StartupError: main() exits with its one line
        self.get_logger().info(
            f"perception: masks={pc.masks} embedder={pc.embedder}"
            + (" (oracle perception: simulator GT masks + MiniLM text proxy)" if pc.masks == "oracle" else "")
        )
        try:
            self.pipeline = SemanticMappingPipeline(self.cfg)
        except Exception as e:
            raise StartupError(f"the pipeline cannot be built: {type(e).__name__}: {e}") from e
        self.get_logger().info(f"mapping backend: {self.pipeline.mapper.raster.name} on {self.pipeline.mapper.device}")
        self.health = StageHealth(lambda m: self.get_logger().error(m))
        self.stats = collections.Counter()
        self.received = collections.Counter()
        self._fault_log: dict[str, float] = {}
        self.needs_gt = pc.masks == "oracle" or (pc.embedder == "text_proxy" and pc.masks != "none")
        self.assembler = FrameAssembler(nc, with_gt=self.needs_gt, on_fault=self.fault)
        self.sync_lock = threading.Lock()
        self.queue: collections.deque = collections.deque(maxlen=max(1, nc.queue_size))
        self.queue_cv = threading.Condition()
        self.reset_requested = False  # the worker clears the map (node.clear_on_time_jump)
        self.last_processed_stamp = 0.0
        self.last_input_stamp = 0.0
        self.processing = False
        self.published_version = -1
        self.refreshed_version = 0  # the version the snapshot shows (the worker refreshes)
        self._last_refresh = 0.0
        self.version = 0  # bumped by every keyframe, reset and load
        self.running = True
        self.t0 = time.monotonic()

        sensors = MutuallyExclusiveCallbackGroup()
        services = ReentrantCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        health = MutuallyExclusiveCallbackGroup()  # diagnostics keep flowing while a publish folds in keyframes
        # deep reader history: callbacks compete with the mapper for the GIL, KEEP_LAST would overwrite
        qos = QoSProfile(
            depth=max(50, 10 * nc.queue_size),
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE if nc.reliable_input else ReliabilityPolicy.BEST_EFFORT,
        )
        for key, (msg_type, topic) in self.input_topics().items():
            cb = (
                self.on_info
                if key == "info"
                else self.on_pose
                if key == "pose"
                else (lambda m, k=key: self.on_image(k, m))
            )
            self.create_subscription(msg_type, topic, cb, qos, callback_group=sensors)
        latched = latched_history(1)
        self.pub_objects = self.create_publisher(ObjectArray, "~/objects", latched)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", latched)
        self.pub_cloud = self.create_publisher(PointCloud2, "~/gaussians", latched)
        # each change once, reliably; a late subscriber still gets the last CHANGES_HISTORY
        self.pub_changes = self.create_publisher(ObjectChange, "~/changes", latched_history(CHANGES_HISTORY))
        self.changes_seq = 0  # the last change published
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        srv_qos = service_qos(nc.service_depth)
        for srv_type, name, cb in (
            (QueryObjects, "~/query_objects", self.srv_query),
            (SegmentAt, "~/segment_at", self.srv_segment),
            (ListObjects, "~/list_objects", self.srv_list),
            (SaveMap, "~/save_map", self.srv_save),
            (LoadMap, "~/load_map", self.srv_load),
        ):
            self.create_service(srv_type, name, cb, qos_profile=srv_qos, callback_group=services)
        self.create_timer(nc.publish_period, self.publish, callback_group=timers)
        self.create_timer(nc.diagnostics_period, self.publish_diagnostics, callback_group=health)
        if nc.autosave_period > 0:
            self.create_timer(nc.autosave_period, self.autosave, callback_group=timers)
        self.worker = threading.Thread(target=self.work, name="gs_semantic_mapper", daemon=True)
        self.worker.start()
        self.publish(force=True)
        self.get_logger().info("gs_semantic ready")

    def input_topics(self) -> dict:
        """key -> (message type, topic) the node subscribes, from the node.* parameters."""
        nc = self.cfg.node
        pose_types = {"pose": PoseStamped, "odometry": Odometry, "transform": TransformStamped}
        if nc.pose_type not in pose_types:
            raise StartupError(f"node.pose_type must be one of {sorted(pose_types)}, not {nc.pose_type!r}")
        if nc.rgb_transport not in ("raw", "compressed") or nc.depth_transport not in ("raw", "compressedDepth"):
            raise StartupError("node.rgb_transport is raw | compressed, node.depth_transport raw | compressedDepth")
        out = {
            "rgb": (CompressedImage, nc.rgb_topic + "/compressed")
            if nc.rgb_transport == "compressed"
            else (Image, nc.rgb_topic),
            "depth": (CompressedImage, nc.depth_topic + "/compressedDepth")
            if nc.depth_transport == "compressedDepth"
            else (Image, nc.depth_topic),
            "info": (CameraInfo, nc.camera_info_topic),
            "pose": (pose_types[nc.pose_type], nc.pose_topic),
        }
        if self.needs_gt:
            out["gt"] = (Image, nc.gt_instances_topic)
        return out

    # ------------------------------------------------------------ input
    def fault(self, e: InputFault):
        """A skipped input: counted by reason, one log line per reason at most every 10 s."""
        self.stats[f"skipped_{e.reason}"] += 1
        now = time.monotonic()
        if now - self._fault_log.get(e.reason, -1e9) >= 10.0:
            self._fault_log[e.reason] = now
            self.get_logger().warning(f"skipping input ({e.reason}): {e} [{self.stats[f'skipped_{e.reason}']} so far]")

    def _feed(self, key: str, add, msg):
        self.received[key] += 1
        with self.health.guard("input"):
            with self.sync_lock:
                jumps = self.assembler.time_jumps
                frames = add(msg)
                jumped = self.assembler.time_jumps != jumps
            if jumped and self.cfg.node.clear_on_time_jump:
                self.get_logger().warning("time jumped back: the map will be cleared (node.clear_on_time_jump)")
                self.reset_requested = True
            for frame in frames:
                self.last_input_stamp = frame.stamp
                with self.queue_cv:
                    if len(self.queue) == self.queue.maxlen:
                        self.stats["dropped_queue_full"] += 1
                    self.queue.append(frame)
                    self.queue_cv.notify()

    def on_image(self, key: str, msg):
        self._feed(key, lambda m: self.assembler.add_image(key, m), msg)

    def on_info(self, msg: CameraInfo):
        self._feed("camera_info", self.assembler.add_camera_info, msg)

    def on_pose(self, msg):
        self._feed("pose", self.assembler.add_pose, msg)

    def work(self):
        """The one thread that changes the pipeline: frames in, and when none is waiting, the refresh
        that folds new keyframes into labels and boxes (publishers only read its snapshot)."""
        while self.running:
            with self.queue_cv:
                if self.running and not self.queue:
                    self.queue_cv.wait(timeout=0.2)
                if not self.running:
                    return
                frame = self.queue.popleft() if self.queue else None
                self.processing = frame is not None or self.refreshed_version != self.version
            try:
                if frame is not None:
                    with self.health.guard("mapping"):
                        self._map(frame)
                # refresh when idle, and at the publish period while frames keep coming
                due = frame is None or time.monotonic() - self._last_refresh >= self.cfg.node.publish_period
                if self.refreshed_version != self.version and due:
                    with self.health.guard("refresh"):
                        version = self.version
                        self._last_refresh = time.monotonic()
                        self.pipeline.finish()
                        self.refreshed_version = version
            finally:
                self.processing = False

    def _map(self, frame):
        if self.reset_requested:
            self.reset_requested = False
            self.pipeline = SemanticMappingPipeline(self.cfg, self.pipeline.masks, self.pipeline.embedder)
            self.version += 1
        if self.pipeline.process(frame):
            self.stats["keyframes"] += 1
            self.version += 1
        self.stats["frames_processed"] += 1
        self.last_processed_stamp = frame.stamp

    # ------------------------------------------------------------ outputs
    def header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.cfg.node.map_frame)

    def publish(self, force: bool = False):
        """Publish the pipeline's latest snapshot when the worker has refreshed it since the last time."""
        with self.health.guard("publish"):
            version = self.refreshed_version
            if not force and version == self.published_version:
                return
            snap = self.pipeline.snapshot
            h = self.header()
            objs = list(snap.objects)
            self.pub_objects.publish(ObjectArray(header=h, objects=[object_msg(o) for o in objs]))
            self.pub_markers.publish(marker_array(objs, h))
            for c in self.pipeline.changes(self.changes_seq):
                self.pub_changes.publish(change_msg(c, self.cfg.node.map_frame))
                self.changes_seq = c.seq
            if snap.arrays:
                vocab = {c: i for i, c in enumerate(self.cfg.semantics.vocabulary)}
                cls = {o.id: vocab.get(o.label, len(vocab)) for o in objs}
                self.pub_cloud.publish(cloud_msg(snap.arrays, cls, h))
            self.published_version = version  # only once published: a failed publish is tried again

    def diagnostics_values(self) -> dict:
        import resource

        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        snap = self.pipeline.snapshot
        gpu = 0.0
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.memory_allocated() / 2**20
        values = {
            "frames_accepted": self.assembler.validator.accepted,
            "queue": len(self.queue),
            "processing": int(self.processing),
            "keyframes": len(self.pipeline.mapper.keyframes),
            "gaussians": len(self.pipeline.mapper.map),
            "map_resolution_m": round(self.pipeline.mapper.resolution, 4),  # > 0: coarsened under the cap
            # keyframe poses aligned to the map (mapper.track): the last correction, and how many were refused
            "track_correction_mm": round(1000 * getattr(self.pipeline.mapper.last_alignment, "translation", 0.0), 2),
            "track_weight": round(getattr(self.pipeline.mapper.last_alignment, "weight", 0.0), 3),  # the share taken
            "track_refused": self.pipeline.mapper.track_refused,
            "track_direct_refused": self.pipeline.mapper.track_direct_refused,  # mapper.track_direct
            "objects": len([o for o in snap.objects if not o.is_background]),
            "mapping_lag_s": round(max(0.0, self.last_input_stamp - self.last_processed_stamp), 3),
            "cpu_rss_mb": round(rss_mb, 1),
            "gpu_mem_mb": round(gpu, 1),
            "uptime_s": round(time.monotonic() - self.t0, 1),
            "published_version": self.published_version,
            "refreshed_version": self.refreshed_version,
            "version": self.version,
            "failing_stages": ",".join(sorted(self.health.failing)),
        }
        for k, v in self.received.items():
            values[f"received_{k}"] = v
        values.update(self.stats)
        values.update({f"skipped_{k}": v for k, v in self.assembler.validator.counts.items()})
        values.update({f"errors_{k}": v for k, v in self.health.errors.items()})
        return values

    def publish_diagnostics(self):
        with self.health.guard("diagnostics"):
            values = self.diagnostics_values()
            skipped = sum(v for k, v in values.items() if k.startswith("skipped_"))
            failing = dict(self.health.failing)
            if failing:
                level = DiagnosticStatus.ERROR
                message = "ERROR in " + "; ".join(f"{k}: {v}" for k, v in sorted(failing.items()))
            else:
                level = DiagnosticStatus.WARN if skipped else DiagnosticStatus.OK
                message = f"{values['keyframes']} keyframes, {values['objects']} objects, {skipped} skipped"
            st = DiagnosticStatus(level=level, name=DIAG_NAME, hardware_id="gs_semantic", message=message[:500])
            st.values = [KeyValue(key=k, value=str(v)) for k, v in sorted(values.items())]
            self.pub_diag.publish(DiagnosticArray(header=self.header(), status=[st]))

    # ------------------------------------------------------------ services
    def _serve(self, stage: str, fn, req, res, fail):
        """Run a service body; an exception becomes a failure response (`fail(res, text)`), counted."""
        self.stats[f"calls_{stage}"] += 1
        try:
            out = fn(req, res)
        except Exception as e:
            self.health.record(stage, e)
            fail(res, f"{stage} failed: {type(e).__name__}: {e}")
            return res
        self.health.ok(stage)
        return out

    @staticmethod
    def _not_found(res, text):
        res.found, res.message = False, text

    @staticmethod
    def _unsuccessful(res, text):
        res.success, res.message = False, text

    def srv_query(self, req, res):
        return self._serve("query", self._query, req, res, self._not_found)

    def _query(self, req, res):
        r = self.pipeline.query(req.instruction, int(req.max_results))
        snap = self.pipeline.snapshot
        res.found = bool(r.found)
        res.target_phrase = r.parsed.target if r.parsed else ""
        res.objects = [
            object_msg(o, snap.arrays, bool(req.include_gaussians), self.cfg.query.max_response_gaussians)
            for o in r.objects
        ]
        res.scores = [float(s) for s in r.scores]
        res.message = r.message
        self.stats["queries"] += 1
        return res

    def srv_segment(self, req, res):
        return self._serve("segment_at", self._segment, req, res, self._not_found)

    def _segment(self, req, res):
        snap = self.pipeline.snapshot
        try:
            if req.use_latest_keyframe:
                if snap.latest_keyframe is None:
                    res.found, res.message = False, "no keyframe yet"
                    return res
                cam, T = snap.latest_keyframe
            else:
                cam = camera_from_info(req.camera_info)
                p = req.camera_pose
                T = pose_matrix(p.position, p.orientation)
        except InputFault as e:
            res.found, res.message = False, f"bad view: {e}"
            return res
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
        return res

    def srv_list(self, req, res):
        def body(req, res):
            objs = self.pipeline.objects(include_background=bool(req.include_background))
            res.objects = [object_msg(o) for o in objs]
            res.message = f"{len(objs)} objects" if objs else "the map is empty"
            return res

        return self._serve("list_objects", body, req, res, lambda r, t: setattr(r, "message", t))

    def map_file(self, name: str):
        """A SaveMap / LoadMap name inside node.map_dir (MapFileError for anything outside it)."""
        return confined_path(self.cfg.node.map_dir, name or self.cfg.node.map_name)

    def srv_save(self, req, res):
        def body(req, res):
            try:
                path = self.map_file(req.path)
            except MapFileError as e:
                res.success, res.message = False, f"save refused: {e}"
                return res
            path = self.pipeline.save(path)
            res.success, res.message = True, f"saved {len(self.pipeline.mapper.map)} Gaussians to {path}"
            return res

        return self._serve("save_map", body, req, res, self._unsuccessful)

    def srv_load(self, req, res):
        def body(req, res):
            try:
                self.pipeline.load(self.map_file(req.path))
            except Exception as e:  # a bad file is an answer, not a failing stage
                res.success, res.message = False, f"load failed, current map kept: {type(e).__name__}: {e}"
                return res
            self.version += 1
            res.success, res.message = True, f"loaded {len(self.pipeline.mapper.map)} Gaussians"
            return res

        return self._serve("load_map", body, req, res, self._unsuccessful)

    def autosave(self):
        with self.health.guard("autosave"):
            self.pipeline.save(self.map_file(""))

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
    code = 0
    try:
        try:
            node = GsSemanticNode()
        except StartupError as e:
            print(f"[gs_semantic] cannot start: {e}", file=sys.stderr, flush=True)
            return 1
        except Exception as e:
            print(f"[gs_semantic] cannot start: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            return 1
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGINT / SIGTERM shut the context down from rclpy's signal handler; landing while the executor
        # builds its wait set, that surfaces as an RCLError ("context is not valid"): a requested stop
        if rclpy.ok():
            raise
    finally:
        executor.shutdown()
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
