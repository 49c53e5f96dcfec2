"""Service load test: N client threads hammer QueryObjects while a bag is being mapped.

Starts the node (own process, loopback DDS), replays a simulator bag into it in a thread, and
runs `threads` clients that each issue `per_thread` queries back to back. Reports failures and
round-trip latency percentiles (JSON + table).

At scale (`map_gaussians`): the scene is first mapped offline with the node's own config, that
map is grown to the requested size (each Gaussian copied with its labels, so the objects stay the
same objects, only denser), and the node loads it through LoadMap before the bag replays into it:
queries then run against a map of that size while the mapper works on it. `text_encoder` picks
the node's text side: the MiniLM proxy, or an open_clip model with random weights (timing only),
and `fresh_text` makes every call name a target phrase the node has not seen (text caches are
keyed by the target), so each one is encoded.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor

from gs_semantic_msgs.srv import LoadMap, QueryObjects

from ..config import Config, NodeConfig
from .convert import mapping_diagnostics
from .node import service_qos
from .process import NodeProcess, ros_env, use_ros_env
from .player import BagPlayer

QUERIES = ["grab the mug", "pick up the bowl", "where is the apple?", "bring me the laptop", "", "the can next to the mug"]


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
        n = lambda d, k: int(float(d.get(k, 0)))  # noqa: E731
        return {"diagnostics_samples": len(win),
                "mapper_busy_fraction": round(sum(n(d, "processing") for d in win) / len(win), 2),
                "frames_mapped_during_load": n(win[-1], "frames_processed") - n(win[0], "frames_processed"),
                "keyframes_at_end": n(win[-1], "keyframes"), "gaussians_at_end": n(win[-1], "gaussians")}

    def stop(self):
        self.ex.shutdown()
        self.node.destroy_node()


def _node_overrides(text_encoder: str, out: Path) -> dict:
    from ..bench_device import random_clip_checkpoint
    if text_encoder == "text_proxy":
        return {}
    if text_encoder == "tiny":
        raise ValueError("bench load runs the node in its own process: give a named open_clip model "
                         "(e.g. ViT-B-16) or text_proxy, not 'tiny'")
    return {"perception.embedder": "clip", "perception.clip_model": text_encoder,
            "perception.clip_pretrained": str(random_clip_checkpoint(text_encoder, out))}


def _scaled_map(out: Path, sim_dir: Path, params: str, overrides: dict, n: int) -> Path:
    from ..bench_device import grow_map
    from ..offline import offline_pipeline
    cfg = Config.from_yaml(params)
    for k, v in overrides.items():
        cfg.set(k, v)
    print(f"[load] mapping {sim_dir.name} offline for the base map", flush=True)
    base = offline_pipeline(sim_dir, cfg)[0].save(out / "load_base_map")
    dst = out / f"load_map_{n}"
    grow_map(base, dst, n)
    return dst


def run_load(out: Path, sim_dir: Path, params: str, threads: int = 4, per_thread: int = 2500,
             depth: int = NodeConfig.service_depth, map_gaussians: int = 0, text_encoder: str = "text_proxy",
             fresh_text: bool = False, mapping: bool = True) -> dict:
    from ..bench_device import instructions
    out.mkdir(parents=True, exist_ok=True)
    overrides = _node_overrides(text_encoder, out)
    if map_gaussians:
        overrides["mapper.max_gaussians"] = map_gaussians + map_gaussians // 5   # room to grow, no cap pruning
    grown = _scaled_map(out, sim_dir, params, overrides, map_gaussians) if map_gaussians else None
    texts = instructions(threads * per_thread) if fresh_text else QUERIES
    env = ros_env()
    use_ros_env(env)
    extra = [f"perception.gt_path:={sim_dir / 'gt.json'}", f"node.service_depth:={depth}",
             f"node.map_dir:={out.resolve()}", *(f"{k}:={v}" for k, v in overrides.items())]
    node = NodeProcess(params, extra, out / "load_node.log", env)
    rclpy.init()
    found = [0] * threads
    loaded = ""
    lat: list[list[float]] = [[] for _ in range(threads)]
    fails = [0] * threads
    failed_at: list[tuple[int, int]] = []         # (client, call index): tells discovery losses from load
    try:
        probe = rclpy.create_node("load_probe")
        cli = probe.create_client(QueryObjects, "/gs_semantic/query_objects")
        node.wait_for_service(cli, 120)
        if grown is not None:
            lm = probe.create_client(LoadMap, "/gs_semantic/load_map")
            node.wait_for_service(lm, 30)
            fut = lm.call_async(LoadMap.Request(path=grown.name))
            node.wait_until(fut.done, 600, lambda: rclpy.spin_until_future_complete(probe, fut, timeout_sec=0.5))
            if not fut.done() or not fut.result().success:
                raise RuntimeError(f"LoadMap of the grown map failed: {fut.result() and fut.result().message}")
            loaded = fut.result().message
            print(f"[load] node: {loaded}", flush=True)
        probe.destroy_node()
        monitor = DiagnosticsMonitor()
        player = BagPlayer(sim_dir / "bag", 1.0)
        replay = threading.Thread(target=player.play if mapping else (lambda: None), daemon=True)
        replay.start()

        def client(i: int):
            node = rclpy.create_node(f"load_client_{i}")
            c = node.create_client(QueryObjects, "/gs_semantic/query_objects", qos_profile=service_qos(depth))
            c.wait_for_service(timeout_sec=30)
            time.sleep(1.0)     # let the response path match too (a first response can be lost otherwise)
            ex = SingleThreadedExecutor()
            ex.add_node(node)
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
            node.destroy_node()

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
    all_lat = np.concatenate([np.asarray(x) for x in lat]) if any(lat) else np.zeros(1)
    res = {"threads": threads, "service_depth": depth, "queries": threads * per_thread, "failures": int(sum(fails)), "failed_at": failed_at, "wall_s": round(wall, 1),
           "qps": round(threads * per_thread / wall, 1), "rtt_ms_p50": float(np.percentile(all_lat, 50)),
           "rtt_ms_p90": float(np.percentile(all_lat, 90)), "rtt_ms_p99": float(np.percentile(all_lat, 99)),
           "rtt_ms_max": float(all_lat.max()), "found_rate": round(sum(found) / max(1, threads * per_thread), 3),
           "map_gaussians": map_gaussians or "as mapped", "loaded": loaded, "text_encoder": text_encoder,
           "distinct_instructions": len(texts) if fresh_text else len(QUERIES),
           "while": "bag being mapped by the node" if mapping else "node idle (no bag replayed)", **busy}
    (out / "load.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res
