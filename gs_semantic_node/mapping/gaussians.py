"""The Gaussian map: optimised parameters + per-Gaussian semantic state that rides along.

Parameters live in a ParameterDict with one Adam per tensor so gsplat.strategy.ops can grow,
split and remove Gaussians while keeping Adam's moments consistent. Semantic labels
(object id, confidence, per-object votes) live in gsplat's `state` dict, which those same ops
index, so children inherit their parent's labels and pruning keeps everything aligned.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from gsplat.strategy import ops as gs_ops

SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "features")


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    return (sh0 * SH_C0 + 0.5).clamp(0.0, 1.0)


class GaussianMap:
    def __init__(
        self, feature_dim: int = 16, device: str | torch.device = "cpu", lrs: dict | None = None, max_objects: int = 128
    ):
        self.device = torch.device(device)
        self.feature_dim = feature_dim
        self.max_objects = max_objects
        self.lock = threading.RLock()
        self.lrs = {"means": 1e-3, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 5e-3, "features": 1e-2}
        if lrs:
            self.lrs.update(lrs)

        def z(*s):
            return torch.zeros(*s, device=self.device)

        self.params = torch.nn.ParameterDict(
            {
                "means": z(0, 3),
                "quats": z(0, 4),
                "scales": z(0, 3),
                "opacities": z(0),
                "sh0": z(0, 3),
                "features": z(0, feature_dim),
            }
        )
        self.state: dict[str, torch.Tensor] = {
            "object_id": torch.zeros(0, dtype=torch.int32, device=self.device),
            "confidence": z(0),
            "votes": z(0, max_objects),
            "free_evidence": z(0),  # views that saw through it since one saw it (Mapper.carve)
            "appeared": z(0),  # 1: seeded where an earlier view saw free space (an object put there)
            "seen_from": z(0, 3),  # unit vector to the camera that seeded it (0: not known, e.g. loaded)
        }
        self._make_optimizers()

    # ------------------------------------------------------------------ basics
    def _make_optimizers(self):
        for p in self.params.values():
            p.requires_grad_(True)
        self.optimizers = {k: torch.optim.Adam([self.params[k]], lr=self.lrs[k], eps=1e-15) for k in PARAM_NAMES}

    def __len__(self) -> int:
        return int(self.params["means"].shape[0])

    @property
    def means(self):
        return self.params["means"]

    def activated(self) -> dict[str, torch.Tensor]:
        """Render-ready tensors (linear scales, [0,1] opacities, rgb)."""
        return {
            "means": self.params["means"],
            "quats": self.params["quats"],
            "scales": torch.exp(self.params["scales"]),
            "opacities": torch.sigmoid(self.params["opacities"]),
            "rgb": sh0_to_rgb(self.params["sh0"]),
            "features": self.params["features"],
        }

    # ------------------------------------------------------------------ growth
    @torch.no_grad()
    def append(
        self,
        means: torch.Tensor,
        rgb: torch.Tensor,
        scales: torch.Tensor,
        opacity: float | torch.Tensor = 0.7,
        quats: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        sh0: torch.Tensor | None = None,
        state: dict[str, torch.Tensor] | None = None,
    ):
        """Add Gaussians (optimizer moments start at zero for the new rows); identity rotation, small
        random features and no labels unless given (`sh0` replaces `rgb` when given)."""
        n = means.shape[0]
        if n == 0:
            return
        dev = self.device
        if quats is None:
            quats = torch.zeros(n, 4, device=dev)
            quats[:, 0] = 1
        quats = quats.to(dev).float()
        op = torch.as_tensor(opacity, dtype=torch.float64, device=dev).expand(n)
        new = {
            "means": means.to(dev).float(),
            "quats": quats,
            "scales": torch.log(scales.to(dev).float()),
            "opacities": torch.log(op / (1 - op)).float(),
            "sh0": rgb_to_sh0(rgb.to(dev).float()) if sh0 is None else sh0.to(dev).float(),
            "features": (
                0.01 * torch.randn(n, self.feature_dim, device=dev) if features is None else features.to(dev).float()
            ),
        }

        def param_fn(name, p):
            return torch.nn.Parameter(torch.cat([p, new[name]]), requires_grad=p.requires_grad)

        def optimizer_fn(key, v):
            return torch.cat([v, torch.zeros((n, *v.shape[1:]), device=dev)])

        # gsplat's own mechanism for editing params together with Adam state.
        gs_ops._update_param_with_optimizer(param_fn, optimizer_fn, self.params, self.optimizers)
        for k, v in self.state.items():  # new Gaussians start unlabelled (id 0, no votes) unless given
            add = (
                state[k].to(dev, v.dtype)
                if state and k in state
                else torch.zeros((n, *v.shape[1:]), dtype=v.dtype, device=dev)
            )
            self.state[k] = torch.cat([v, add])

    @torch.no_grad()
    def remove(self, mask: torch.Tensor):
        if bool(mask.any()):
            gs_ops.remove(self.params, self.optimizers, self.state, mask)

    @torch.no_grad()
    def split(self, mask: torch.Tensor):
        if bool(mask.any()):
            gs_ops.split(self.params, self.optimizers, self.state, mask)

    @torch.no_grad()
    def duplicate(self, mask: torch.Tensor):
        if bool(mask.any()):
            gs_ops.duplicate(self.params, self.optimizers, self.state, mask)

    # ------------------------------------------------------------------ snapshots
    @torch.no_grad()
    def snapshot(self) -> dict[str, np.ndarray]:
        """A consistent host copy for readers (queries, publishers, saving)."""
        with self.lock:
            a = self.activated()
            return {
                "means": a["means"].detach().cpu().numpy().copy(),
                "quats": a["quats"].detach().cpu().numpy().copy(),
                "scales": a["scales"].detach().cpu().numpy().copy(),
                "opacities": a["opacities"].detach().cpu().numpy().copy(),
                "rgb": a["rgb"].detach().cpu().numpy().copy(),
                "features": a["features"].detach().cpu().numpy().copy(),
                "object_id": self.state["object_id"].cpu().numpy().copy(),
                "confidence": self.state["confidence"].cpu().numpy().copy(),
                "seen_from": self.state["seen_from"].cpu().numpy().copy(),
            }

    @torch.no_grad()
    def load_arrays(self, arrays: dict[str, np.ndarray]):
        """Replace the whole map (used by map loading); optimizer state starts fresh."""
        with self.lock:
            dev = self.device

            def t(k):
                return torch.as_tensor(np.asarray(arrays[k]), dtype=torch.float32, device=dev)

            op = t("opacities").clamp(1e-6, 1 - 1e-6)
            self.feature_dim = int(arrays["features"].shape[1])
            self.params = torch.nn.ParameterDict(
                {
                    "means": t("means"),
                    "quats": t("quats"),
                    "scales": torch.log(t("scales").clamp(min=1e-9)),
                    "opacities": torch.log(op / (1 - op)),
                    "sh0": rgb_to_sh0(t("rgb")),
                    "features": t("features"),
                }
            )
            n = len(self)
            self.state["object_id"] = torch.as_tensor(arrays["object_id"], dtype=torch.int32, device=dev)
            self.state["confidence"] = t("confidence")
            votes = arrays.get("votes")
            self.state["votes"] = (
                torch.as_tensor(votes, dtype=torch.float32, device=dev)
                if votes is not None
                else torch.zeros(n, self.max_objects, device=dev)
            )
            self.state["free_evidence"] = torch.zeros(n, device=dev)
            self.state["appeared"] = torch.zeros(n, device=dev)
            self.state["seen_from"] = torch.zeros(n, 3, device=dev)
            self._make_optimizers()
