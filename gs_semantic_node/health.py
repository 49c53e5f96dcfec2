"""Start-up checks and run-time stage health, without ROS (the node reports both).

`preflight(cfg)` checks, before anything is built, what the configured stages will need (open3d,
gsplat + CUDA, checkpoints, vocabulary, the oracle's ground truth, the map folder) and raises
StartupError with one line naming the first thing missing. `StageHealth` is what keeps a running
node alive: every callback, timer, service and the mapping worker runs inside `guard(stage)`; an
exception there is counted, logged rate-limited (the traceback once per stage), and the stage reads
as failing in /diagnostics until it next succeeds.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from .config import Config


class StartupError(RuntimeError):
    """What the node needs and does not have; the message is one line."""


def _import_open3d():
    try:
        import open3d  # noqa: F401
    except Exception as e:  # an OSError when a system library (libusb, libGL) is missing
        raise StartupError(
            f"open3d (object boxes) does not import: {type(e).__name__}: {e} (system libraries: scripts/system_deps.sh)"
        ) from e


def _checkpoint(kind: str, path: str, param: str):
    if not path:
        raise StartupError(f"{kind} checkpoint not set: give a local file in {param}")
    if not Path(path).expanduser().is_file():
        raise StartupError(f"{kind} checkpoint not found at {path!r} ({param})")


def preflight(cfg: Config) -> None:
    """Raise StartupError naming the first missing piece the configured node would need."""
    _import_open3d()
    m = cfg.mapper
    if m.backend == "gsplat" or m.device.startswith("cuda"):
        try:
            import gsplat  # noqa: F401
        except Exception as e:
            raise StartupError(f"mapper.backend {m.backend!r} needs gsplat: {type(e).__name__}: {e}") from e
        import torch

        if not torch.cuda.is_available():
            raise StartupError(
                f"mapper.backend {m.backend!r} / device {m.device!r} needs CUDA, and this machine "
                "has none (mapper.backend: auto uses the CPU reference)"
            )
    p = cfg.perception
    if p.masks == "sam":
        _checkpoint(f"SAM {p.sam_model_type}", p.sam_checkpoint, "perception.sam_checkpoint")
    if p.embedder == "clip" and p.masks != "none":
        looks_like_path = "/" in p.clip_pretrained or p.clip_pretrained.endswith(
            (".pt", ".pth", ".bin", ".safetensors")
        )
        if not p.clip_pretrained or looks_like_path:
            _checkpoint(f"CLIP {p.clip_model}", p.clip_pretrained, "perception.clip_pretrained")
    if p.masks == "oracle" or (p.embedder == "text_proxy" and p.masks != "none"):
        if not p.gt_path or not Path(p.gt_path).expanduser().is_file():
            raise StartupError(
                f"oracle perception (perception.masks: oracle / embedder: text_proxy) reads the "
                f"simulator's gt.json, not found at {p.gt_path!r} (perception.gt_path); a real "
                "camera needs masks: sam, embedder: clip"
            )
    voc = cfg.semantics.vocabulary
    if not voc or not all(isinstance(v, str) and v.strip() for v in voc):
        raise StartupError("semantics.vocabulary must be a non-empty list of class names")
    if not 0.0 <= cfg.node.rgb_readout < 0.1:
        raise StartupError(
            f"node.rgb_readout {cfg.node.rgb_readout} s is no colour readout (0: global shutter; a rolling "
            "shutter reads its rows out within one frame period)"
        )
    d = Path(cfg.node.map_dir).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(f"node.map_dir {cfg.node.map_dir!r} cannot be created: {e}") from e


class StageHealth:
    """Per-stage error counts and the error each stage is in (None once it succeeds again)."""

    def __init__(self, log: Callable[[str], None], period: float = 10.0):
        self.log, self.period = log, period
        self.errors: collections.Counter = collections.Counter()
        self.failing: dict[str, str] = {}
        self._last_log: dict[str, float] = {}
        self._traced: set[str] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def guard(self, stage: str):
        """Run a block; an exception in it is recorded and swallowed (the caller carries on)."""
        try:
            yield
        except Exception as e:
            self.record(stage, e)
        else:
            self.ok(stage)

    def ok(self, stage: str):
        if stage in self.failing:
            with self._lock:
                self.failing.pop(stage, None)
            self.log(f"{stage} works again")

    def record(self, stage: str, e: BaseException):
        msg = f"{type(e).__name__}: {e}"
        with self._lock:
            self.errors[stage] += 1
            self.failing[stage] = msg
            now = time.monotonic()
            due = now - self._last_log.get(stage, -1e9) >= self.period
            if due:
                self._last_log[stage] = now
            first = stage not in self._traced
            self._traced.add(stage)
        if due:
            tb = "\n" + "".join(traceback.format_exception(e)) if first else ""
            self.log(f"{stage} failed ({self.errors[stage]} so far, logged at most every {self.period:g} s): {msg}{tb}")
