"""`gs-semantic bench mapping|perception|lift|latency`: the speed figures that matter on a GPU.

They run on CPU too (small sizes, tiny random models) so the same code is smoke-tested in CI.
Timings synchronise the device around each measured call and exclude one-off costs (gsplat's
JIT build, model construction) through a warm-up call. SAM/CLIP timings use randomly
initialised weights: their cost does not depend on the weights, but how many masks survive the
score filters does, so the perception bench reports mask counts beside every time and runs a
"keep-all" setting where no filter removes anything.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .offline import is_held_out
from .config import DEFAULT_VOCABULARY, MapperConfig, QueryConfig, SemanticsConfig
from .mapping.mapper import Mapper, backproject, resolve_device
from .perception.base import Mask, l2n
from .sim.generate import load_gt


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
        return torch.cuda.max_memory_allocated(dev) / 2 ** 30
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def load_frames(sim_dir: Path, topics=None) -> list:
    """Frames of a bag folder (or a folder holding `bag/`), topics from a NodeConfig."""
    from .io.bags import read_frames
    return list(read_frames(sim_dir, topics))


# ------------------------------------------------------------------ mapping
def bench_mapping(sim_dirs: list[Path], width: int, height: int, iters: int, held_out_every: int = 5,
                  device: str = "auto", backend: str = "auto", seed_stride: int = 2, overrides: dict | None = None,
                  frame_step: int = 1, topics=None) -> list[dict]:
    """Mapper alone on simulator bags: frames integrated per second, held-out PSNR / depth L1, and
    how far the Gaussians sit from the true surfaces (what boxes are fitted to).

    frame_step k keeps every k-th frame, so one dense bag also gives the sparser stream (a 90-frame
    orbit at k=3 has the 30-frame orbit's spacing); held-out views are every `held_out_every`-th
    kept frame."""
    rows = []
    for d in sim_dirs:
        frames = load_frames(d, topics)[::max(1, frame_step)]
        is_held = [is_held_out(i, held_out_every) for i in range(len(frames))]
        held = [f for f, h in zip(frames, is_held) if h]          # never integrated: novel views
        train = [f for f, h in zip(frames, is_held) if not h]
        if not train:
            raise ValueError(f"{d}: no frame to map (the bag's topics are read as node.* names them: --params)")
        cfg = MapperConfig(width=width, height=height, iters_per_keyframe=iters, device=device, backend=backend,
                           seed_stride=seed_stride)
        for k, v in (overrides or {}).items():
            setattr(cfg, k, v)
        warm = Mapper(cfg)                 # gsplat's JIT build and CUDA context happen here, untimed
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
        ev = [m.evaluate(f) for f in held]
        rows.append({"scene": Path(d).name, "device": device_name(dev), "backend": type(m.raster).__name__,
                     "resolution": [m.keyframes[0].camera.width, m.keyframes[0].camera.height],
                     "iters_per_keyframe": iters, "seed_stride": seed_stride, "seed_surfels": cfg.seed_surfels,
                     "lr_means": cfg.lr_means, "lr_scales": cfg.lr_scales, "lambda_depth": cfg.lambda_depth,
                     "lambda_center_depth": cfg.lambda_center_depth, "split_large": cfg.split_large,
                     "frame_step": frame_step, "max_gaussians": cfg.max_gaussians, "cap_policy": cfg.cap_policy,
                     "map_resolution_m": m.resolution, "frames": len(train),
                     "keyframes": len(m.keyframes),
                     "frames_per_s": len(train) / wall, "ms_per_keyframe": 1e3 * wall / max(1, len(m.keyframes)),
                     **heldout_summary(ev),
                     "gaussians": len(m.map), "peak_mem_gb": peak_gb(dev),
                     **_surface_error(m, Path(d))})
    return rows


def heldout_summary(ev: list[dict]) -> dict:
    """Means of Mapper.evaluate over the held-out views (never integrated)."""
    mean = lambda k: float(np.nanmean([e[k] for e in ev])) if ev else float("nan")  # noqa: E731
    return {"heldout_frames": len(ev), "heldout_psnr_db": mean("psnr"), "heldout_psnr_observed_db": mean("psnr_observed"),
            "heldout_unseen_fraction": mean("unseen_fraction"), "heldout_depth_l1_m": mean("depth_l1")}


def _surface_error(m: Mapper, d: Path) -> dict:
    gt = load_gt(d) if (d / "gt.json").exists() else {}
    if "surface_points" not in gt:        # gt.npz left out (the device carries scenes without it)
        return {}
    from .semantics.metrics import surface_distance, table_top_offset
    means = m.map.means.detach().cpu().numpy()
    dist = surface_distance(means, gt)
    return {"surface_dist_mm_p50": 1e3 * float(np.median(dist)), "surface_dist_mm_p90": 1e3 * float(np.percentile(dist, 90)),
            "table_top_offset_mm": 1e3 * table_top_offset(means, gt)}


# ------------------------------------------------------------------ perception
def _rect_masks(W: int, H: int, n: int, seed: int = 0) -> list[Mask]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = int(rng.integers(W // 20, W // 4)), int(rng.integers(H // 20, H // 4))
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        m = np.zeros((H, W), bool)
        m[y:y + h, x:x + w] = True
        out.append(Mask(m, 1.0, "object"))
    return out


def _random_sam(model_type: str):
    if model_type == "tiny":
        from .perception.sam import tiny_sam
        return tiny_sam(64)
    from segment_anything import sam_model_registry
    return sam_model_registry[model_type](checkpoint=None)     # random init: timing only


def _random_clip(model_name: str, dev: torch.device):
    import open_clip
    if model_name == "tiny":
        from .perception.clip import register_tiny_clip
        model_name = register_tiny_clip()
    model, _, pre = open_clip.create_model_and_transforms(model_name, pretrained=None, device=dev)
    from .perception.clip import ClipEmbedder
    return ClipEmbedder(model.eval(), pre, open_clip.get_tokenizer(model_name), device=str(dev))


def _encoder_rows(rows, sam, model_type: str, frame, dev, repeats: int) -> None:
    """SAM's image encoder alone, with stock and with fused attention (the generators run fused)."""
    from .perception.sam import SamMaskGenerator
    for attention in ("stock", "sdpa"):
        enc = SamMaskGenerator(sam, str(dev), attention=attention)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=enc.bf16):
            te, _ = timed(lambda: enc.predictor.set_image(frame.rgb), dev, repeats)
        rows.append({"what": f"SAM {model_type} image encoder alone ({enc.bf16 and 'bf16' or 'fp32'}, "
                             f"{attention} attention)", "ms": float(np.median(te))})


