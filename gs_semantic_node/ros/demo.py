"""`gs-semantic demo`: a simulator bag -> the real node over loopback DDS -> "grab the mug".

Starts the node as its own process with the demo params file, replays the first half of the bag
into it, waits until it has mapped every frame, asks QueryObjects a few instructions (one for an
absent object) and saves the map through SaveMap. The bag goes on with the mug moved elsewhere on
the table: the rest is replayed, the node's ~/changes are collected, "grab the mug" is asked again
and the map saved again. A report with before / after pictures + result.json is written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from gs_semantic_msgs.msg import ObjectChange
from gs_semantic_msgs.srv import QueryObjects, SaveMap
from rclpy.node import Node
from tqdm import tqdm

from ..types import OrientedBox
from .convert import mapping_diagnostics
from .process import NodeProcess, ros_env, use_ros_env

INSTRUCTIONS = ["grab the mug", "pick up the bowl", "where is the apple?", "bring me the laptop"]


class DemoClient(Node):
    def __init__(self, node_name: str = "/gs_semantic"):
        super().__init__("gs_semantic_demo_client")
        self.query_cli = self.create_client(QueryObjects, f"{node_name}/query_objects")
        self.save_cli = self.create_client(SaveMap, f"{node_name}/save_map")
        self.diag: dict = {}
        self.changes: list = []
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, 10)
        from .node import CHANGES_HISTORY, latched_history

        self.create_subscription(
            ObjectChange, f"{node_name}/changes", self.changes.append, latched_history(CHANGES_HISTORY)
        )

    def on_diag(self, msg: DiagnosticArray):
        d = mapping_diagnostics(msg)
        if d is not None:
            self.diag = d

    def call(self, cli, req, timeout: float = 30.0, node: NodeProcess | None = None):
        fut = cli.call_async(req)
        t_end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < t_end:
            if node is not None:
                node.check()
            rclpy.spin_until_future_complete(self, fut, timeout_sec=0.5)
        if not fut.done():
            raise TimeoutError(f"service {cli.srv_name} did not answer in {timeout}s")
        return fut.result()

    def idle(self, n_frames: int, bar=None) -> bool:
        """The node has taken `n_frames` (mapped or skipped), mapped all it accepted and published it."""
        d = self.diag
        if bar is not None and d and int(d.get("frames_processed", 0)) != bar.n:
            bar.update(int(d.get("frames_processed", 0)) - bar.n)
        done = int(d.get("frames_processed", 0)) + sum(int(v) for k, v in d.items() if k.startswith("skipped_"))
        return (
            bool(d)
            and done >= n_frames
            and d.get("queue") == "0"
            and d.get("processing") == "0"
            and int(d.get("frames_processed", 0)) >= int(d.get("frames_accepted", 0))
            and d.get("published_version") == d.get("version")
        )


def box_from_msg(o) -> OrientedBox:
    from scipy.spatial.transform import Rotation

    q = o.obb_center.orientation
    return OrientedBox(
        np.array([o.obb_center.position.x, o.obb_center.position.y, o.obb_center.position.z]),
        Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(),
        np.array([o.obb_size.x, o.obb_size.y, o.obb_size.z]),
    )


def ask(client: DemoClient, node: NodeProcess, instructions: list[str], gt_objects: list[dict]) -> list[dict]:
    """QueryObjects for each instruction, scored against the GT objects of the scene as it is."""
    from ..semantics.boxes import box_iou

    answers = []
    for text in instructions:
        r = client.call(client.query_cli, QueryObjects.Request(instruction=text, max_results=3), node=node)
        target = r.target_phrase
        gts = [o for o in gt_objects if o["class"] in target or target in o["class"]]
        iou = 0.0
        if r.found and gts:
            b = box_from_msg(r.objects[0])
            iou = max(box_iou(b, OrientedBox.from_dict(g["obb"])) for g in gts)
        answers.append(
            {
                "query": text,
                "target": target,
                "found": bool(r.found),
                "id": int(r.objects[0].id) if r.found else -1,
                "label": r.objects[0].label if r.found else "",
                "confidence": float(r.scores[0]) if r.found else 0.0,
                "box_iou": round(iou, 3),
                "present_in_gt": bool(gts),
                "message": r.message,
                "box": box_from_msg(r.objects[0]).to_dict() if r.found else None,
                "boxes": [box_from_msg(o).to_dict() for o in r.objects],
            }
        )
        print(
            f"[demo] {text!r:28} -> found={r.found} {answers[-1]['label']!r} "
            f"conf={answers[-1]['confidence']:.2f} box IoU vs GT={iou:.2f}  ({r.message})"
        )
    return answers


def after_the_change(client, node, player, gt: dict, change: dict, before: dict, frames: int) -> dict:
    """The rest of the bag (the mug moved): replayed, mapped, asked again, the map saved as map_after."""
    from ..semantics.boxes import box_iou

    print("[demo] the mug is moved to another place on the table; the bag goes on")
    with tqdm(desc="replay (messages)", mininterval=2.0) as bar:
        player.play(progress=lambda _: bar.update(1), stop=lambda: node.proc.poll() is not None, since=change["stamp"])
    with tqdm(total=frames, desc="mapping (frames)", mininterval=2.0) as bar:
        if not node.wait_until(
            lambda: client.idle(frames, bar), 600.0, lambda: rclpy.spin_once(client, timeout_sec=0.5)
        ):
            raise RuntimeError(f"node did not finish mapping in time; the end of its log:\n{node.tail()}")
    answers = ask(client, node, ["grab the mug"], gt["objects"])
    saved = client.call(client.save_cli, SaveMap.Request(path="map_after"), timeout=60, node=node)
    a = answers[0]
    old = OrientedBox.from_dict(change["old_obb"])
    events = [{"kind": m.kind, "id": int(m.id), "label": m.label} for m in client.changes]
    for e in events:
        print(f"[demo] ~/changes: {e['kind']} #{e['id']} {e['label']}")
    return {
        "answers": answers,
        "at_new_place": bool(a["found"] and a["box_iou"] >= 0.5),
        "box_iou_new": a["box_iou"],
        "ghost": any(box_iou(OrientedBox.from_dict(b), old) >= 0.25 for b in a["boxes"]),
        "id_kept": bool(a["found"] and a["id"] == before["id"]),
        "changes": events,
        "map_saved": bool(saved.success),
    }


def run_demo(
    out: Path,
    seed: int = 7,
    frames: int = 30,
    params: str = "",
    rate: float = 1.0,
    sam_checkpoint: str = "",
    clip_checkpoint: str = "",
) -> dict:
    from ..sim.generate import SimConfig, generate, load_gt
    from .player import BagPlayer

    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    sim_dir = out / f"sim_seed{seed}_{frames}_mug_moved"
    if not (sim_dir / "gt.json").exists():
        print(f"[demo] rendering simulator tabletop seed {seed} ({frames} frames, then {frames} with the mug moved)")
        generate(SimConfig(seed=seed, frames=2 * frames, changes="moved", change_classes="mug"), sim_dir)
    gt = load_gt(sim_dir)
    change = next((c for c in gt.get("changes", []) if c["class"] == "mug"), None)
    until = change["stamp"] if change else float("inf")
    real = bool(sam_checkpoint or clip_checkpoint)
    extra = [f"perception.gt_path:={sim_dir / 'gt.json'}", f"node.map_dir:={out.resolve()}", "node.map_name:=map"]
    if sam_checkpoint:
        extra += [
            "perception.masks:=sam",
            f"perception.sam_checkpoint:={sam_checkpoint}",
            "perception.sam_model_type:=vit_h",
        ]
    if clip_checkpoint:
        extra += ["perception.embedder:=clip", f"perception.clip_pretrained:={clip_checkpoint}"]
    perception = (
        "real SAM/CLIP checkpoints"
        if real
        else "oracle perception (simulator GT masks degraded like SAM, realistic preset) + MiniLM text proxy"
    )
    print(f"[demo] perception: {perception}")
    env = ros_env()
    use_ros_env(env)
    node = NodeProcess(params, extra, out / "node.log", env)
    rclpy.init()
    client = DemoClient()
    player = BagPlayer(sim_dir / "bag", rate)
    result: dict = {"perception": perception, "frames": frames, "ok": False}
    try:
        node.wait_for_service(client.query_cli, timeout=120.0)
        print(f"[demo] node up ({time.monotonic() - t0:.1f}s); replaying the bag over loopback DDS at {rate}x")
        with tqdm(total=frames * 5, desc="replay (messages)", mininterval=2.0) as bar:
            player.play(progress=lambda _: bar.update(1), stop=lambda: node.proc.poll() is not None, until=until)
        node.check()
        with tqdm(total=frames, desc="mapping (frames)", mininterval=2.0) as bar:
            idle = node.wait_until(
                lambda: client.idle(frames, bar), 600.0, lambda: rclpy.spin_once(client, timeout_sec=0.5)
            )
        if not idle:
            raise RuntimeError(f"node did not finish mapping in time; the end of its log:\n{node.tail()}")
        gt_before = gt.get("objects_before", gt["objects"])
        answers = ask(client, node, INSTRUCTIONS, gt_before)
        saved = client.call(client.save_cli, SaveMap.Request(path="map"), timeout=60, node=node)
        d = client.diag
        mug = answers[0]
        result.update(
            {
                "query": mug["query"],
                "found": mug["found"],
                "label": mug["label"],
                "confidence": mug["confidence"],
                "box_iou": mug["box_iou"],
                "gaussians": int(d.get("gaussians", 0)),
                "objects": int(d.get("objects", 0)),
                "keyframes": int(d.get("keyframes", 0)),
                "answers": answers,
                "map_saved": bool(saved.success),
                "absent_abstained": all(not a["found"] for a in answers if not a["present_in_gt"]),
            }
        )
        result["ok"] = bool(mug["found"] and mug["box_iou"] >= 0.5 and result["absent_abstained"])
        if change is not None:
            result["after"] = after_the_change(client, node, player, gt, change, mug, 2 * frames)
            result["ok"] = bool(result["ok"] and result["after"]["at_new_place"] and not result["after"]["ghost"])
    finally:
        client.destroy_node()
        player.destroy_node()
        rclpy.try_shutdown()
        result["node_shutdown_s"] = round(node.stop(), 2)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    if result.get("map_saved"):
        from .report import write_report

        write_report(out, sim_dir, result)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result
