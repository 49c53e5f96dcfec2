"""The node as a separate process over real DDS (loopback only)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("gs_semantic_msgs")

from gs_semantic_node.sim.generate import load_gt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHANGE_SEED = 12  # a primitives scene whose removed object the demo parameters map before it goes
pytestmark = pytest.mark.slow


def launch(sim_dir: Path, tmp_path: Path) -> subprocess.Popen:
    """The node on the demo parameters, oracle perception of `sim_dir`, logging to tmp_path/node.log."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "node.log", "w")
    cmd = [
        sys.executable,
        "-m",
        "gs_semantic_node.ros.node",
        "--ros-args",
        "--params-file",
        str(ROOT / "config" / "tabletop_demo.yaml"),
        "-p",
        f"perception.gt_path:={sim_dir / 'gt.json'}",
        "-p",
        f"node.map_dir:={tmp_path}",
        "-p",
        "node.publish_period:=0.5",
        "-p",
        "mapper.iters_per_keyframe:=2",
    ]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def node_proc(small_sim, tmp_path):
    p = launch(small_sim, tmp_path)
    yield p, tmp_path
    if p.poll() is None:
        p.kill()
        p.wait()


@pytest.fixture
def client(node_proc):
    """The test's own rclpy node and `connect(srv_type, name)`: a client whose service is up."""
    _, tmp = node_proc
    rclpy.init()
    n = rclpy.create_node("test_client")

    def connect(srv_type, name: str, timeout: float = 90):
        c = n.create_client(srv_type, f"/gs_semantic/{name}")
        assert c.wait_for_service(timeout_sec=timeout), (tmp / "node.log").read_text()
        return c

    try:
        yield n, connect
    finally:
        n.destroy_node()
        rclpy.try_shutdown()


def call(node, cli, req, timeout=30):
    """Synchronous service call from the test's node; fails the test on timeout."""
    f = cli.call_async(req)
    rclpy.spin_until_future_complete(node, f, timeout_sec=timeout)
    assert f.done() and f.result() is not None, f"{cli.srv_name} timed out"
    return f.result()


def inject_faults(n, sim) -> dict:
    """Publish corrupted frames (later stamps, otherwise valid companions); returns expected counts."""
    import numpy as np
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from gs_semantic_node.io.bags import read_frames
    from gs_semantic_node.io.imageconv import encode_image

    frames = list(read_frames(sim / "bag"))
    f = frames[-1]
    qos = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    from gs_semantic_node.config import NodeConfig

    nc = NodeConfig()  # the topics the simulator's bag and the node use
    pubs = {
        k: n.create_publisher(t, topic, qos)
        for k, (t, topic) in {
            "rgb": (Image, nc.rgb_topic),
            "depth": (Image, nc.depth_topic),
            "pose": (PoseStamped, nc.pose_topic),
            "gt": (Image, nc.gt_instances_topic),
        }.items()
    }
    time.sleep(1.0)

    def image(arr, enc, t):
        m = Image(**{k: v for k, v in encode_image(arr, enc).items() if k != "data"})
        m.data = encode_image(arr, enc)["data"]
        m.header.stamp.sec, m.header.stamp.nanosec = int(t), int((t % 1) * 1e9)
        return m

    def send(t, rgb=None, depth=None, quat=(0.0, 0.0, 0.0, 1.0), pos_offset=0.0):
        r = image(f.rgb, "rgb8", t) if rgb is None else rgb
        d = image(np.round(f.depth * 1000).astype(np.uint16), "16UC1", t) if depth is None else depth
        p = PoseStamped()
        p.header.stamp = r.header.stamp
        q = quat
        p.pose.position.x, p.pose.position.y, p.pose.position.z = map(float, f.T_world_cam[:3, 3] + pos_offset)
        p.pose.orientation.x, p.pose.orientation.y, p.pose.orientation.z, p.pose.orientation.w = map(float, q)
        for k, m in (
            ("rgb", r),
            ("depth", d),
            ("pose", p),
            ("gt", image(f.gt_instances.astype(np.uint16), "16UC1", t)),
        ):
            pubs[k].publish(m)
        time.sleep(0.3)

    t0 = f.stamp + 0.5  # right after the good stream, so pose jumps are real jumps
    bad = image(f.rgb, "rgb8", t0)
    bad.encoding = "yuv422"
    send(t0, rgb=bad)
    send(t0 + 0.1, depth=image(np.full(f.depth.shape, np.nan, np.float32), "32FC1", t0 + 0.1))
    send(t0 + 0.2, quat=(0.0, 0.0, 0.0, 2.0))
    short = image(f.rgb, "rgb8", t0 + 0.3)
    short.data = short.data[:100]
    send(t0 + 0.3, rgb=short)
    half = image(f.rgb[::2, ::2].copy(), "rgb8", t0 + 0.4)
    send(t0 + 0.4, rgb=half)  # rgb smaller than depth and camera_info
    send(t0 + 0.5, pos_offset=100.0)  # 100 m in 0.5 s
    for p in pubs.values():
        n.destroy_publisher(p)
    return {
        "encoding": 1,
        "depth_invalid": 1,
        "pose_quaternion": 1,
        "size": 1,
        "camera_info_mismatch": 1,
        "pose_jump": 1,
    }