def bench_perception(frame, sam_models: list[str], clip_model: str, device: str = "auto", repeats: int = 3,
                     clip_masks: int = 40, stock: bool = True, stock_keep_all: bool = False, report=None,
                     encoder_only: bool = False) -> list[dict]:
    """Per keyframe: our SAM generator (device-side filtering + NMS, batched prompts) vs the stock
    SamAutomaticMaskGenerator, and CLIP per mask, on one 640x480 frame (`encoder_only`: SAM's image
    encoder rows alone, which a CPU runs in minutes)."""
    from segment_anything import SamAutomaticMaskGenerator

    from .perception.sam import SamMaskGenerator
    from .perception.sam_attention import set_sam_attention
    dev = resolve_device(device)
    rows = _Rows(report, device_name(dev))
    if encoder_only:
        for mt in sam_models:
            _encoder_rows(rows, _random_sam(mt).to(dev).eval(), mt, frame, dev, repeats)
        return list(rows)
    H, W = frame.rgb.shape[:2]
    # what a running map projects into a keyframe: one box per object already known (GT instances)
    inst = frame.gt_instances
    known = None
    if inst is not None:
        boxes = [Mask(inst == i, 1.0).bbox() for i in np.unique(inst) if i > 2 and (inst == i).sum() >= 50]
        known = np.array(boxes, np.float32) if boxes else None
    clip = _random_clip(clip_model, dev)
    cmasks = _rect_masks(W, H, clip_masks)
    ts, _ = timed(lambda: clip.embed_masks(frame, cmasks), dev, repeats)
    clip_ms = float(np.median(ts))
    rows.append({"what": f"CLIP {clip_model} ({len(clip.scales)} crops/mask)", "masks": clip_masks,
                 "ms": clip_ms, "ms_per_mask": clip_ms / clip_masks})
    settings = {"default filters": (0.88, 0.95), "keep-all": (-1e9, 0.0)}
    sams = {}
    for sname, (iou_t, stab_t) in settings.items():      # every model's default row before any keep-all row
        for mt in sam_models:
            sam = sams.setdefault(mt, _random_sam(mt).to(dev).eval())
            if sname == "default filters":
                _encoder_rows(rows, sam, mt, frame, dev, repeats)
            for pps in (32, 16):
                gen = SamMaskGenerator(sam, str(dev), points_per_side=pps, pred_iou_thresh=iou_t,
                                       stability_thresh=stab_t, map_guided=False)
                ts, masks = timed(lambda: gen.generate(frame), dev, repeats)
                rows.append({"what": f"SAM {mt} ours ({pps}x{pps} points, {gen.bf16 and 'bf16' or 'fp32'})",
                             "filters": sname, "ms": float(np.median(ts)), "masks": len(masks)})
                if pps == 16 and known is not None:
                    guided = SamMaskGenerator(sam, str(dev), points_per_side=pps, pred_iou_thresh=iou_t,
                                              stability_thresh=stab_t, map_guided=True)
                    tg, gm = timed(lambda: guided.generate(frame, known), dev, repeats)
                    rows.append({"what": f"SAM {mt} ours, map-guided ({len(known)} known-object boxes + "
                                         f"{len(guided.grid(W, H, known))} grid points)",
                                 "filters": sname, "ms": float(np.median(tg)), "masks": len(gm)})
                if pps == 16 and sname == "default filters":
                    full = lambda: clip.embed_masks(frame, gen.generate(frame) or cmasks[:1])  # noqa: E731
                    tf, _ = timed(full, dev, repeats)
                    rows.append({"what": f"full perception: SAM {mt} ours 16x16 + CLIP on its masks "
                                         f"(one stand-in mask when none survive)",
                                 "filters": sname, "ms": float(np.median(tf)), "masks": len(masks)})
            if stock and (sname != "keep-all" or stock_keep_all):      # stock keep-all: over a minute per call
                set_sam_attention(sam, "stock")
                gen = SamAutomaticMaskGenerator(sam, points_per_side=32, pred_iou_thresh=iou_t,
                                                stability_score_thresh=stab_t)
                n = 1 if sname == "keep-all" else repeats       # the stock path is slow: few calls
                ts, masks = timed(lambda: gen.generate(frame.rgb), dev, n, warmup=0)
                rows.append({"what": f"SAM {mt} stock SamAutomaticMaskGenerator (32x32, fp32)", "filters": sname,
                             "ms": float(np.median(ts)), "masks": len(masks)})
    return list(rows)


