"""The core, end to end: frame -> map -> masks/embeddings -> lifting -> objects -> answers.

No ROS here. The node (and the benchmark, and a notebook) drive `process()` from one worker and
call `query()` / `objects()` from anywhere: readers only ever see a snapshot that is swapped in
whole after each refresh, so a query never waits for mapping.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from .config import Config
from .mapping.mapper import Keyframe, Mapper
from .mapping.registration import one_instant
from .perception.factory import make_embedder, make_mask_generator
from .query.engine import QueryEngine, QueryResult
from .semantics.features import distill
from .semantics.lifting import mask_weights
from .semantics.registry import ObjectRegistry
from .types import Camera, Frame, SemanticObject

CHANGE_LOG = 1000  # events kept for readers that poll the snapshot (the node's ~/changes)


@dataclass
class Snapshot:
    objects: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)  # host copy of the map (means, rgb, object_id, ...)
    stamp: float = 0.0
    keyframes: int = 0
    latest_keyframe: tuple | None = None  # (camera, T_world_cam)
    changes: list = field(default_factory=list)  # ObjectChange log, oldest first (the last CHANGE_LOG)


class LiftObserver(Protocol):
    def on_lift(self, mapper: Mapper, kf: Keyframe, weights: torch.Tensor, embeddings: np.ndarray) -> None:
        """Called with each keyframe's lifting weights (N, M+1) and mask embeddings (M, D), map lock held."""