def test_node_end_to_end(node_proc, client, small_sim):
    from diagnostic_msgs.msg import DiagnosticArray
    from gs_semantic_msgs.msg import ObjectArray
    from gs_semantic_msgs.srv import ListObjects, LoadMap, QueryObjects, SaveMap, SegmentAt
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from gs_semantic_node.ros.player import BagPlayer

    proc, tmp = node_proc
    n, connect = client
    q = connect(QueryObjects, "query_objects")

    # empty map: an honest "not found", never a made-up object
    r = call(n, q, QueryObjects.Request(instruction="grab the mug"))
    assert not r.found and "empty" in r.message
    diag = {}
    n.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: diag.update({kv.key: kv.value for s in m.status for kv in s.values}),
        10,
    )
    player = BagPlayer(small_sim / "bag", rate=1.0)
    sent = player.play()
    assert sent == 12 * 5
    t_end = time.monotonic() + 240
    while time.monotonic() < t_end:
        rclpy.spin_once(n, timeout_sec=0.5)
        if (
            diag
            and int(diag.get("frames_processed", 0)) >= 12
            and diag.get("queue") == "0"
            and diag.get("published_version") == diag.get("version")
        ):
            break
    assert int(diag.get("frames_processed", 0)) == 12, (diag, (tmp / "node.log").read_text()[-3000:])
    # fault injection: one corrupted set of each kind; each is skipped and counted, the node stays up
    injected = inject_faults(n, small_sim)
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end:
        rclpy.spin_once(n, timeout_sec=0.5)
        if all(int(diag.get(f"skipped_{k}", 0)) >= v for k, v in injected.items()):
            break
    for k, v in injected.items():
        assert int(diag.get(f"skipped_{k}", 0)) == v, f"{k}: {sorted(diag.items())}"
    assert proc.poll() is None
    r = call(n, q, QueryObjects.Request(instruction="grab the mug", include_gaussians=True))
    assert r.found, r.message
    assert r.target_phrase == "mug" and r.objects[0].label == "mug"
    assert len(r.objects[0].gaussian_indices) == r.objects[0].num_gaussians > 0
    assert len(r.objects[0].gaussian_positions) == 3 * len(r.objects[0].gaussian_indices)
    r = call(n, q, QueryObjects.Request(instruction="   "))
    assert not r.found and "rejected" in r.message
    lst = call(n, n.create_client(ListObjects, "/gs_semantic/list_objects"), ListObjects.Request())
    assert len(lst.objects) >= 2
    seg = call(
        n,
        n.create_client(SegmentAt, "/gs_semantic/segment_at"),
        SegmentAt.Request(u=80, v=60, use_latest_keyframe=True),
    )
    assert isinstance(seg.found, bool) and seg.message
    save = call(n, n.create_client(SaveMap, "/gs_semantic/save_map"), SaveMap.Request(path="m"), 60)
    assert save.success, save.message
    bad = call(n, n.create_client(LoadMap, "/gs_semantic/load_map"), LoadMap.Request(path="nope"))
    assert not bad.success and "current map kept" in bad.message
    good = call(n, n.create_client(LoadMap, "/gs_semantic/load_map"), LoadMap.Request(path="m"), 60)
    assert good.success, good.message
    # a late subscriber still gets the object list (transient local)
    got = []
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    n.create_subscription(ObjectArray, "/gs_semantic/objects", got.append, qos)
    t_end = time.monotonic() + 10
    while not got and time.monotonic() < t_end:
        rclpy.spin_once(n, timeout_sec=0.2)
    assert got and got[-1].header.frame_id == "map" and len(got[-1].objects) >= 2
    player.destroy_node()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)  # shuts down (a keyframe in flight finishes first), never hangs
    assert proc.returncode == 0, (tmp / "node.log").read_text()[-3000:]