class _Rows(list):
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


# ------------------------------------------------------------------ lifting
def synthetic_map(frame, n: int, width: int, height: int, device: str = "auto", seed: int = 0):
    """A mapper holding `n` Gaussians on the frame's observed surface (jittered copies of its
    back-projected depth), plus the frame as a keyframe: lifting cost at a chosen map size."""
    cfg = MapperConfig(width=width, height=height, device=device, max_gaussians=max(n, 1))
    m = Mapper(cfg, seed=seed)
    kf = m.prepare(frame)
    pts = backproject(kf.depth, kf.camera, kf.T_world_cam)[kf.depth > 0]
    rgb = kf.rgb[kf.depth > 0]
    g = torch.Generator(device=m.device).manual_seed(seed)
    idx = torch.randint(0, pts.shape[0], (n,), generator=g, device=m.device)
    jitter = torch.randn(n, 3, generator=g, device=m.device) * 0.003
    scales = torch.full((n, 3), 0.004, device=m.device)
    m.map.append(pts[idx] + jitter, rgb[idx], scales, opacity=0.9)
    m.keyframes.append(kf)
    return m, kf


def grow_map(src: str | Path, dst: str | Path, n: int, seed: int = 0) -> int:
    """Save a copy of a map grown to n Gaussians (the service load test at the issue's map sizes).
    Copies are jittered by half their parent's size and carry its object id, votes, features and
    confidence, so every object keeps its place and label; object records are unchanged."""
    from .io.mapfile import load_map, save_map
    arrays, records, meta = load_map(src)
    m = len(arrays["means"])
    if m == 0:
        raise ValueError(f"{src} holds no Gaussians to grow")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([np.arange(min(m, n)), rng.integers(0, m, max(0, n - m))])
    out = {k: np.asarray(v)[idx] for k, v in arrays.items()}
    copies = np.arange(n) >= m
    jitter = rng.normal(size=(int(copies.sum()), 3)) * 0.5 * out["scales"][copies]
    out["means"] = out["means"].astype(np.float32)
    out["means"][copies] += jitter.astype(np.float32)
    save_map(dst, out, records, {**meta, "grown_from": str(src), "grown_to": n})
    return n


