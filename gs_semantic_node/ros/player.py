"""Replay a ROS 2 bag (rosbags reader) into live topics over loopback DDS at a chosen rate.

The node's inputs are found in the bag by the node's own topic parameters (io.bags.input_connections:
colour raw or `<topic>/compressed`, any pose type); messages are published as their recorded CDR
bytes, so nothing is converted on the way."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader

from ..config import NodeConfig
from ..io.bags import bag_path, input_connections


def _ros_type(msgtype: str):
    pkg, _, name = msgtype.split("/")
    mod = __import__(f"{pkg}.msg", fromlist=[name])
    return getattr(mod, name)


class BagPlayer(Node):
    def __init__(self, bag: str | Path, rate: float = 1.0, topics: NodeConfig | None = None):
        super().__init__("gs_semantic_player")
        self.bag, self.rate = bag_path(bag), rate
        self.cfg = topics or NodeConfig()
        self.pubs = {}
        # reliable + deep history: a replay should lose nothing (subscribers pick their own QoS)
        self.qos = QoSProfile(depth=200, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)

    def play(self, progress=None, stop=lambda: False, since: float = -np.inf, until: float = np.inf) -> int:
        """Publish every message (recorded at `since` <= t < `until` s, when given) at rate x the
        recorded timing; returns the number published."""
        n = 0
        with Reader(self.bag) as reader:
            conns = [c for cs in input_connections(reader.connections, self.cfg, with_gt=False).values() for c in cs]
            for c in conns:
                if c.topic not in self.pubs:
                    self.pubs[c.topic] = self.create_publisher(_ros_type(c.msgtype), c.topic, self.qos)
            time.sleep(0.5)  # let discovery finish before the first frame
            t_bag0 = t_wall0 = None
            lo, hi = int(max(since, 0.0) * 1e9), int(min(until, 1e10) * 1e9)
            for conn, t_ns, raw in reader.messages(connections=conns, start=lo, stop=hi):
                if stop():
                    break
                if t_bag0 is None:
                    t_bag0, t_wall0 = t_ns, time.monotonic()
                wait = (t_ns - t_bag0) * 1e-9 / max(self.rate, 1e-6) - (time.monotonic() - t_wall0)
                if wait > 0:
                    time.sleep(wait)
                self.pubs[conn.topic].publish(bytes(raw))
                n += 1
                if progress is not None:
                    progress(conn.topic)
        return n


def play_bag(bag: str | Path, rate: float = 1.0, progress=None, topics: NodeConfig | None = None) -> int:
    own = not rclpy.ok()
    if own:
        rclpy.init()
    node = BagPlayer(bag, rate, topics)
    try:
        return node.play(progress)
    finally:
        node.destroy_node()
        if own:
            rclpy.try_shutdown()
