"""Mapping a recorded bag without ROS (`gs-semantic map`, the benchmarks, a notebook): the same
frames the node would assemble from the same messages, through the same pipeline."""

from __future__ import annotations

import collections
from pathlib import Path

from .config import Config


def load_config(
    params: str | Path | None = None, overrides: list[str] | None = None, preset: str | None = None
) -> Config:
    """A params YAML (ROS params layout, over a Config preset when named) plus `stage.field:=value`
    overrides, as `--ros-args -p` takes them."""
    import yaml

    cfg = Config.from_yaml(params, preset)
    for o in overrides or []:
        if ":=" not in o:
            raise ValueError(f"override {o!r} is not stage.field:=value")
        k, v = o.split(":=", 1)
        if k not in cfg.flat():
            raise ValueError(f"unknown parameter {k!r}")
        cfg.set(k, yaml.safe_load(v) if v.strip() else "")
    return cfg


def is_held_out(index: int, every: int) -> bool:
    """The frames benchmarks keep from the mapper (one in `every`, mid-interval) for novel views."""
    return bool(every) and index % every == every // 2


def needs_gt(cfg: Config) -> bool:
    """Oracle perception reads the simulator's instance masks (and the text proxy its descriptions)."""
    p = cfg.perception
    return p.masks == "oracle" or (p.embedder == "text_proxy" and p.masks != "none")


def offline_pipeline(
    bag_dir: str | Path, cfg: Config, progress: bool = True, held_out_every: int = 0, observers: list | None = None
):
    """Map a bag (a folder holding `bag/`, or the bag itself) -> (pipeline, held-out frames, skipped
    inputs by reason). Every `held_out_every`-th frame is kept from the mapper for novel-view scoring."""
    from tqdm import tqdm

    from .io.bags import read_frames
    from .pipeline import SemanticMappingPipeline

    gt_json = Path(bag_dir) / "gt.json"
    if needs_gt(cfg) and not cfg.perception.gt_path:
        if not gt_json.exists():
            raise FileNotFoundError(
                f"{bag_dir} has no simulator gt.json: oracle perception cannot run on it; map it "
                "with real SAM/CLIP checkpoints (perception.masks: sam, embedder: clip) or its "
                "geometry only (-p perception.masks:=none)"
            )
        cfg.perception.gt_path = str(gt_json)
    p = SemanticMappingPipeline(cfg, observers=observers)
    held, skipped = [], collections.Counter()
    frames = read_frames(bag_dir, cfg.node, with_gt=needs_gt(cfg), faults=skipped)
    for f in tqdm(frames, desc="mapping", disable=not progress, unit="frame"):
        if is_held_out(f.index, held_out_every):
            held.append(f)  # never shown to the mapper: for novel-view evaluation
            continue
        p.process(f)
    p.finish()
    return p, held, skipped
