"""Incremental RGB-D Gaussian mapping with poses from the robot (odometry / SLAM).

Per keyframe: align its pose to the map (mapping.tracking, optionally mapping.direct), remove what
the view clearly sees through once that is confirmed (free space: the scene changed), seed Gaussians
(flat discs in the observed surface) where the map is unobserved (low silhouette) or wrong (observed
surface in front of the rendered one), optimise a bounded window of recent + random past keyframes on
RGB + depth L1, then prune transparent Gaussians, split oversized ones and enforce the Gaussian cap.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import CAP_POLICIES, MapperConfig
from ..types import Camera, Frame
from .compaction import choose_voxel, merge_in_voxels, rotmat_to_quat
from .direct import DirectAlignment, align_to_render
from .gaussians import GaussianMap
from .geometry import backproject, depth_normals, rotvec_to_matrix
from .rasterizer import RenderOutput, make_rasterizer, quat_to_rotmat
from .registration import one_instant
from .tracking import Alignment, align_to_map, blend, displacement_sq, fuse_weight


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def raster_K(camera: Camera) -> np.ndarray:
    """ROS intrinsics (integer pixel centres) -> rasterizer intrinsics (pixel u spans [u, u+1))."""
    K = camera.K.copy()
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (..., 4) wxyz quaternions."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


@dataclass
class Keyframe:
    index: int
    stamp: float
    camera: Camera  # at working resolution
    rgb: torch.Tensor  # (H,W,3) float [0,1]
    depth: torch.Tensor  # (H,W) m, 0 invalid
    T_world_cam: torch.Tensor  # (4,4)
    viewmat: torch.Tensor  # (4,4)
    K: torch.Tensor  # (3,3) rasterizer convention
    gt_instances: np.ndarray | None = None
    depth_weight: torch.Tensor | None = None  # (H,W) per-pixel trust in the depth (Mapper.depth_weights)
    exposure: torch.Tensor | None = None  # (3,4) affine colour response, optimised with the map
    pose_delta: torch.Tensor | None = None  # (6,) rotation vector + translation in the camera frame (pose_refinement)


class Mapper:
    def __init__(self, cfg: MapperConfig, seed: int = 0, max_objects: int = 128):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        backend = cfg.backend
        if backend == "auto" and self.device.type == "cpu":
            backend = "torch"
        self.raster = make_rasterizer(backend)
        self.map = GaussianMap(
            cfg.feature_dim,
            self.device,
            max_objects=max_objects,
            lrs={"means": cfg.lr_means, "scales": cfg.lr_scales},
        )
        self.keyframes: list[Keyframe] = []
        self.rng = random.Random(seed)
        torch.manual_seed(seed)
        self.last_keyframe_pose: np.ndarray | None = None
        self.frames_seen = 0
        self.track_refused = 0  # keyframes whose alignment to the map was refused (mapping.tracking)
        self.track_direct_refused = 0  # ... whose alignment to the map's render was (mapping.direct)
        self.last_alignment: Alignment | None = None
        self.corrections: list[torch.Tensor] = []  # (4,4) aligned pose x given pose^-1 per tracked keyframe
        # m^2, how far each of the last accepted alignments would move the map's surface (its pose noise)
        self.correction_sizes: deque[float] = deque(maxlen=50)
        self.carved = torch.zeros(0, dtype=torch.int32)  # object ids of the Gaussians the last keyframe carved
        self.resolution = 0.0  # voxel the map was coarsened to under its cap (0: full detail)
        self.exposure_opt = torch.optim.Adam([torch.zeros(0, requires_grad=True)], lr=cfg.lr_exposure)
        self.pose_opt = torch.optim.Adam([torch.zeros(0, requires_grad=True)], lr=cfg.lr_pose)
        if cfg.cap_policy not in CAP_POLICIES:
            raise ValueError(f"mapper.cap_policy must be one of {CAP_POLICIES}, not {cfg.cap_policy!r}")

    # ---------------------------------------------------------------- frames
    def prepare(self, frame: Frame) -> Keyframe:
        """The frame at one instant through a pinhole (mapping.registration.one_instant), resampled to
        the working resolution and moved to the mapping device."""
        frame = one_instant(frame, self.device)
        W = self.cfg.width or frame.camera.width
        H = self.cfg.height or frame.camera.height
        # frames decoded from a bag are read-only views; torch wants writable memory (copied if not)
        rgb = torch.from_numpy(np.require(frame.rgb, requirements="CW")).to(self.device).float().div(255.0)
        depth = torch.from_numpy(np.require(frame.depth, np.float32, "CW")).to(self.device)
        depth = torch.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0)
        depth = torch.where(
            (depth >= self.cfg.min_depth) & (depth <= self.cfg.max_depth), depth, torch.zeros_like(depth)
        )
        gt = frame.gt_instances
        if (W, H) != (frame.camera.width, frame.camera.height):
            rgb = F.interpolate(rgb.permute(2, 0, 1)[None], size=(H, W), mode="area")[0].permute(1, 2, 0)
            depth = F.interpolate(depth[None, None], size=(H, W), mode="nearest-exact")[0, 0]
            if gt is not None:
                gt = (
                    F.interpolate(
                        torch.from_numpy(gt.astype(np.float32))[None, None], size=(H, W), mode="nearest-exact"
                    )[0, 0]
                    .numpy()
                    .astype(np.int32)
                )
        cam = frame.camera.scaled(W, H)
        T = torch.as_tensor(frame.T_world_cam, dtype=torch.float32, device=self.device)
        return Keyframe(
            frame.index,
            frame.stamp,
            cam,
            rgb.contiguous(),
            depth.contiguous(),
            T,
            torch.linalg.inv(T),
            torch.as_tensor(raster_K(cam), dtype=torch.float32, device=self.device),
            gt,
            self.depth_weights(depth.contiguous()),
        )

    def depth_weights(self, depth: torch.Tensor) -> torch.Tensor:
        """(H,W) weight of each pixel's depth in the depth loss: 1 everywhere by default. With
        mapper.depth_noise_weighting: a structured-light / stereo sensor's depth noise (std) grows with
        depth^2 and the loss is L1, so a pixel weighs (median depth / its depth)^2; and 0 at depth edges
        (neighbours spanning more than seed_depth_error of its depth), where colour and depth disagree."""
        w = torch.ones_like(depth)
        if not self.cfg.depth_noise_weighting:
            return w
        valid = depth > 0
        if not bool(valid.any()):
            return w
        z_med = depth[valid].median()
        w = torch.where(valid, (z_med / depth.clamp(min=1e-3)) ** 2, torch.zeros_like(depth))
        pad = F.pad(depth[None, None], (1, 1, 1, 1), mode="replicate")
        hi = F.max_pool2d(pad, 3, 1)[0, 0]
        lo = -F.max_pool2d(-torch.where(pad > 0, pad, torch.full_like(pad, 1e9)), 3, 1)[0, 0]
        edge = (hi - lo) > self.cfg.seed_depth_error * depth
        return torch.where(edge, torch.zeros_like(w), w)

    def is_keyframe(self, T_world_cam: np.ndarray) -> bool:
        if self.last_keyframe_pose is None:
            return True
        rel = np.linalg.inv(self.last_keyframe_pose) @ T_world_cam
        trans = float(np.linalg.norm(rel[:3, 3]))
        angle = math.degrees(math.acos(float(np.clip((np.trace(rel[:3, :3]) - 1) / 2, -1, 1))))
        return trans >= self.cfg.keyframe_translation or angle >= self.cfg.keyframe_rotation_deg

    # ---------------------------------------------------------------- rendering
    @staticmethod
    def view(kf: Keyframe) -> torch.Tensor:
        """The keyframe's world->camera matrix with its pending pose correction (differentiable)."""
        if kf.pose_delta is None:
            return kf.viewmat
        dR, t = rotvec_to_matrix(kf.pose_delta[:3]), kf.pose_delta[3:]
        top = torch.cat([dR @ kf.viewmat[:3, :3], dR @ kf.viewmat[:3, 3:] + t[:, None]], 1)
        return torch.cat([top, kf.viewmat[3:]], 0)

    @torch.no_grad()
    def _bake_poses(self, kfs: list[Keyframe]) -> None:
        """Fold the optimised corrections into the keyframes' poses, so every reader of viewmat /
        T_world_cam (seeding, lifting, the window's next pass) sees the refined pose."""
        for kf in kfs:
            if kf.pose_delta is None or not bool(kf.pose_delta.any()):
                continue
            V = self.view(kf)
            if not bool(torch.isfinite(V).all()):
                kf.pose_delta.zero_()
                continue
            kf.viewmat = V.contiguous()
            kf.T_world_cam = torch.linalg.inv(V)
            kf.pose_delta.zero_()

    @staticmethod
    def respond(colors: torch.Tensor, exposure: torch.Tensor | None) -> torch.Tensor:
        """Rendered colours (..., 3) through a camera response (3,4: affine on the identity); None: as rendered."""
        if exposure is None:
            return colors
        return colors @ (torch.eye(3, device=colors.device) + exposure[:, :3]).T + exposure[:, 3]

    @torch.no_grad()
    def exposure_at(self, stamp: float) -> torch.Tensor | None:
        """The camera response at an instant no keyframe was taken (a held-out view): linear in time
        between the keyframes either side, as auto exposure and white balance drift, the nearest
        keyframe's beyond them. None without exposure compensation."""
        if not self.cfg.exposure_compensation or not self.keyframes:
            return None
        kfs = sorted(self.keyframes, key=lambda k: k.stamp)
        after = next((i for i, k in enumerate(kfs) if k.stamp >= stamp), len(kfs))
        pair = [kfs[max(0, after - 1)], kfs[min(after, len(kfs) - 1)]]
        span = pair[1].stamp - pair[0].stamp
        w = 0.0 if span <= 0 else float(np.clip((stamp - pair[0].stamp) / span, 0.0, 1.0))
        E = [torch.zeros(3, 4, device=self.device) if k.exposure is None else k.exposure.detach() for k in pair]
        return (1 - w) * E[0] + w * E[1]

    def render(self, kf: Keyframe, colors: torch.Tensor | None = None, detach_geometry: bool = False) -> RenderOutput:
        a = self.map.activated()
        if detach_geometry:
            a = {k: v.detach() for k, v in a.items()}
        cols = a["rgb"] if colors is None else colors
        return self.raster.render(
            a["means"],
            a["quats"],
            a["scales"],
            a["opacities"],
            cols,
            self.view(kf),
            kf.K,
            kf.camera.width,
            kf.camera.height,
        )

    # ---------------------------------------------------------------- integration
    def integrate(self, frame: Frame) -> Keyframe | None:
        """Add a frame; returns the keyframe when it became one, else None."""
        self.frames_seen += 1
        if not self.is_keyframe(frame.T_world_cam):
            return None
        kf = self.prepare(frame)
        with self.map.lock:
            a = self.track(kf) if self.cfg.track and len(self.map) > 0 else None
            self.carved = self.carve(kf)
            self.seed(kf)
            if self.cfg.exposure_compensation and self.keyframes:  # the first keyframe anchors the colours
                kf.exposure = self._exposure_guess(a).requires_grad_(True)
                self.exposure_opt.add_param_group({"params": [kf.exposure], "lr": self.cfg.lr_exposure})
            if self.cfg.pose_refinement and self.keyframes:  # ... and the map frame
                kf.pose_delta = torch.zeros(6, device=self.device, requires_grad=True)
                self.pose_opt.add_param_group({"params": [kf.pose_delta], "lr": self.cfg.lr_pose})
            self.keyframes.append(kf)
            self.last_keyframe_pose = np.asarray(frame.T_world_cam, dtype=np.float64).copy()
            self.optimise(self.cfg.iters_per_keyframe)
            if len(self.keyframes) % max(1, self.cfg.prune_every) == 0:
                self.prune_and_split()
            self.enforce_cap()
        return kf

    def _exposure_guess(self, a: Alignment | None) -> torch.Tensor:
        """(3,4) a new keyframe's camera response to start from: the gain and offset per channel that
        its alignment to the map's render found (mapping.direct), else none."""
        E = torch.zeros(3, 4, device=self.device)
        d = a.direct if a is not None else None
        if d is not None and d.accepted:
            E[:, :3] = torch.diag(d.gain.to(self.device) - 1)
            E[:, 3] = d.offset.to(self.device)
        return E

    @torch.no_grad()
    def track(self, kf: Keyframe) -> Alignment:
        """Align the keyframe's pose to the map's surface (mapping.tracking): the centres of its
        Gaussians that are more opaque than not; with mapper.track_direct, then to the map's render
        (mapping.direct). The correction is taken in the share that fusing the given pose with the
        aligned one by their noise gives (tracking.fuse_weight)."""
        g = self.map.activated()
        surface = g["means"].detach()[g["opacities"].detach().reshape(-1) > 0.5]
        try:
            a = self._align(kf, surface)
        except RuntimeError:  # a singular system, a device error: the keyframe keeps its pose as given
            a = Alignment.refused(kf.T_world_cam)
        given = kf.T_world_cam.double()
        if self.cfg.track_direct:  # ... then to the map's render, from where the centres put it
            d = self._align_direct(kf, a.T_world_cam, given)
            if d.accepted:
                a.T_world_cam, a.accepted = d.T_world_cam, True
                a.translation, a.rotation_deg = d.translation, d.rotation_deg
            else:
                self.track_direct_refused += 1
            a.direct = d
        if a.accepted:
            C = a.T_world_cam.double() @ torch.linalg.inv(given)
            sample = surface[:: max(1, len(surface) // 2000)]
            self.correction_sizes.append(displacement_sq(C, sample))
            a.weight = fuse_weight(self.correction_sizes, self.cfg.track_map_sigma)
            p = surface.double().mean(0)
            C = torch.as_tensor(blend(C[None].cpu().numpy(), np.array([a.weight]), p.cpu().numpy()), device=self.device)
            kf.T_world_cam = (C @ given).to(kf.T_world_cam.dtype).contiguous()
            kf.viewmat = torch.linalg.inv(kf.T_world_cam).contiguous()
            self.corrections.append(C)
            self._hold_to_given_poses(p, kf)
        else:  # it stays where its pose put it: no correction
            self.track_refused += 1
            self.corrections.append(torch.eye(4, dtype=torch.float64, device=self.device))
        self.last_alignment = a
        return a

    def _align_direct(self, kf: Keyframe, T_world_cam: torch.Tensor, given: torch.Tensor) -> DirectAlignment:
        """The keyframe at T_world_cam aligned to the map rendered there (mapping.direct), no farther from
        its given pose than mapper.track_max_translation / track_max_rotation_deg."""
        cfg = self.cfg
        V = torch.linalg.inv(T_world_cam.to(kf.viewmat.dtype))
        out = self.render(dataclasses.replace(kf, viewmat=V, pose_delta=None), detach_geometry=True)
        try:
            return align_to_render(
                kf.rgb,
                kf.depth,
                kf.camera,
                T_world_cam,
                out.colors,
                out.depth,
                out.alpha,
                iters=cfg.track_direct_iters,
                depth_noise=cfg.depth_noise,
                max_translation=cfg.track_max_translation,
                max_rotation_deg=cfg.track_max_rotation_deg,
                bounds_from=given,
            )
        except RuntimeError:
            return DirectAlignment.refused(T_world_cam)

    def _align(self, kf: Keyframe, surface: torch.Tensor) -> Alignment:
        cfg = self.cfg
        return align_to_map(
            kf.depth,
            kf.camera,
            kf.T_world_cam,
            surface,
            iters=cfg.track_iters,
            max_residual=cfg.track_max_residual,
            max_translation=cfg.track_max_translation,
            max_rotation_deg=cfg.track_max_rotation_deg,
        )

    def _hold_to_given_poses(self, p: torch.Tensor, kf: Keyframe) -> None:
        """Keep the map where the given poses put it, on average. Aligned to the map, every keyframe
        inherits the first keyframe's pose error, the map's own; the corrections of all keyframes
        (the first and the refused: none) average that error, as the given poses' own errors average out. So the
        map and its keyframes move by the inverse of the mean correction (rotation about `p`, the
        surface's centre, where a lever arm would least distort the mean)."""
        C = torch.stack([torch.eye(4, dtype=torch.float64, device=self.device), *self.corrections]).cpu().numpy()
        F_ = blend(C, np.full(len(C), 1.0 / len(C)), p.cpu().numpy())
        S = torch.as_tensor(np.linalg.inv(F_), dtype=torch.float64, device=self.device)
        self.move_map(S, [kf])
        self.corrections = [S @ c for c in self.corrections]

    @torch.no_grad()
    def move_map(self, S: torch.Tensor, also: list[Keyframe] = ()) -> None:
        """Move the map, its keyframes and `also` by the rigid transform S (4x4, map frame)."""
        R, t = S[:3, :3].float(), S[:3, 3].float()
        self.map.params["means"].copy_(self.map.params["means"] @ R.T + t)
        self.map.params["quats"].copy_(quat_mul(rotmat_to_quat(R)[None], self.map.params["quats"]))
        for kf in [*self.keyframes, *also]:
            kf.T_world_cam = (S @ kf.T_world_cam.double()).float().contiguous()
            kf.viewmat = torch.linalg.inv(kf.T_world_cam).contiguous()

    @torch.no_grad()
    def carve(self, kf: Keyframe) -> torch.Tensor:
        """Free-space evidence from one keyframe (mapper.free_space_*); removes the Gaussians whose
        evidence is clear and returns their object ids. A Gaussian the depth does not testify about
        (behind the observed surface: occluded; on a depth hole; outside the view) keeps its evidence.
        One projection of the centres, no render: the same tensors on CPU and GPU."""
        cfg = self.cfg
        none = torch.zeros(0, dtype=torch.int32)
        if not cfg.free_space_carving or len(self.map) == 0:
            return none
        through, seen = self._against_depth(self.map.means.detach(), kf, cfg.free_space_margin)
        ev = self.map.state["free_evidence"]
        ev[seen] = 0
        ev[through] += 1
        gone = ev >= max(1, cfg.free_space_views)
        if not bool(gone.any()):
            return none
        ids = self.map.state["object_id"][gone].cpu()
        self.map.remove(gone)
        return ids

    def _against_depth(self, means: torch.Tensor, kf: Keyframe, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
        """What a keyframe's depth says about world points: (through, on). Through: the observed depth
        clearly behind the point (by margin + 3 x depth_noise x depth^2), even the nearest valid depth
        of its 3x3 pixels: a rim, a thin part, is seen through only where its whole neighbourhood lies
        behind it. On: within that margin of it. Neither: out of view, hidden, or on a depth hole."""
        pc = means @ kf.viewmat[:3, :3].T + kf.viewmat[:3, 3]
        z = pc[:, 2]
        cam = kf.camera
        zs = z.clamp(min=1e-6)
        u = (pc[:, 0] / zs * cam.fx + cam.cx).round().nan_to_num(-1.0)
        v = (pc[:, 1] / zs * cam.fy + cam.cy).round().nan_to_num(-1.0)
        inside = (z > self.cfg.min_depth) & (u >= 0) & (u <= cam.width - 1) & (v >= 0) & (v <= cam.height - 1)
        ui, vi = u.clamp(0, cam.width - 1).long(), v.clamp(0, cam.height - 1).long()
        D = kf.depth
        far = torch.where(D > 0, D, torch.full_like(D, float("inf")))
        nearest = -F.max_pool2d(-far[None, None], 3, 1, padding=1)[0, 0]
        d_pix, d_near = D[vi, ui], nearest[vi, ui]
        m = margin + 3 * self.cfg.depth_noise * z**2
        through = inside & (d_pix > 0) & torch.isfinite(d_near) & (d_near > z + m)
        on = inside & (d_pix > 0) & ((d_pix - z).abs() <= m)
        return through, on

    def _seen_through_before(self, pts: torch.Tensor) -> torch.Tensor:
        """Points one of the last mapper.appeared_history keyframes saw through: free space then."""
        hit = torch.zeros(len(pts), dtype=torch.bool, device=pts.device)
        n = self.cfg.appeared_history
        for old in self.keyframes[-n:] if n > 0 and len(pts) else []:
            hit |= self._against_depth(pts, old, self.cfg.seed_depth_margin)[0]
        return hit

    @torch.no_grad()
    def seed(self, kf: Keyframe) -> int:
        cfg = self.cfg
        valid = kf.depth > 0
        if len(self.map) > 0:
            out = self.render(kf, detach_geometry=True)
            front = out.depth * (1 - cfg.seed_depth_error)
            unseen = out.alpha < cfg.seed_alpha
            drawn = torch.where(unseen, torch.full_like(out.depth, float("inf")), out.depth)
            if cfg.seed_depth_margin > 0:
                nearest = -F.max_pool2d(-drawn[None, None], 3, 1, padding=1)[0, 0]
                tol = cfg.seed_depth_margin + 3 * cfg.depth_noise * kf.depth**2
                front = torch.maximum(front, nearest - tol)
            wrong = valid & (kf.depth < front)
            need = valid & (unseen | wrong)
            if cfg.seed_grow_steps > 0:
                need |= self._continued(kf.depth, drawn, wrong)
        else:
            unseen = need = valid
        need &= self._seed_grid(need.shape, cfg.seed_stride) | (
            self._seed_grid(need.shape, cfg.seed_stride_front) & ~unseen
        )
        P = backproject(kf.depth, kf.camera, kf.T_world_cam)
        pts = P[need]
        if pts.shape[0] == 0:
            return 0
        d = kf.depth[need]
        stride = torch.where(unseen[need], max(1, cfg.seed_stride), max(1, cfg.seed_stride_front))
        base = (d * stride / (0.5 * (kf.camera.fx + kf.camera.fy)) * 0.6).clamp(min=1e-4)
        scales = base[:, None].repeat(1, 3)
        quats = None
        if cfg.seed_surfels:
            quats, scales = self._surfels(kf, P, need, base)
        # surface in front of mapped surface appeared there where an earlier view saw through its place;
        # elsewhere it is a side of something first seen from here, or something no view had looked at
        ahead = (~unseen[need]).nonzero().squeeze(1)
        appeared = torch.zeros(len(pts), device=self.device)
        appeared[ahead] = self._seen_through_before(pts[ahead]).float()
        seen_from = F.normalize(kf.T_world_cam[:3, 3] - pts, dim=1)  # where the object's boxes learn their seen side
        state = {"appeared": appeared, "seen_from": seen_from}
        self.map.append(pts, kf.rgb[need], scales, opacity=0.9, quats=quats, state=state)
        if self.resolution > 0:  # a coarsened map takes new surface at its own resolution
            new = torch.zeros(len(self.map), dtype=torch.bool, device=self.device)
            new[-pts.shape[0] :] = True
            merge_in_voxels(self.map, self.resolution, new)
        return int(pts.shape[0])

    def _continued(self, depth: torch.Tensor, drawn: torch.Tensor, front: torch.Tensor) -> torch.Tensor:
        """Pixels that continue surface found in front of the map (`front`): each within seed_depth_margin +
        the sensor's noise of the depth of a neighbour already in, and in front by more than the noise of
        all map surface drawn (`drawn`: the rendered depth, inf where unseen) within two pixels. The foot of
        an object put down stands too close to the surface behind it for seed()'s margin, which guards rims;
        a mapped object's render blends into what lies behind it over about two pixels, so growth from a
        stray pixel at its rim stops there."""
        noise = 3 * self.cfg.depth_noise * depth**2
        step = self.cfg.seed_depth_margin + noise
        nearest = -F.max_pool2d(-drawn[None, None], 5, 1, padding=2)[0, 0]
        can = (depth > 0) & drawn.isfinite() & ~front & (nearest - depth > noise)
        far = torch.full_like(depth, float("inf"))
        grown = front
        for _ in range(self.cfg.seed_grow_steps):
            lo = -F.max_pool2d(-torch.where(grown, depth, far)[None, None], 3, 1, padding=1)[0, 0]
            hi = F.max_pool2d(torch.where(grown, depth, -far)[None, None], 3, 1, padding=1)[0, 0]
            add = can & ~grown & (depth >= lo - step) & (depth <= hi + step)
            if not bool(add.any()):
                break
            grown = grown | add
        return grown & ~front

    def _seed_grid(self, shape, stride: int) -> torch.Tensor:
        s = max(1, stride)
        grid = torch.zeros(shape, dtype=torch.bool, device=self.device)
        grid[s // 2 :: s, s // 2 :: s] = True
        return grid

    def _surfels(
        self, kf: Keyframe, P: torch.Tensor, need: torch.Tensor, base: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat Gaussians on the observed surface: the disc lies in the depth map's tangent plane and
        is stretched along the tilt by the pixel footprint (1 / cos of the viewing angle).

        A sphere sized to a pixel's cross-section covers an oblique surface (table, floor) only
        along the seeding ray; seen from the next viewpoint the same spheres leave gaps and
        blotches. Pixels without a reliable normal (depth edges, holes) keep the sphere."""
        cfg = self.cfg
        n, smooth = depth_normals(kf.depth, P)
        n, ok = n[need], smooth[need]
        ray = F.normalize(P[need] - kf.T_world_cam[:3, 3], dim=-1)
        # the stretch stays under half of max_scale, so a far, grazing disc is not split at once
        cos = torch.maximum((n * ray).sum(-1).abs(), (2 * base / cfg.max_scale).clamp(min=cfg.surfel_min_cos))
        n = torch.where(n[:, 2:3] < 0, -n, n)  # a disc has no side
        # q1 turns e_z onto n (half-way quaternion; n_z >= 0 keeps it regular) ...
        q1 = F.normalize(torch.stack([1 + n[:, 2], -n[:, 1], n[:, 0], torch.zeros_like(n[:, 0])], -1), dim=-1)
        # ... then a turn about the disc's normal puts its first axis along the tilt (the ray's
        # component in the plane), where the footprint is longest.
        tilt = ray - (ray * n).sum(-1, keepdim=True) * n
        R1 = quat_to_rotmat(q1)
        local = (R1.transpose(1, 2) @ tilt[:, :, None])[:, :, 0]
        half = 0.5 * torch.atan2(local[:, 1], local[:, 0])
        qz = torch.stack([half.cos(), torch.zeros_like(half), torch.zeros_like(half), half.sin()], -1)
        quats = quat_mul(q1, qz)
        scales = torch.stack([base / cos, base, base * cfg.surfel_thickness], -1)
        ident = torch.tensor([1.0, 0.0, 0.0, 0.0], device=quats.device)
        quats = torch.where(ok[:, None], quats, ident)
        scales = torch.where(ok[:, None], scales, base[:, None])
        return quats, scales

    def window(self) -> list[Keyframe]:
        recent = self.keyframes[-(self.cfg.window_recent + 1) :]
        past = self.keyframes[: -(self.cfg.window_recent + 1)]
        extra = self.rng.sample(past, min(len(past), self.cfg.window_random)) if past else []
        return recent + extra

    def loss(self, kf: Keyframe) -> torch.Tensor:
        cfg = self.cfg
        out = self.render(kf)
        colors = self.respond(out.colors, kf.exposure)  # this keyframe's exposure and white balance
        l_rgb = (colors - kf.rgb).abs().mean()
        if cfg.lambda_dssim > 0:  # 3DGS's photometric loss: (1 - l) L1 + l D-SSIM
            from pytorch_msssim import ssim

            s = ssim(colors.permute(2, 0, 1)[None], kf.rgb.permute(2, 0, 1)[None], data_range=1.0, size_average=True)
            l_rgb = (1 - cfg.lambda_dssim) * l_rgb + cfg.lambda_dssim * (1 - s)
        valid = kf.depth > 0
        err = (out.depth - kf.depth).abs()
        if not bool(valid.any()):
            l_depth = out.depth.sum() * 0
        elif cfg.depth_noise_weighting:
            l_depth = (err * kf.depth_weight)[valid].sum() / kf.depth_weight[valid].sum().clamp(min=1e-9)
        else:
            l_depth = err[valid].mean()
        loss = l_rgb + cfg.lambda_depth * l_depth
        if self.cfg.lambda_center_depth > 0:
            loss = loss + self.cfg.lambda_center_depth * self.center_depth_loss(kf)
        return loss

    def center_depth_loss(self, kf: Keyframe) -> torch.Tensor:
        """Gaussian centres near the observed surface are pulled onto it along the ray.

        The rendered expected depth is biased towards the nearer of the blended centres on slanted
        surfaces (front-to-back compositing), so an expected-depth loss alone pushes Gaussians
        behind oblique surfaces and rims; this term is unbiased for the centres it sees."""
        means = self.map.means
        V = self.view(kf)
        pc = means @ V[:3, :3].T + V[:3, 3]
        z = pc[:, 2]
        d_obs, ok = self._observed_depth(kf, pc.detach())
        err = (z - d_obs).abs()
        ok &= err.detach() < self.cfg.center_depth_band
        return err[ok].mean() if bool(ok.any()) else z.sum() * 0

    def _observed_depth(self, kf: Keyframe, pc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bilinear observed depth under camera-frame points (nearest pixels would turn an oblique
        plane into a staircase the centres snap to); no value across holes or depth edges."""
        cam = kf.camera
        z = pc[:, 2]
        zs = z.clamp(min=1e-6)
        u = pc[:, 0] / zs * cam.fx + cam.cx
        v = pc[:, 1] / zs * cam.fy + cam.cy
        ok = (z > self.cfg.min_depth) & (u >= 0) & (u <= cam.width - 1) & (v >= 0) & (v <= cam.height - 1)
        u, v = u.nan_to_num(0.0), v.nan_to_num(0.0)  # a non-finite centre is not ok, and must index safely
        u0 = u.floor().clamp(0, cam.width - 2).long()
        v0 = v.floor().clamp(0, cam.height - 2).long()
        du, dv = (u - u0).clamp(0, 1), (v - v0).clamp(0, 1)
        D = kf.depth
        q = torch.stack([D[v0, u0], D[v0, u0 + 1], D[v0 + 1, u0], D[v0 + 1, u0 + 1]], 1)
        lo = q.min(1).values
        ok &= (lo > 0) & (q.max(1).values - lo < self.cfg.seed_depth_error * lo)
        d = q[:, 0] * (1 - du) * (1 - dv) + q[:, 1] * du * (1 - dv) + q[:, 2] * (1 - du) * dv + q[:, 3] * du * dv
        return d, ok

    def optimise(self, iters: int) -> float:
        if len(self.map) == 0 or not self.keyframes:
            return 0.0
        win = self.window()
        last = 0.0
        for it in range(iters):
            kf = win[-1] if it % 2 == 0 else self.rng.choice(win)  # newest keyframe every other step
            loss = self.loss(kf)
            opts = [*self.map.optimizers.values(), self.exposure_opt, self.pose_opt]
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for p in [*self.map.params.values(), *(k.pose_delta for k in win if k.pose_delta is not None)]:
                if p.grad is not None:  # one ill-conditioned Gaussian must not poison Adam's moments
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            for opt in opts:
                opt.step()
            last = float(loss.detach())
        self._bake_poses(win)
        return last

    @torch.no_grad()
    def prune_and_split(self) -> tuple[int, int]:
        """Remove transparent, runaway (> prune_scale) and non-finite Gaussians; split those larger
        than max_scale in two (gsplat's split: children drawn inside the parent, 1/1.6 its size,
        labels inherited), so the map keeps a bounded resolution without losing the surface they
        cover. Returns (removed, split)."""
        a = self.map.activated()
        size = a["scales"].max(-1).values
        big = size > max(self.cfg.max_scale, self.resolution)
        bad = (a["opacities"] < self.cfg.prune_opacity) | (size > self.cfg.prune_scale) | ~(size >= 0)
        bad |= ~torch.isfinite(a["means"]).all(-1)
        if not self.cfg.split_large:
            bad |= big
        self.map.remove(bad)
        split = big[~bad]
        self.map.split(split)
        return int(bad.sum()), int(split.sum())

    @torch.no_grad()
    def enforce_cap(self) -> int:
        """Bring the map under max_gaussians (mapper.cap_policy); returns how many Gaussians went."""
        cfg = self.cfg
        before = len(self.map)
        if before <= cfg.max_gaussians:
            return 0
        if cfg.cap_policy == "merge":
            # faint Gaussians add little to any view: they go first, as many as the cap needs; only
            # when they do not suffice is the map coarsened (to the target, below the cap)
            self._evict_faintest(before - cfg.max_gaussians, below=cfg.cap_evict_opacity)
            if len(self.map) > cfg.max_gaussians:
                target = max(1, int(cfg.cap_target * cfg.max_gaussians))
                lo = self.resolution or float(torch.exp(self.map.params["scales"].detach()).max(-1).values.median())
                voxel = choose_voxel(self.map.means.detach(), self.map.state["object_id"], target, lo)
                merge_in_voxels(self.map, voxel)
                self.resolution = max(self.resolution, voxel)
        self._evict_faintest(len(self.map) - cfg.max_gaussians)  # the hard cap holds, whatever merging did
        return before - len(self.map)

    def _evict_faintest(self, n: int, below: float = 1.0) -> None:
        """Remove the n least opaque Gaussians, or those of them fainter than `below`."""
        if n <= 0:
            return
        op = torch.sigmoid(self.map.params["opacities"].detach())
        victims = torch.argsort(op)[:n]
        drop = torch.zeros(len(self.map), dtype=torch.bool, device=self.device)
        drop[victims[op[victims] < below]] = True
        self.map.remove(drop)
