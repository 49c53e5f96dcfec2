"""`gs-semantic bench load`: QueryObjects round trips over loopback DDS while the node maps a bag.

Starts the node as its own process (ros/process.py), replays a simulator bag into it, and runs
`threads` clients that each issue `per_thread` queries back to back (ros/load_clients.py). Reports
failures and round-trip latency percentiles (JSON + table).

At scale (`map_gaussians`): the scene is first mapped offline with the node's own config, that map
is grown to the requested size (each Gaussian copied with its labels, so the objects stay the same
objects, only denser), and the node loads it through LoadMap before the bag replays into it.
`text_encoder` picks the node's text side: the MiniLM proxy, or an open_clip model with random
weights (timing only), and `fresh_text` makes every call name a target phrase the node has not seen
(text caches are keyed by the target), so each one is encoded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import Config, NodeConfig
from .common import scene
from .fixtures import grow_map, instructions, random_clip_checkpoint

QUERIES = [
    "grab the mug",
    "pick up the bowl",
    "where is the apple?",
    "bring me the laptop",
    "",
    "the can next to the mug",
]


def _node_overrides(text_encoder: str, out: Path) -> dict:
    if text_encoder == "text_proxy":
        return {}
    if text_encoder == "tiny":
        raise ValueError(
            "bench load runs the node in its own process: give a named open_clip model "
            "(e.g. ViT-B-16) or text_proxy, not 'tiny'"
        )
    return {
        "perception.embedder": "clip",
        "perception.clip_model": text_encoder,
        "perception.clip_pretrained": str(random_clip_checkpoint(text_encoder, out)),
    }


def _scaled_map(out: Path, sim_dir: Path, params: str, overrides: dict, n: int) -> Path:
    from ..offline import offline_pipeline

    cfg = Config.from_yaml(params)
    for k, v in overrides.items():
        cfg.set(k, v)
    print(f"[load] mapping {sim_dir.name} offline for the base map", flush=True)
    base = offline_pipeline(sim_dir, cfg)[0].save(out / "load_base_map")
    dst = out / f"load_map_{n}"
    grow_map(base, dst, n)
    return dst


def run_load(
    out: Path,
    sim_dir: Path,
    params: str,
    threads: int = 4,
    per_thread: int = 2500,
    depth: int = NodeConfig.service_depth,
    map_gaussians: int = 0,
    text_encoder: str = "text_proxy",
    fresh_text: bool = False,
    mapping: bool = True,
) -> dict:
    from ..ros.load_clients import query_under_load
    from ..ros.process import NodeProcess, ros_env, use_ros_env

    out.mkdir(parents=True, exist_ok=True)
    overrides = _node_overrides(text_encoder, out)
    if map_gaussians:
        overrides["mapper.max_gaussians"] = map_gaussians + map_gaussians // 5  # room to grow, no cap pruning
    grown = _scaled_map(out, sim_dir, params, overrides, map_gaussians) if map_gaussians else None
    texts = instructions(threads * per_thread) if fresh_text else QUERIES
    env = ros_env()
    use_ros_env(env)
    extra = [
        f"perception.gt_path:={sim_dir / 'gt.json'}",
        f"node.service_depth:={depth}",
        f"node.map_dir:={out.resolve()}",
        *(f"{k}:={v}" for k, v in overrides.items()),
    ]
    node = NodeProcess(params, extra, out / "load_node.log", env)
    try:
        r = query_under_load(
            node, sim_dir / "bag", texts, threads, per_thread, depth, mapping, grown.name if grown else ""
        )
    finally:
        node.stop()
    lat, wall = r["lat"], r["wall"]
    all_lat = np.concatenate([np.asarray(x) for x in lat]) if any(lat) else np.zeros(1)
    res = {
        "threads": threads,
        "service_depth": depth,
        "queries": threads * per_thread,
        "failures": int(sum(r["fails"])),
        "failed_at": r["failed_at"],
        "wall_s": round(wall, 1),
        "qps": round(threads * per_thread / wall, 1),
        "rtt_ms_p50": float(np.percentile(all_lat, 50)),
        "rtt_ms_p90": float(np.percentile(all_lat, 90)),
        "rtt_ms_p99": float(np.percentile(all_lat, 99)),
        "rtt_ms_max": float(all_lat.max()),
        "found_rate": round(sum(r["found"]) / max(1, threads * per_thread), 3),
        "map_gaussians": map_gaussians or "as mapped",
        "loaded": r["loaded"],
        "text_encoder": text_encoder,
        "distinct_instructions": len(texts) if fresh_text else len(QUERIES),
        "while": "bag being mapped by the node" if mapping else "node idle (no bag replayed)",
        **r["busy"],
    }
    (out / "load.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    d = scene(int(a.seeds.split(",")[0]), a.frames, out)
    res = run_load(
        out,
        d,
        str(Path(__file__).resolve().parents[2] / "config" / "tabletop_demo.yaml"),
        a.threads,
        a.per_thread,
        a.service_depth,
        a.map_gaussians,
        a.clip_model or "text_proxy",
        a.fresh_text,
        not a.no_replay,
    )
    return 0 if res["failures"] == 0 else 1