class SemanticMappingPipeline:
    """`observers` see each keyframe's lifting (LiftObserver): how an evaluation looks inside
    without the pipeline knowing about it."""

    def __init__(
        self,
        cfg: Config,
        mask_generator=None,
        embedder=None,
        seed: int = 0,
        observers: list[LiftObserver] | None = None,
    ):
        self.cfg = cfg
        self.mapper = Mapper(cfg.mapper, seed=seed, max_objects=cfg.semantics.max_objects)
        self.masks = mask_generator or make_mask_generator(cfg.perception)
        self.embedder = embedder or make_embedder(cfg.perception)
        self.registry = ObjectRegistry(cfg.semantics, self.embedder.embed_text)
        self.engine = QueryEngine(cfg.query, self.embedder.embed_text)
        self._snapshot = Snapshot()
        self._changes: list = []
        self._seq = 0
        self._work_lock = threading.Lock()
        self._unrefreshed = False  # keyframes integrated since the last refresh
        self._settle = 0  # keyframes left to refresh at each one: a change event came lately
        self.timings = {"map_ms": [], "perception_ms": [], "lift_ms": [], "refresh_ms": []}
        self.observers = list(observers or [])

    # ------------------------------------------------------------ writer side
    def process(self, frame: Frame) -> bool:
        """Integrate one frame; True when it became a keyframe."""
        with self._work_lock:
            t0 = time.perf_counter()
            if self.mapper.is_keyframe(frame.T_world_cam):
                # masks and embeddings see the image the map is rendered as
                frame = one_instant(frame, self.mapper.device)
            kf = self.mapper.integrate(frame)
            if kf is None:
                return False
            carved = self.mapper.carved
            self.registry.changes.note_carved(carved)
            t1 = time.perf_counter()
            pc = self.cfg.perception
            prompts = self.project_boxes(kf, frame.camera) if pc.masks == "sam" and pc.sam_map_guided else None
            masks = self.masks.generate(frame, prompts)
            emb = self.embedder.embed_masks(frame, masks) if masks else np.zeros((0, 1), np.float32)
            t2 = time.perf_counter()
            if masks:
                self.lift(kf, masks, emb)
            t3 = time.perf_counter()
            self.timings["map_ms"].append(1e3 * (t1 - t0))
            self.timings["perception_ms"].append(1e3 * (t2 - t1))
            self.timings["lift_ms"].append(1e3 * (t3 - t2))
            # an object free space took, one just reportable, a change event lately: news for readers, no waiting
            sc = self.cfg.semantics
            news = sc.track_changes and (
                self.registry.due or carved.numel() >= sc.min_object_gaussians or self._settle > 0
            )
            self._settle = max(0, self._settle - 1)
            if news or self.registry.keyframes % max(1, sc.refresh_every) == 0:
                self.refresh(kf)
            else:
                self._snapshot.latest_keyframe = (kf.camera, kf.T_world_cam.cpu().numpy())
                self._unrefreshed = True
            return True

    def lift(self, kf: Keyframe, masks, emb: np.ndarray):
        with self.mapper.map.lock:
            binary = [m.mask for m in masks]
            W = mask_weights(self.mapper, kf, binary)
            self.registry.update(self.mapper.map, W, emb, kf.stamp, [m.area for m in masks])
            sc = self.cfg.semantics
            distill(self.mapper, kf, binary, sc.feature_iters, sc.feature_pixels, sc.feature_temperature)
            for ob in self.observers:
                ob.on_lift(self.mapper, kf, W, emb)

    def refresh(self, kf: Keyframe | None = None, recompute: bool = True):
        t = time.perf_counter()
        stamp = kf.stamp if kf else self._snapshot.stamp
        self.registry.refresh(self.mapper.map, recompute, stamp)
        arrays = self.mapper.map.snapshot()
        latest = (kf.camera, kf.T_world_cam.cpu().numpy()) if kf is not None else self._snapshot.latest_keyframe
        for c in self.registry.changes.drain():
            self._settle = self.cfg.semantics.settle_keyframes
            self._seq += 1
            c.seq = self._seq
            self._changes = [*self._changes[-(CHANGE_LOG - 1) :], c]
        self._snapshot = Snapshot(
            list(self.registry.objects), arrays, stamp, len(self.mapper.keyframes), latest, self._changes
        )
        self._unrefreshed = False
        self.timings["refresh_ms"].append(1e3 * (time.perf_counter() - t))

    def finish(self):
        """Refresh if keyframes came in since the last refresh. Nothing else: a loaded map keeps
        its saved labels, and re-segmenting an unchanged million-Gaussian map would only burn CPU."""
        with self._work_lock:
            if self._unrefreshed and len(self.mapper.map):
                self.refresh(self.mapper.keyframes[-1] if self.mapper.keyframes else None)

    def project_boxes(self, kf: Keyframe, camera: Camera) -> np.ndarray | None:
        """Known objects' boxes projected into the new view (xyxy at the input resolution)."""
        objs = [o for o in self._snapshot.objects if not o.is_background and o.obb is not None]
        if not objs:
            return None
        V = kf.viewmat.cpu().numpy()
        out = []
        for o in objs:
            c = o.obb.corners() @ V[:3, :3].T + V[:3, 3]
            if (c[:, 2] <= 0.05).any():
                continue
            u = camera.fx * c[:, 0] / c[:, 2] + camera.cx
            v = camera.fy * c[:, 1] / c[:, 2] + camera.cy
            box = [max(0, u.min()), max(0, v.min()), min(camera.width - 1, u.max()), min(camera.height - 1, v.max())]
            if box[2] > box[0] + 2 and box[3] > box[1] + 2:
                out.append(box)
        return np.array(out, dtype=np.float32) if out else None

    # ------------------------------------------------------------ persistence
    def save(self, path) -> str:
        from .io.mapfile import save_map

        with self.mapper.map.lock:
            arrays = self.mapper.map.snapshot()
            arrays["votes"] = self.mapper.map.state["votes"].cpu().numpy()
            records = {
                i: {"views": list(r.views), "n_masks": r.n_masks, "last_seen": r.last_seen}
                for i, r in self.registry.records.items()
            }
        return str(save_map(path, arrays, records, {"keyframes": len(self.mapper.keyframes)}))

    def load(self, path):
        """Replace the map with a saved one; on any error the current map is left untouched."""
        from .io.mapfile import load_map
        from .semantics.registry import ObjectRecord

        arrays, records, _ = load_map(path)
        with self._work_lock, self.mapper.map.lock:
            self.mapper.map.load_arrays(arrays)
            self.registry.records = {
                i: ObjectRecord(i, r["views"], r["last_seen"], r["n_masks"]) for i, r in records.items()
            }
            self.registry.changes = self.registry.new_changes()  # the loaded map is the scene as it is
            self.refresh(None, recompute=False)  # the saved labels as they were, not re-split/merged

    # ------------------------------------------------------------ reader side
    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def changes(self, after: int = 0) -> list:
        """Change events (semantics.changes.ObjectChange) later than seq `after` (a reader's cursor)."""
        return [c for c in self._snapshot.changes if c.seq > after]

    def objects(self, include_background: bool = False) -> list[SemanticObject]:
        return [o for o in self._snapshot.objects if include_background or not o.is_background]

    def query(self, instruction, max_results: int = 0) -> QueryResult:
        snap = self._snapshot
        cam_pos = snap.latest_keyframe[1][:3, 3] if snap.latest_keyframe else None
        return self.engine.query(instruction, snap.objects, max_results, cam_pos)

    def render_object_ids(self, camera: Camera, T_world_cam: np.ndarray) -> np.ndarray:
        """(H,W) object id per pixel (-1 = nothing) for a view, from the current snapshot."""
        snap = self._snapshot
        if not snap.arrays or len(snap.arrays["means"]) == 0:
            return np.full((camera.height, camera.width), -1, np.int32)
        from .mapping.mapper import raster_K

        a = snap.arrays
        ids = a["object_id"].astype(np.int64)
        uniq, inv = np.unique(ids, return_inverse=True)
        dev = self.mapper.device
        onehot = torch.zeros(len(ids), len(uniq), device=dev)
        onehot[torch.arange(len(ids)), torch.as_tensor(inv.reshape(-1), device=dev)] = 1

        def t(k):
            return torch.as_tensor(a[k], dtype=torch.float32, device=dev)

        with torch.no_grad():
            out = self.mapper.raster.render(
                t("means"),
                t("quats"),
                t("scales"),
                t("opacities"),
                onehot,
                np.linalg.inv(T_world_cam),
                raster_K(camera),
                camera.width,
                camera.height,
            )
        lab = uniq[out.colors.argmax(-1).cpu().numpy()]
        lab[out.alpha.cpu().numpy() < 0.3] = -1
        return lab.astype(np.int32)
