"""What every benchmark shares: timing with the device synchronised, peak memory, device names,
the simulator scene cache, frames of a bag, and printed tables."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..sim.generate import SimConfig, generate


def device_name(dev: torch.device) -> str:
    import platform

    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({platform.processor() or 'x86_64'})"


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, repeats: int = 1, warmup: int = 1) -> tuple[list[float], object]:
    """Milliseconds per call (device synchronised), after `warmup` untimed calls."""
    out = None
    for _ in range(warmup):
        out = fn()
    ts = []
    for _ in range(repeats):
        _sync(dev)
        t = time.perf_counter()
        out = fn()
        _sync(dev)
        ts.append(1e3 * (time.perf_counter() - t))
    return ts, out


def peak_reset(dev):
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gb(dev) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_frames(sim_dir: Path, topics=None) -> list:
    """Frames of a bag folder (or a folder holding `bag/`), topics from a NodeConfig."""
    from ..io.bags import read_frames

    return list(read_frames(sim_dir, topics))


class Rows(list):
    """Rows that are printed (and handed to `report`) as they are measured, so a run cut off by
    a time limit still leaves what it measured."""

    def __init__(self, report, device: str):
        super().__init__()
        self.report, self.device = report, device

    def append(self, row: dict):
        row["device"] = self.device
        super().append(row)
        print(json.dumps(row), flush=True)
        if self.report:
            self.report(list(self))


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return (f"{v:.2f}" if abs(v) >= 0.01 else f"{v:.1e}") if isinstance(v, float) else str(v)

    lines = [" | ".join(cols)] + [" | ".join(fmt(r.get(c, "")) for c in cols) for r in rows]
    return "\n".join(lines)


SCENE_OPTIONS = ("family", "trajectory", "pose_noise_m", "pose_noise_deg", "depth_noise", "n_objects", "changes")


def scene_options(a) -> dict:
    """The simulator options a bench was asked for (`--family`, `--trajectory`, noise, clutter)."""
    return {
        "family": a.family,
        "trajectory": a.trajectory,
        "pose_noise_m": a.pose_noise_m,
        "pose_noise_deg": a.pose_noise_deg,
        "depth_noise": a.depth_noise,
        "n_objects": a.objects or 0,
        "changes": getattr(a, "changes", ""),
    }


def scene_name(seed: int, frames: int, opts: dict | None = None) -> str:
    """The cache folder of a scene: every option that changes what is rendered is in the name."""
    o = {**{k: getattr(SimConfig, k) for k in SCENE_OPTIONS}, **(opts or {})}
    name = f"sim_{o['family']}_{o['trajectory']}_s{seed}_f{frames}"
    if o["pose_noise_m"] or o["pose_noise_deg"]:
        name += f"_pose{o['pose_noise_m']:g}m{o['pose_noise_deg']:g}deg"
    if o["depth_noise"]:
        name += "_depthnoise"
    if o["n_objects"]:
        name += f"_obj{o['n_objects']}"
    if o["changes"]:
        name += f"_{o['changes']}"
    return name


def scene(seed: int, frames: int, root: Path, opts: dict | None = None) -> Path:
    """A simulator scene rendered once into `root`; rendered again when the cached one was made by
    an older simulator or with other options."""
    cfg = SimConfig(seed=seed, frames=frames, **(opts or {}))
    d = root / scene_name(seed, frames, opts)
    gt = d / "gt.json"
    text = gt.read_text() if gt.exists() else ""
    if "axisymmetric" in text:  # written by a simulator that records what it was asked for
        made = json.loads(text).get("config", {})
        if all(made.get(k) == v for k, v in cfg.__dict__.items() if k != "storage"):
            return d
    generate(cfg, d, progress=False)
    return d


def scenes(a, out: Path) -> list[Path]:
    """--sim-dirs (any bag folders) or the --seeds scenes rendered into `out`."""
    if a.sim_dirs:  # pre-rendered scenes or recordings: a GPU box need not have MuJoCo
        return [Path(d) for d in a.sim_dirs.split(",") if d]
    return [scene(int(s), a.frames, out, scene_options(a)) for s in a.seeds.split(",") if s]


def write_rows(out: Path, name: str, rows: list[dict], cols: list[str]) -> int:
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print(table(rows, cols))
    return 0
