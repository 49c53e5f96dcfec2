"""DDS clients of the service load benchmark (`gs-semantic bench load`, eval/load.py): `threads`
clients issue queries back to back against a running node while a bag replays into it, with the
node's /diagnostics sampled alongside (was the mapper really at work?)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import rclpy
from gs_semantic_msgs.srv import LoadMap, QueryObjects
from rclpy.executors import SingleThreadedExecutor

from .convert import mapping_diagnostics
from .node import service_qos
from .player import BagPlayer
from .process import NodeProcess


class DiagnosticsMonitor:
    """The node's /diagnostics, sampled in the background: shows whether the mapper was really at
    work while the clients queried (a keyframe on a large CPU map can outlast the whole load)."""

    def __init__(self):
        from diagnostic_msgs.msg import DiagnosticArray

        self.samples: list[tuple[float, dict]] = []
        self.node = rclpy.create_node("load_diagnostics_monitor")
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()

    def _on(self, msg):
        d = mapping_diagnostics(msg)
        if d is not None:
            self.samples.append((time.monotonic(), d))

    def summary(self, t0: float, t1: float) -> dict:
        win = [d for t, d in list(self.samples) if t0 <= t <= t1]
        if not win:
            return {"diagnostics_samples": 0}

        def n(d, k):
            return int(float(d.get(k, 0)))

        return {
            "diagnostics_samples": len(win),
            "mapper_busy_fraction": round(sum(n(d, "processing") for d in win) / len(win), 2),
            "frames_mapped_during_load": n(win[-1], "frames_processed") - n(win[0], "frames_processed"),
            "keyframes_at_end": n(win[-1], "keyframes"),
            "gaussians_at_end": n(win[-1], "gaussians"),
        }

    def stop(self):
        self.ex.shutdown()
        self.node.destroy_node()


def query_under_load(
    node: NodeProcess,
    bag: Path,
    texts: list[str],
    threads: int,
    per_thread: int,
    depth: int,
    mapping: bool = True,
    load_name: str = "",
) -> dict:
    """Optionally LoadMap `load_name` first; then the clients query while the bag replays. Returns the
    per-client latencies (ms), failures (and at which call), found counts, wall time and the
    diagnostics summary."""
    rclpy.init()
    found = [0] * threads
    loaded = ""
    lat: list[list[float]] = [[] for _ in range(threads)]
    fails = [0] * threads
    failed_at: list[tuple[int, int]] = []  # (client, call index): tells discovery losses from load
    try:
        probe = rclpy.create_node("load_probe")
        cli = probe.create_client(QueryObjects, "/gs_semantic/query_objects")
        node.wait_for_service(cli, 120)
        if load_name:
            lm = probe.create_client(LoadMap, "/gs_semantic/load_map")
            node.wait_for_service(lm, 30)
            fut = lm.call_async(LoadMap.Request(path=load_name))
            node.wait_until(fut.done, 600, lambda: rclpy.spin_until_future_complete(probe, fut, timeout_sec=0.5))
            if not fut.done() or not fut.result().success:
                raise RuntimeError(f"LoadMap of the grown map failed: {fut.result() and fut.result().message}")
            loaded = fut.result().message
            print(f"[load] node: {loaded}", flush=True)
        probe.destroy_node()
        monitor = DiagnosticsMonitor()
        player = BagPlayer(bag, 1.0)
        replay = threading.Thread(target=player.play if mapping else (lambda: None), daemon=True)
        replay.start()

        def client(i: int):
            n = rclpy.create_node(f"load_client_{i}")
            c = n.create_client(QueryObjects, "/gs_semantic/query_objects", qos_profile=service_qos(depth))
            c.wait_for_service(timeout_sec=30)
            time.sleep(1.0)  # let the response path match too (a first response can be lost otherwise)
            ex = SingleThreadedExecutor()
            ex.add_node(n)
            for k in range(per_thread):
                t = time.perf_counter()
                text = texts[(k * threads + i) % len(texts)]
                fut = c.call_async(QueryObjects.Request(instruction=text, max_results=3))
                ex.spin_until_future_complete(fut, timeout_sec=10.0)
                if not fut.done() or fut.result() is None:
                    fails[i] += 1
                    failed_at.append((i, k))
                    continue
                lat[i].append(1e3 * (time.perf_counter() - t))
                found[i] += bool(fut.result().found)
            ex.shutdown()
            n.destroy_node()

        t0 = time.monotonic()
        ts = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            while t.is_alive():
                node.check()
                t.join(timeout=0.5)
        wall = time.monotonic() - t0
        busy = monitor.summary(t0, t0 + wall)
        replay.join(timeout=60)
        player.destroy_node()
        monitor.stop()
    finally:
        rclpy.try_shutdown()
        node.stop()
    return {
        "lat": lat,
        "fails": fails,
        "failed_at": failed_at,
        "found": found,
        "wall": wall,
        "busy": busy,
        "loaded": loaded,
    }
