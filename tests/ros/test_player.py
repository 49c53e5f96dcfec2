"""The bag player delivers every frame to a live subscriber at 5x real time (loopback DDS)."""

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.slow


def test_player_delivers_every_frame_at_5x(small_sim):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from gs_semantic_node.ros.player import BagPlayer

    rclpy.init()
    try:
        sub = rclpy.create_node("player_probe")
        got = []
        qos = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        sub.create_subscription(Image, "/camera/color/image_raw", lambda m: got.append(m.header.stamp.sec), qos)
        ex = SingleThreadedExecutor()
        ex.add_node(sub)
        stop = threading.Event()
        spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)])
        spin.start()
        player = BagPlayer(small_sim / "bag", rate=5.0)
        t = time.monotonic()
        sent = player.play()
        wall = time.monotonic() - t
        t_end = time.monotonic() + 5
        while len(got) < 12 and time.monotonic() < t_end:
            time.sleep(0.05)
        stop.set()
        spin.join()
        assert sent == 60 and len(got) == 12
        assert wall < 12.0  # the bag spans ~13 s of camera time: 5x is ~2.5 s plus discovery
        player.destroy_node()
        sub.destroy_node()
    finally:
        rclpy.try_shutdown()