def random_clip_checkpoint(model: str, out: Path) -> Path:
    """A randomly initialised open_clip checkpoint on disk, loaded by the node's real loading code
    (no weights can be downloaded here; the cost of encoding text does not depend on them)."""
    import open_clip
    path = out / f"random_{model}.pt"
    if not path.is_file():
        m = open_clip.create_model(model, pretrained=None)
        torch.save(m.state_dict(), path)
    return path


def bench_lift(frame, sizes: list[int], width: int, height: int, n_masks: int = 40, device: str = "auto",
               repeats: int = 5, emb_dim: int = 512) -> list[dict]:
    """One keyframe's lifting as `SemanticMappingPipeline.lift` runs it: semantic tracing, the
    registry's vote update and the contrastive feature steps (the refresh runs every
    `semantics.refresh_every` keyframes, not per keyframe, and is not timed here)."""
    from .semantics.features import distill
    from .semantics.lifting import mask_weights
    from .semantics.registry import ObjectRegistry
    rows = []
    rng = np.random.default_rng(0)
    sc = SemanticsConfig()
    for n in sizes:
        m, kf = synthetic_map(frame, n, width, height, device)
        dev = m.device
        masks = [mk.mask for mk in _rect_masks(width, height, n_masks)]
        emb = l2n(rng.normal(size=(n_masks, emb_dim)).astype(np.float32))
        reg = ObjectRegistry(sc, lambda t: l2n(rng.normal(size=(len(t), emb_dim)).astype(np.float32)))
        tw, Wt = timed(lambda: mask_weights(m, kf, masks), dev, repeats)
        tu, _ = timed(lambda: reg.update(m.map, Wt, emb, 0.0, [int(x.sum()) for x in masks]), dev, repeats)
        td, _ = timed(lambda: distill(m, kf, masks, sc.feature_iters, sc.feature_pixels, sc.feature_temperature),
                      dev, repeats)
        parts = {"trace_ms": float(np.median(tw)), "registry_update_ms": float(np.median(tu)),
                 "distill_ms": float(np.median(td))}
        rows.append({"gaussians": len(m.map), "resolution": [width, height], "masks": n_masks, **parts,
                     "distill_iters": sc.feature_iters, "lift_ms": sum(parts.values()), "device": device_name(dev),
                     "backend": type(m.raster).__name__})
        del m, kf, Wt
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------ query latency
PHRASES = ["grab the {}", "pick up the {}", "where is the {}?", "bring me the {} please", "the {} next to the bowl"]
ATTRS = ["", "red ", "small ", "white ", "big ", "green ", "metal ", "wooden "]
MORE = ["", "shiny ", "old ", "plastic ", "blue ", "tiny ", "dirty ", "striped ", "empty ", "heavy "]


def instructions(n: int, vocab: list[str] | None = None) -> list[str]:
    """n instructions whose target phrases all differ (up to 18,000 with the default vocabulary),
    phrased five ways in turn. Text caches are keyed by the target phrase, so each one is new to
    the cache and timing them times the text encoder too."""
    vocab = vocab or DEFAULT_VOCABULARY
    targets = dict.fromkeys(m + b + a + v for m in MORE for b in ATTRS for a in ATTRS for v in vocab if b != a or not b)
    return [PHRASES[i % len(PHRASES)].format(t) for i, t in zip(range(n), targets)]


def synthetic_objects(n_gaussians: int, n_objects: int, dim: int, seed: int = 0) -> list:
    from .types import OrientedBox, SemanticObject
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n_gaussians), n_objects - 1, replace=False))
    parts = np.split(np.arange(n_gaussians), cuts)
    objs = []
    for i, idx in enumerate(parts):
        c = rng.uniform(-1, 1, 3)
        objs.append(SemanticObject(i, "object", 0.9, is_background=(i == 0), obb=OrientedBox(c, np.eye(3), np.full(3, 0.1)),
                                   centroid=c, num_gaussians=len(idx), gaussian_indices=idx,
                                   embedding=l2n(rng.normal(size=dim).astype(np.float32))))
    return objs


def bench_latency(n_gaussians: int, n_objects: int, embedder, queries: int = 300, vocab: list[str] | None = None
                  ) -> dict:
    """In-process `QueryEngine.query` on a map of n_gaussians split into n_objects (text encoding
    included: cold = each phrase new to the cache, warm = cached)."""
    from .query.engine import QueryEngine
    dim = embedder.embed_text(["x"]).shape[1]
    objs = synthetic_objects(n_gaussians, n_objects, dim)
    eng = QueryEngine(QueryConfig(), embedder.embed_text)
    texts = instructions(queries, vocab)
    eng.query(texts[0], objs)        # negatives + first encode, untimed
    res = {}
    for name, batch in (("cold", texts[1:]), ("warm", texts[1:])):
        lat = []
        for q in batch:
            t = time.perf_counter()
            eng.query(q, objs)
            lat.append(1e3 * (time.perf_counter() - t))
        res[name] = {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                     "queries": len(lat)}
    return {"gaussians": n_gaussians, "objects": n_objects, **res}


