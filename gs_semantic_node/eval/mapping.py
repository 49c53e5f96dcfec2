"""`gs-semantic bench mapping`: the mapper alone on bags (simulator scenes, imported datasets, a
robot's recordings): frames integrated per second, held-out PSNR / depth L1 (every 5th frame kept from
the mapper), and how far the Gaussians sit from the true surfaces where the simulator's GT is there."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..config import MapperConfig
from ..mapping.mapper import Mapper
from ..offline import is_held_out, load_config
from .common import (
    _sync,
    device_name,
    load_frames,
    peak_gb,
    peak_reset,
    scenes,
    write_rows,
)
from .metrics import evaluate_view, heldout_summary, predict_view, surface_error


def bench_mapping(
    sim_dirs: list[Path],
    width: int,
    height: int,
    iters: int,
    held_out_every: int = 5,
    device: str = "auto",
    backend: str = "auto",
    seed_stride: int = 2,
    overrides: dict | None = None,
    frame_step: int = 1,
    topics=None,
    views_dir: Path | None = None,
    fit_steps: int = 0,
) -> list[dict]:
    """Mapper alone on simulator bags: frames integrated per second, held-out PSNR / depth L1, and
    how far the Gaussians sit from the true surfaces (what boxes are fitted to).

    frame_step k keeps every k-th frame, so one dense bag also gives the sparser stream (a 90-frame
    orbit at k=3 has the 30-frame orbit's spacing); held-out views are every `held_out_every`-th
    kept frame. fit_steps > 0 also scores each held-out view through the pose and camera response that
    fit it best (`metrics.fit_view`): a recorded pose's own error taken out."""
    rows = []
    for d in sim_dirs:
        frames = load_frames(d, topics)[:: max(1, frame_step)]
        is_held = [is_held_out(i, held_out_every) for i in range(len(frames))]
        held = [f for f, h in zip(frames, is_held) if h]  # never integrated: novel views
        train = [f for f, h in zip(frames, is_held) if not h]
        if not train:
            raise ValueError(f"{d}: no frame to map (the bag's topics are read as node.* names them: --params)")
        cfg = MapperConfig(
            width=width,
            height=height,
            iters_per_keyframe=iters,
            device=device,
            backend=backend,
            seed_stride=seed_stride,
        )
        for k, v in (overrides or {}).items():
            setattr(cfg, k, v)
        warm = Mapper(cfg)  # gsplat's JIT build and CUDA context happen here, untimed
        warm.integrate(train[0])
        m = Mapper(cfg)
        dev = m.device
        peak_reset(dev)
        _sync(dev)
        t0 = time.perf_counter()
        for f in train:
            m.integrate(f)
        _sync(dev)
        wall = time.perf_counter() - t0
        ev = [evaluate_view(m, f, fit_steps) for f in held]
        pictures = write_views(m, held, Path(d).name, views_dir) if views_dir else []
        rows.append(
            {
                "scene": Path(d).name,
                "device": device_name(dev),
                "backend": type(m.raster).__name__,
                "resolution": [m.keyframes[0].camera.width, m.keyframes[0].camera.height],
                "iters_per_keyframe": iters,
                "seed_stride": seed_stride,
                "seed_surfels": cfg.seed_surfels,
                "lr_means": cfg.lr_means,
                "lr_scales": cfg.lr_scales,
                "lambda_depth": cfg.lambda_depth,
                "lambda_center_depth": cfg.lambda_center_depth,
                "lambda_dssim": cfg.lambda_dssim,
                "exposure_compensation": cfg.exposure_compensation,
                "pose_refinement": cfg.pose_refinement,
                "depth_noise_weighting": cfg.depth_noise_weighting,
                "split_large": cfg.split_large,
                "frame_step": frame_step,
                "heldout_fit_steps": fit_steps,
                "max_gaussians": cfg.max_gaussians,
                "cap_policy": cfg.cap_policy,
                "map_resolution_m": m.resolution,
                "frames": len(train),
                "keyframes": len(m.keyframes),
                "frames_per_s": len(train) / wall,
                "ms_per_keyframe": 1e3 * wall / max(1, len(m.keyframes)),
                **heldout_summary(ev),
                "gaussians": len(m.map),
                "peak_mem_gb": peak_gb(dev),
                **surface_error(m, Path(d)),
                "pictures": pictures,
            }
        )
    return rows


@torch.no_grad()
def view_strip(m: Mapper, frame) -> np.ndarray:
    """One held-out view as ground truth | render | |error| (x4), side by side, at the working resolution."""
    kf, _, colors = predict_view(m, frame)
    gt, render = kf.rgb.cpu().numpy(), colors.cpu().numpy()
    err = np.repeat(np.clip(4 * np.abs(render - gt).mean(-1, keepdims=True), 0, 1), 3, -1)
    return (np.concatenate([gt, render, err], 1) * 255).astype(np.uint8)


def write_views(m: Mapper, held: list, scene: str, views_dir: Path, n: int = 3) -> list[str]:
    """PNG strips of up to n held-out views (first, middle, last) for a person to look at."""
    from PIL import Image

    views_dir.mkdir(parents=True, exist_ok=True)
    picks = sorted({0, len(held) // 2, len(held) - 1}) if len(held) >= n else range(len(held))
    names = []
    for i in list(picks)[:n]:
        img = Image.fromarray(view_strip(m, held[i]))
        img = img.resize((img.width * 2, img.height * 2), Image.NEAREST)
        name = f"{scene}_view{held[i].index}.png"
        img.save(views_dir / name)
        names.append(str(Path(views_dir.name) / name))
    return names


def write_report(out: Path, rows: list[dict]) -> None:
    """mapping.md next to mapping.json: the figures and, per scene, ground truth | render | error."""
    lines = ["# bench mapping", "", "Held-out views (never integrated): ground truth | render | |error| x4.", ""]
    for r in rows:
        lines += [
            f"## {r['scene']} ({r['resolution'][0]}x{r['resolution'][1]}, {r['iters_per_keyframe']} it/kf, "
            f"{r['device']})",
            "",
            f"held-out PSNR {r['heldout_psnr_db']:.2f} dB (seen pixels {r['heldout_psnr_observed_db']:.2f} dB"
            + (
                f"; pose and response fitted {r['heldout_psnr_fitted_db']:.2f} dB), "
                if "heldout_psnr_fitted_db" in r
                else "), "
            )
            + f"depth L1 {r['heldout_depth_l1_m']:.3f} m, {r['frames_per_s']:.2f} frames/s, "
            f"{r['ms_per_keyframe']:.0f} ms/keyframe, {r['gaussians']} Gaussians",
            "",
            *([f"parameters: `{' '.join(r['params'])}`", ""] if r.get("params") else []),
            *[f"![{p}]({p})" for p in r.get("pictures", [])],
            "",
        ]
    (out / "mapping.md").write_text("\n".join(lines))


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    W, H = a.width, a.height

    def flag(v):
        return None if v is None else bool(v)

    cfg = load_config(a.params, a.param)
    # a --params file's mapper settings and -p mapper.FIELD:=VALUE override any mapper setting; the
    # bench's own flags (resolution, iterations, device, seeding) keep theirs unless -p names them
    given = {o.split(":=", 1)[0].split(".", 1)[1] for o in a.param if o.startswith("mapper.")}
    flags = {"width", "height", "iters_per_keyframe", "device", "backend", "seed_stride"}
    defaults = MapperConfig()
    given |= {k for k in vars(defaults) if k not in flags and getattr(cfg.mapper, k) != getattr(defaults, k)}
    rows = bench_mapping(
        scenes(a, out),
        W,
        H,
        a.iters,
        views_dir=out / "views",
        device=a.device,
        seed_stride=a.seed_stride,
        frame_step=a.frame_step,
        topics=cfg.node,
        fit_steps=a.heldout_fit,
        overrides={k: getattr(cfg.mapper, k) for k in given}
        | {
            k: v
            for k, v in (
                ("lr_means", a.lr_means),
                ("lr_scales", a.lr_scales),
                ("lambda_depth", a.lambda_depth),
                ("lambda_center_depth", a.lambda_center_depth),
                ("seed_surfels", flag(a.seed_surfels)),
                ("split_large", flag(a.split_large)),
                ("max_gaussians", a.max_gaussians),
                ("cap_policy", a.cap_policy),
            )
            if v is not None
        },
    )
    cols = [
        "scene",
        "device",
        "backend",
        "resolution",
        "iters_per_keyframe",
        "seed_stride",
        "seed_surfels",
        "split_large",
        "lr_means",
        "lr_scales",
        "lambda_depth",
        "lambda_center_depth",
        "lambda_dssim",
        "exposure_compensation",
        "pose_refinement",
        "depth_noise_weighting",
        "frame_step",
        "keyframes",
        "frames_per_s",
        "ms_per_keyframe",
        "heldout_psnr_db",
        "heldout_psnr_observed_db",
        "heldout_psnr_fitted_db",
        "heldout_unseen_fraction",
        "heldout_depth_l1_m",
        "surface_dist_mm_p50",
        "table_top_offset_mm",
        "max_gaussians",
        "cap_policy",
        "map_resolution_m",
        "gaussians",
        "peak_mem_gb",
    ]
    for r in rows:
        r["params"] = [*([f"--params {a.params}"] if a.params else []), *a.param]  # node.* ones (time offsets) too
    write_report(out, rows)
    return write_rows(out, "mapping", rows, cols)
