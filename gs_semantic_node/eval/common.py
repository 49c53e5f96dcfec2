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


def scene(seed: int, frames: int, root: Path) -> Path:
    """A simulator scene rendered once into `root` (re-rendered when cached by an older simulator)."""
    d = root / f"sim_{seed}_{frames}"
    if not (d / "gt.json").exists() or "axisymmetric" not in (d / "gt.json").read_text():
        generate(SimConfig(seed=seed, frames=frames), d, progress=False)
    return d


def scenes(a, out: Path) -> list[Path]:
    """--sim-dirs (any bag folders) or the --seeds scenes rendered into `out`."""
    if a.sim_dirs:  # pre-rendered scenes or recordings: a GPU box need not have MuJoCo
        return [Path(d) for d in a.sim_dirs.split(",") if d]
    return [scene(int(s), a.frames, out) for s in a.seeds.split(",") if s]


def write_rows(out: Path, name: str, rows: list[dict], cols: list[str]) -> int:
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print(table(rows, cols))
    return 0