# ------------------------------------------------------------------ CLI
def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return (f"{v:.2f}" if abs(v) >= 0.01 else f"{v:.1e}") if isinstance(v, float) else str(v)
    lines = [" | ".join(cols)] + [" | ".join(fmt(r.get(c, "")) for c in cols) for r in rows]
    return "\n".join(lines)


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    def scenes() -> list[Path]:
        if a.sim_dirs:            # pre-rendered scenes: a GPU box need not have MuJoCo
            return [Path(d) for d in a.sim_dirs.split(",") if d]
        from .bench import _scene
        return [_scene(int(s), a.frames, out) for s in a.seeds.split(",") if s]
    W, H = a.width, a.height
    a.clip_model = a.clip_model or "ViT-B-16"
    if a.kind == "mapping":
        flag = lambda v: None if v is None else bool(v)  # noqa: E731
        from .offline import load_config
        rows = bench_mapping(scenes(), W, H, a.iters, device=a.device, seed_stride=a.seed_stride,
                             frame_step=a.frame_step, topics=load_config(a.params, a.param).node,
                             overrides={k: v for k, v in (("lr_means", a.lr_means), ("lr_scales", a.lr_scales),
                                                          ("lambda_depth", a.lambda_depth),
                                                          ("lambda_center_depth", a.lambda_center_depth),
                                                          ("seed_surfels", flag(a.seed_surfels)),
                                                          ("split_large", flag(a.split_large)),
                                                          ("max_gaussians", a.max_gaussians),
                                                          ("cap_policy", a.cap_policy))
                                        if v is not None})
        cols = ["scene", "device", "backend", "resolution", "iters_per_keyframe", "seed_stride", "seed_surfels",
                "split_large", "lr_means", "lr_scales", "lambda_depth", "lambda_center_depth", "frame_step",
                "keyframes", "frames_per_s",
                "ms_per_keyframe", "heldout_psnr_db", "heldout_psnr_observed_db", "heldout_unseen_fraction",
                "heldout_depth_l1_m", "surface_dist_mm_p50", "table_top_offset_mm", "max_gaussians", "cap_policy",
                "map_resolution_m", "gaussians", "peak_mem_gb"]
    elif a.kind == "perception":
        frame = load_frames(scenes()[0])[0]
        rows = bench_perception(frame, a.sam_models.split(","), a.clip_model, a.device, a.repeats,
                                stock_keep_all=a.stock_keep_all, encoder_only=a.encoder_only,
                                report=lambda r: (out / "perception.json").write_text(json.dumps(r, indent=1)))
        cols = ["what", "filters", "ms", "masks", "ms_per_mask", "device"]
    elif a.kind == "lift":
        frame = load_frames(scenes()[0])[0]
        rows = bench_lift(frame, [int(x) for x in a.sizes.split(",")], W, H, device=a.device, repeats=a.repeats)
        cols = ["gaussians", "resolution", "masks", "trace_ms", "registry_update_ms", "distill_ms", "lift_ms", "device",
                "backend"]
    else:   # latency
        dev = resolve_device(a.device)
        emb = _random_clip(a.clip_model, dev) if a.clip_model != "text_proxy" else None
        if emb is None:
            from .perception.oracle import TextProxyEmbedder
            emb = TextProxyEmbedder(None)
        rows = [dict(bench_latency(int(n), a.objects, emb), device=device_name(dev), text_encoder=a.clip_model)
                for n in a.sizes.split(",")]
        rows = [{**{k: v for k, v in r.items() if k not in ("cold", "warm")},
                 **{f"{k}_{m}": r[k][m] for k in ("cold", "warm") for m in ("p50_ms", "p99_ms")}} for r in rows]
        cols = ["gaussians", "objects", "text_encoder", "cold_p50_ms", "cold_p99_ms", "warm_p50_ms", "warm_p99_ms",
                "device"]
    (out / f"{a.kind}.json").write_text(json.dumps(rows, indent=1))
    print(_table(rows, cols))
    return 0
