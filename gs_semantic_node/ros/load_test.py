"""Service load test: N client threads hammer QueryObjects while a bag is being mapped.

Starts the node (own process, loopback DDS), replays a simulator bag into it in a thread, and
runs `threads` clients that each issue `per_thread` queries back to back. Reports failures and
round-trip latency percentiles (JSON + table)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor

from gs_semantic_msgs.srv import QueryObjects

from ..config import NodeConfig
from .demo import ros_env, start_node, stop_node
from .node import service_qos
from .player import BagPlayer

QUERIES = ["grab the mug", "pick up the bowl", "where is the apple?", "bring me the laptop", "", "the can next to the mug"]


def run_load(out: Path, sim_dir: Path, params: str, threads: int = 4, per_thread: int = 2500,
             depth: int = NodeConfig.service_depth) -> dict:
    import os
    out.mkdir(parents=True, exist_ok=True)
    env = ros_env()
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    proc = start_node(params, [f"perception.gt_path:={sim_dir / 'gt.json'}", f"node.service_depth:={depth}"], env,
                      out / "load_node.log")
    rclpy.init()
    lat: list[list[float]] = [[] for _ in range(threads)]
    fails = [0] * threads
    failed_at: list[tuple[int, int]] = []         # (client, call index): tells discovery losses from load
    try:
        probe = rclpy.create_node("load_probe")
        cli = probe.create_client(QueryObjects, "/gs_semantic/query_objects")
        if not cli.wait_for_service(timeout_sec=120):
            raise RuntimeError("node did not come up")
        probe.destroy_node()
        player = BagPlayer(sim_dir / "bag", 1.0)
        mapping = threading.Thread(target=player.play, daemon=True)
        mapping.start()

        def client(i: int):
            node = rclpy.create_node(f"load_client_{i}")
            c = node.create_client(QueryObjects, "/gs_semantic/query_objects", qos_profile=service_qos(depth))
            c.wait_for_service(timeout_sec=30)
            time.sleep(1.0)     # let the response path match too (a first response can be lost otherwise)
            ex = SingleThreadedExecutor()
            ex.add_node(node)
            for k in range(per_thread):
                t = time.perf_counter()
                fut = c.call_async(QueryObjects.Request(instruction=QUERIES[(k + i) % len(QUERIES)], max_results=3))
                ex.spin_until_future_complete(fut, timeout_sec=10.0)
                if not fut.done() or fut.result() is None:
                    fails[i] += 1
                    failed_at.append((i, k))
                    continue
                lat[i].append(1e3 * (time.perf_counter() - t))
            ex.shutdown()
            node.destroy_node()

        t0 = time.monotonic()
        ts = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.monotonic() - t0
        mapping.join(timeout=60)
        player.destroy_node()
    finally:
        rclpy.try_shutdown()
        stop_node(proc)
    all_lat = np.concatenate([np.asarray(x) for x in lat]) if any(lat) else np.zeros(1)
    res = {"threads": threads, "service_depth": depth, "queries": threads * per_thread, "failures": int(sum(fails)), "failed_at": failed_at, "wall_s": round(wall, 1),
           "qps": round(threads * per_thread / wall, 1), "rtt_ms_p50": float(np.percentile(all_lat, 50)),
           "rtt_ms_p90": float(np.percentile(all_lat, 90)), "rtt_ms_p99": float(np.percentile(all_lat, 99)),
           "rtt_ms_max": float(all_lat.max()), "while": "bag being mapped by the node (CPU reference rasterizer)"}
    (out / "load.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res