def test_sigkill_during_save_map_keeps_previous_map(node_proc, client, small_sim):
    from gs_semantic_msgs.srv import QueryObjects, SaveMap

    from gs_semantic_node.io.mapfile import load_map
    from gs_semantic_node.ros.player import BagPlayer

    proc, tmp = node_proc
    n, connect = client
    save = connect(SaveMap, "save_map")
    path = str(tmp / "kill_map")
    assert call(n, save, SaveMap.Request(path="kill_map")).success  # previous map: the empty one
    before = len(load_map(path)[0]["means"])
    BagPlayer(small_sim / "bag", rate=2.0).play()
    q = n.create_client(QueryObjects, "/gs_semantic/query_objects")
    t_end = time.monotonic() + 180
    while time.monotonic() < t_end:  # wait until the map has objects
        if call(n, q, QueryObjects.Request(instruction="grab the mug"), 10).found:
            break
        time.sleep(1.0)
    t = time.monotonic()
    assert call(n, save, SaveMap.Request(path="kill_map"), 60).success
    dur = time.monotonic() - t
    grown = len(load_map(path)[0]["means"])
    assert grown > before
    save.call_async(SaveMap.Request(path="kill_map"))  # in flight when the node is killed
    time.sleep(max(0.005, 0.5 * dur))  # part-way through the save
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    arrays, _, _ = load_map(path)  # never corrupt: old or new, complete
    assert len(arrays["means"]) >= grown


def test_a_node_that_cannot_start_fails_its_caller_within_seconds(tmp_path):
    from gs_semantic_node.ros.process import NodeExited, NodeProcess

    node = NodeProcess(
        str(ROOT / "config" / "defaults.yaml"),
        ["perception.sam_checkpoint:=/models/missing_sam.pth", f"node.map_dir:={tmp_path}"],
        tmp_path / "node.log",
    )
    try:
        t = time.monotonic()
        with pytest.raises(
            NodeExited, match="cannot start: SAM vit_h checkpoint not found at '/models/missing_sam.pth'"
        ):
            node.wait_until(lambda: False, timeout=60)
        assert time.monotonic() - t < 30  # interpreter + torch import, then one line
        assert node.proc.returncode == 1
    finally:
        node.stop()


