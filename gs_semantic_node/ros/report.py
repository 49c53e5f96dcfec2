"""Demo report: the saved map rendered at a recorded view (RGB and object ids), the answered
boxes drawn over that camera image, and a table of answers vs ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..io.bags import read_frames
from ..io.mapfile import load_map
from ..mapping.mapper import raster_K
from ..mapping.rasterizer import TorchRasterizer
from ..types import OrientedBox

EDGES = [(0, 1), (0, 2), (1, 3), (2, 3), (4, 5), (4, 6), (5, 7), (6, 7), (0, 4), (1, 5), (2, 6), (3, 7)]


def _render(arrays: dict, colors: np.ndarray, frame, scale: int = 4):
    cam = frame.camera.scaled(frame.camera.width // scale, frame.camera.height // scale)

    def t(a):
        return torch.as_tensor(a, dtype=torch.float32)

    with torch.no_grad():
        out = TorchRasterizer().render(
            t(arrays["means"]),
            t(arrays["quats"]),
            t(arrays["scales"]),
            t(arrays["opacities"]),
            t(colors),
            np.linalg.inv(frame.T_world_cam),
            raster_K(cam),
            cam.width,
            cam.height,
        )
    return (out.colors.clamp(0, 1).numpy() * 255).astype(np.uint8)


def id_colors(ids: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(3)
    lut = rng.uniform(0.15, 1.0, (int(ids.max(initial=0)) + 2, 3))
    lut[0] = 0.35  # background grey
    return lut[np.maximum(ids, 0)]


def pictures(out: Path, map_name: str, frame, answers: list[dict], prefix: str = "") -> None:
    """The saved map rendered at a recorded view (RGB, object ids) and the answered boxes drawn over
    that view's camera image: <prefix>map_rgb.png, <prefix>map_objects.png, <prefix>answers.png."""
    arrays, _, _ = load_map(out / map_name)
    size = (frame.camera.width, frame.camera.height)
    Image.fromarray(_render(arrays, arrays["rgb"], frame)).resize(size).save(out / f"{prefix}map_rgb.png")
    Image.fromarray(_render(arrays, id_colors(arrays["object_id"]), frame)).resize(size, Image.NEAREST).save(
        out / f"{prefix}map_objects.png"
    )
    img = Image.fromarray(frame.rgb.copy())
    draw = ImageDraw.Draw(img)
    V = np.linalg.inv(frame.T_world_cam)
    cam = frame.camera
    for a in answers:
        if not a["found"] or not a["box"]:
            continue
        c = OrientedBox.from_dict(a["box"]).corners() @ V[:3, :3].T + V[:3, 3]
        if (c[:, 2] <= 0.05).any():
            continue
        uv = np.stack([cam.fx * c[:, 0] / c[:, 2] + cam.cx, cam.fy * c[:, 1] / c[:, 2] + cam.cy], 1)
        for i, j in EDGES:
            draw.line([tuple(uv[i]), tuple(uv[j])], fill=(0, 255, 0), width=2)
        draw.text(tuple(uv[:, :].min(0) - [0, 12]), f"{a['label']} ({a['confidence']:.2f})", fill=(255, 255, 0))
    img.save(out / f"{prefix}answers.png")


def write_report(out: Path, sim_dir: Path, result: dict):
    frames = list(read_frames(sim_dir / "bag"))
    n = result["frames"]  # frames before the change (the whole bag when nothing changes)
    pictures(out, "map", frames[n // 3], result.get("answers", []))
    rows = "\n".join(
        f"| {a['query']} | {a['found']} | {a['label']} | {a['confidence']:.2f} | {a['box_iou']:.2f} | "
        f"{'yes' if a['present_in_gt'] else 'no'} |"
        for a in result.get("answers", [])
    )
    after = ""
    if result.get("after", {}).get("map_saved"):
        af = result["after"]
        view = frames[min(len(frames) - 1, n + n // 3)]
        pictures(out, "map", view, [], "before_")
        pictures(out, "map_after", view, af["answers"], "after_")
        a = af["answers"][0]
        events = ", ".join(f"{e['kind']} #{e['id']} {e['label']}" for e in af["changes"]) or "none"
        after = f"""
## The mug moved

The bag goes on with the mug put elsewhere on the table. Changes the node published on `~/changes`:
{events}.

"{a["query"]}" now: found={a["found"]}, {a["label"]!r} #{a["id"]}, box IoU vs its new place {a["box_iou"]:.2f};
at the new place: {af["at_new_place"]}, a ghost at the old place: {af["ghost"]}, id kept: {af["id_kept"]}.

| map before the change | map after | object ids after | answer after, over the camera image |
|---|---|---|---|
| ![](before_map_rgb.png) | ![](after_map_rgb.png) | ![](after_map_objects.png) | ![](after_answers.png) |
"""
    (out / "report.md").write_text(f"""# gs_semantic demo report

Perception: **{result["perception"]}**. {result["frames"]} frames, {result.get("keyframes", "?")} keyframes,
{result.get("gaussians", "?")} Gaussians, {result.get("objects", "?")} objects, {result.get("wall_s", "?")} s wall.

| map rendered (RGB) | object ids | answers over the camera image |
|---|---|---|
| ![](map_rgb.png) | ![](map_objects.png) | ![](answers.png) |

| instruction | found | label | confidence | box IoU vs GT | in scene (GT) |
|---|---|---|---|---|---|
{rows}
{after}""")