def test_a_failing_stage_is_reported_and_the_node_keeps_serving(small_sim, tmp_path):
    """In-process node over real DDS: the refresh stage raises (an injected failure); the error is
    counted and shown as ERROR in /diagnostics, queries are still answered, and the stage recovers."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from gs_semantic_msgs.srv import QueryObjects
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from gs_semantic_node.ros.convert import DIAG_NAME
    from gs_semantic_node.ros.node import GsSemanticNode

    rclpy.init()
    try:
        node = GsSemanticNode(
            parameter_overrides=[
                Parameter("perception.masks", value="oracle"),
                Parameter("perception.embedder", value="text_proxy"),
                Parameter("perception.gt_path", value=str(small_sim / "gt.json")),
                Parameter("node.map_dir", value=str(tmp_path)),
                Parameter("node.publish_period", value=0.2),
                Parameter("node.diagnostics_period", value=0.2),
            ]
        )
        ex = MultiThreadedExecutor(num_threads=4)
        ex.add_node(node)
        import threading

        spin = threading.Thread(target=ex.spin, daemon=True)
        spin.start()
        client = rclpy.create_node("fault_client")
        statuses = []
        client.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: statuses.extend(s for s in m.status if s.name == DIAG_NAME), 10
        )
        q = client.create_client(QueryObjects, "/gs_semantic/query_objects")
        assert q.wait_for_service(timeout_sec=30)

        def refresh_fails(*a, **k):
            raise RuntimeError("injected refresh failure")

        real = node.pipeline.finish
        node.pipeline.finish = refresh_fails
        node.version += 1  # something new: the worker refreshes -> finish()
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end and not any(s.level == DiagnosticStatus.ERROR for s in statuses):
            rclpy.spin_once(client, timeout_sec=0.2)
        err = [s for s in statuses if s.level == DiagnosticStatus.ERROR]
        assert err and "refresh" in err[-1].message and "injected refresh failure" in err[-1].message
        vals = {kv.key: kv.value for kv in err[-1].values}
        assert int(vals["errors_refresh"]) >= 1 and vals["failing_stages"] == "refresh"
        r = call(client, q, QueryObjects.Request(instruction="grab the mug"))
        assert not r.found and "empty" in r.message  # still answering
        assert int(vals["errors_refresh"]) < 1 + 20 / 0.2 + 1  # retried each period, not in a tight loop
        node.pipeline.finish = real  # the next period tries again and succeeds
        statuses.clear()
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end and not (statuses and statuses[-1].level != DiagnosticStatus.ERROR):
            rclpy.spin_once(client, timeout_sec=0.2)
        assert statuses and statuses[-1].level != DiagnosticStatus.ERROR and node.published_version == node.version
        client.destroy_node()
        ex.shutdown()
        node.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown()


ROBOT_PARAMS = """/**:
  ros__parameters:
    mapper: {width: 80, height: 60, iters_per_keyframe: 2}
    perception: {masks: none}
    node:
      rgb_topic: /camera/camera/color/image_raw
      rgb_transport: compressed
      depth_topic: /camera/camera/aligned_depth_to_color/image_raw
      camera_info_topic: /camera/camera/color/camera_info
      pose_topic: /odom
      pose_type: odometry
      reliable_input: true
      queue_size: 64
"""


def test_a_robot_bag_maps_offline_and_through_the_node_alike(tmp_path):
    """A RealSense-style recording of real frames (JPEG colour, aligned depth, slow camera_info, odometry
    at its own stamps, no GT) maps offline with the topic names alone, and replays into the node with
    the same frames and keyframes."""
    import robot_bags

    if not (robot_bags.TUM / "rgb.txt").is_file():
        pytest.skip("real data not shared here")
    import numpy as np
    from diagnostic_msgs.msg import DiagnosticArray

    from gs_semantic_node.offline import load_config, offline_pipeline
    from gs_semantic_node.ros.convert import mapping_diagnostics
    from gs_semantic_node.ros.player import BagPlayer
    from gs_semantic_node.ros.process import NodeProcess, ros_env, use_ros_env

    truth = robot_bags.tum_truth(8)
    robot_bags.write_robot_bag(tmp_path / "rec" / "bag", truth, "mcap", True, np.random.default_rng(1))
    params = tmp_path / "robot.yaml"
    params.write_text(ROBOT_PARAMS)
    cfg = load_config(params)
    p, _, skipped = offline_pipeline(tmp_path / "rec", cfg, progress=False)
    assert not skipped and len(p.mapper.keyframes) >= 4
    env = ros_env()
    use_ros_env(env)
    node = NodeProcess(str(params), [f"node.map_dir:={tmp_path}"], tmp_path / "node.log", env)
    rclpy.init()
    try:
        n = rclpy.create_node("robot_bag_client")
        diag = {}
        n.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.update(mapping_diagnostics(m) or {}), 10)
        from gs_semantic_msgs.srv import ListObjects

        node.wait_for_service(n.create_client(ListObjects, "/gs_semantic/list_objects"), 90)
        player = BagPlayer(tmp_path / "rec", 2.0, cfg.node)
        player.play(stop=lambda: node.proc.poll() is not None)
        done = node.wait_until(
            lambda: (
                int(diag.get("frames_processed", 0)) >= len(truth)
                and diag.get("queue") == "0"
                and diag.get("processing") == "0"
            ),
            120,
            lambda: rclpy.spin_once(n, timeout_sec=0.3),
        )
        assert done, (diag, node.tail())
        assert int(diag["frames_accepted"]) == len(truth) and int(diag["keyframes"]) == len(p.mapper.keyframes)
        assert abs(int(diag["gaussians"]) - len(p.mapper.map)) <= 0.05 * len(p.mapper.map)
        assert not any(k.startswith("skipped_") for k in diag), diag
        player.destroy_node()
        n.destroy_node()
    finally:
        rclpy.try_shutdown()
        node.stop()


def test_the_node_publishes_an_object_taken_away_on_its_changes_topic(tmp_path):
    from gs_semantic_msgs.msg import ObjectChange
    from gs_semantic_msgs.srv import ListObjects
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from gs_semantic_node.ros.player import BagPlayer
    from gs_semantic_node.sim.generate import SimConfig, generate

    sim = generate(SimConfig(seed=CHANGE_SEED, frames=24, width=320, height=240, changes="removed"), tmp_path / "sim")
    gone = load_gt(sim)["changes"][0]
    proc = launch(sim, tmp_path)
    rclpy.init()
    n = rclpy.create_node("test_changes")
    try:
        got = []
        qos = QoSProfile(depth=50, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        n.create_subscription(ObjectChange, "/gs_semantic/changes", got.append, qos)
        lst = n.create_client(ListObjects, "/gs_semantic/list_objects")
        assert lst.wait_for_service(timeout_sec=90), (tmp_path / "node.log").read_text()
        player = BagPlayer(sim / "bag", rate=1.0)
        player.play()
        t_end = time.monotonic() + 300
        while time.monotonic() < t_end and not any(m.kind == ObjectChange.REMOVED for m in got):
            assert proc.poll() is None, (tmp_path / "node.log").read_text()[-3000:]
            rclpy.spin_once(n, timeout_sec=0.5)
        removed = [m for m in got if m.kind == ObjectChange.REMOVED]
        assert removed, ([(m.kind, m.label) for m in got], (tmp_path / "node.log").read_text()[-3000:])
        m = removed[0]
        assert m.header.frame_id == "map" and m.has_old_box and not m.has_new_box
        old = np.array([m.old_box_center.position.x, m.old_box_center.position.y, m.old_box_center.position.z])
        assert np.linalg.norm(old - np.array(gone["old_obb"]["center"])) < 0.05  # where the taken object stood
        ids = [o.id for o in call(n, lst, ListObjects.Request()).objects]
        assert m.id not in ids
        player.destroy_node()
    finally:
        n.destroy_node()
        rclpy.try_shutdown()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
