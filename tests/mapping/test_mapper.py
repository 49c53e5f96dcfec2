import numpy as np
import pytest
import torch
from builders import plane_frame, tilted_frame

from gs_semantic_node.config import MapperConfig
from gs_semantic_node.eval.metrics import evaluate_view, observed
from gs_semantic_node.io.mapfile import MapFileError, load_map, save_map
from gs_semantic_node.mapping.mapper import Mapper, backproject
from gs_semantic_node.mapping.rasterizer import TorchRasterizer, make_rasterizer, quat_to_rotmat
from gs_semantic_node.types import Camera


def test_seeding_reproduces_the_depth_surface():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    m.integrate(plane_frame(d=1.5))
    z = m.map.means.detach()[:, 2].numpy()
    assert len(z) == 40 * 30 and np.allclose(z, 1.5, atol=1e-5)
    ev = evaluate_view(m, plane_frame(d=1.5))
    assert ev["depth_l1"] < 0.01 and ev["coverage"] > 0.95 and ev["psnr"] > 20
    # each Gaussian knows where the view that seeded it stood (what boxes.seen_side reads)
    to_cam = torch.as_tensor(plane_frame(d=1.5).T_world_cam[:3, 3], dtype=torch.float32) - m.map.means.detach()
    assert torch.allclose(m.map.state["seen_from"], to_cam / to_cam.norm(dim=1, keepdim=True), atol=1e-5)
    assert np.allclose(np.linalg.norm(m.map.snapshot()["seen_from"], axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("margin", [0.0, 0.015])
def test_a_small_object_on_a_mapped_surface_gets_its_own_gaussians(margin):
    """An object 3 cm tall stands where the map already has the table: under 5 % of a metre, only the
    absolute margin (mapper.seed_depth_margin, on by default) seeds it."""
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0, seed_depth_margin=margin))
    m.integrate(plane_frame(d=1.0))
    f = plane_frame(d=1.0)
    f.depth[20:30, 50:60] = 0.97  # put down after the first view
    n = m.seed(m.prepare(f))
    assert n == (100 if margin else 0)  # one seed per pixel of the object (mapper.seed_stride_front)


@pytest.mark.parametrize("grow", [0, 8])
def test_no_seeds_at_a_mapped_rim_or_within_the_depth_noise(grow):
    """At a mapped object's rim the render blends it with the table behind: a rendered depth behind the
    observed one there is no surface in front (the nearest rendered depth around the pixel is the object's).
    Nor is a surface a few millimetres off, inside the sensor's noise. Seeds grown down from surface in front
    (mapper.seed_grow_steps) do not start at a rim."""
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0, seed_grow_steps=grow))
    f = plane_frame(d=1.0)
    f.depth[20:30, 50:60] = 0.8
    m.integrate(f)
    g = plane_frame(d=1.0)
    g.depth[20:30, 50:60] = 0.8  # the same view again: nothing new
    kf = m.prepare(g)
    out = m.render(kf, detach_geometry=True)
    tol = m.cfg.seed_depth_margin + 3 * m.cfg.depth_noise * kf.depth**2
    assert int(((out.depth - kf.depth > tol) & (out.alpha >= m.cfg.seed_alpha)).sum()) > 10  # a per-pixel test
    assert m.seed(kf) < 3  # would seed the rim
    h = m.prepare(plane_frame(d=1.0))
    h.depth -= 0.004  # 4 mm: within 1.5 cm + 3 x the noise
    h.depth[20:30, 50:60] = 0.8
    assert m.seed(h) < 3


def test_optimisation_lowers_the_loss():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    m.integrate(plane_frame())
    kf = m.keyframes[-1]
    before = float(m.loss(kf))
    m.optimise(15)
    assert float(m.loss(kf)) < before


def test_center_depth_term_pulls_centres_onto_the_observed_surface():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    m.integrate(plane_frame(d=1.5))
    kf = m.keyframes[-1]
    with torch.no_grad():
        m.map.params["means"][:, 2] += 0.01  # everything 1 cm behind the surface
        m.map.params["means"][0, 2] += 0.2  # one far behind: occluded, not pulled
    m.map.params["means"].grad = None
    m.center_depth_loss(kf).backward()
    g = m.map.params["means"].grad[:, 2]
    assert (g[1:] > 0).all() and g[0] == 0  # descent moves them forward, not it


def test_oblique_surfaces_do_not_sink_behind_the_observed_depth():
    """Expected depth favours the nearer blended centres on an oblique plane, so its loss alone
    pushes centres behind the surface; the centre term holds them closer to it."""
    offsets = {}
    for name, cfg in {
        "expected depth only": MapperConfig(lambda_depth=0.5, lambda_center_depth=0.0),
        "defaults": MapperConfig(),
    }.items():
        torch.manual_seed(0)
        cfg.width, cfg.height, cfg.iters_per_keyframe = 40, 30, 0
        m = Mapper(cfg)
        m.integrate(tilted_frame())
        m.optimise(40)
        P = m.map.means.detach().numpy()
        offsets[name] = float(np.median(P[:, 2] - (1.0 + 1.2 * P[:, 1])))  # > 0: behind the plane
    assert offsets["expected depth only"] > 0.004, offsets
    assert offsets["defaults"] < 0.5 * offsets["expected depth only"], offsets


def test_seeded_discs_lie_in_an_oblique_plane_stretched_along_the_tilt():
    """Plane z = 1 + 1.2 y: each seed's thin axis is the plane's normal, its long axis the ray's
    direction within the plane, stretched by 1 / cos(view angle) over the cross axis."""
    m = Mapper(MapperConfig(width=40, height=30, iters_per_keyframe=0, max_scale=1.0))  # no cap on the stretch
    kf = m.prepare(tilted_frame())
    m.seed(kf)
    a = m.map.activated()
    R = quat_to_rotmat(a["quats"].detach())
    S = a["scales"].detach()
    P = a["means"].detach()
    n = torch.nn.functional.normalize(torch.tensor([0.0, -1.2, 1.0]), dim=0)
    ray = torch.nn.functional.normalize(P, dim=-1)  # camera at the origin
    cos = (ray @ n).abs()
    tilt = torch.nn.functional.normalize(ray - cos[:, None] * n, dim=-1)
    inner = (S[:, 2] < S[:, 1]).numpy()  # discs; the last seeded row and column lack a neighbour: spheres
    assert inner.sum() == 300 - 20 - 15 + 1
    assert ((R[:, :, 2] @ n).abs()[inner] > 0.999).all()
    assert ((R[:, :, 0] * tilt).sum(-1).abs()[inner] > 0.999).all()
    assert torch.allclose((S[:, 0] / S[:, 1])[inner], 1 / cos[inner], rtol=1e-3)
    m2 = Mapper(MapperConfig(width=40, height=30, iters_per_keyframe=0, seed_surfels=False))
    m2.seed(m2.prepare(tilted_frame()))
    assert torch.allclose(m2.map.activated()["scales"].detach().std(-1), torch.zeros(len(m2.map)), atol=1e-6)


def test_gradients_flow_through_cpu_reference():
    torch.manual_seed(0)
    n = 50
    means = (torch.randn(n, 3) * 0.3 + torch.tensor([0, 0, 2.0])).requires_grad_(True)
    quats = torch.randn(n, 4, requires_grad=True)
    scales = torch.full((n, 3), 0.05, requires_grad=True)
    op = torch.full((n,), 0.8, requires_grad=True)
    col = torch.rand(n, 3, requires_grad=True)
    K = np.array([[50, 0, 32], [0, 50, 24], [0, 0, 1.0]])
    out = TorchRasterizer().render(means, quats, scales, op, col, np.eye(4), K, 64, 48)
    assert out.colors.shape == (48, 64, 3) and float(out.alpha.max()) <= 1.0
    out.colors.sum().backward()
    for t in (means, quats, scales, op, col):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_backend_choice_and_clear_error_without_cuda():
    assert make_rasterizer("torch").name == "torch"
    if not torch.cuda.is_available():
        assert make_rasterizer("auto").name == "torch"
        with pytest.raises(RuntimeError, match="CUDA"):
            make_rasterizer("gsplat")


def test_prune_and_split_keep_labels_aligned():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    m.integrate(plane_frame())
    g = m.map
    n = len(g)
    g.state["object_id"] = torch.arange(n, dtype=torch.int32)
    g.state["votes"][:, 0] = torch.arange(n, dtype=torch.float32)
    tag = g.means.detach()[:, 0].clone()
    drop = torch.zeros(n, dtype=torch.bool)
    drop[::3] = True
    g.remove(drop)
    assert len(g) == n - int(drop.sum())
    ids = g.state["object_id"].long()
    assert torch.allclose(g.means.detach()[:, 0], tag[ids])
    assert torch.equal(g.state["votes"][:, 0].long(), ids)
    sel = torch.zeros(len(g), dtype=torch.bool)
    sel[:5] = True
    parents = g.state["object_id"][:5].clone()
    g.split(sel)
    assert torch.equal(g.state["object_id"][-10:], parents.repeat(2))  # children inherit their parent's id
    assert g.params["means"].shape[0] == g.state["object_id"].shape[0] == g.state["votes"].shape[0]


@pytest.mark.parametrize("split", [True, False])
def test_oversized_gaussians_are_split_not_dropped(split):
    torch.manual_seed(0)
    m = Mapper(
        MapperConfig(width=80, height=60, iters_per_keyframe=0, max_scale=0.05, split_large=split, seed_surfels=False)
    )
    m.integrate(plane_frame())
    g = m.map
    i = torch.arange(len(g))  # seeds: 30 rows x 40 columns, 0.03 m spheres 0.05 m apart
    g.remove(~((i // 40 % 2 == 0) & (i % 40 % 2 == 0)))
    n = len(g)
    assert n == 300
    with torch.no_grad():
        g.params["scales"][:] = np.log(0.08)  # a sparse map of big Gaussians that still covers the plane
        g.params["opacities"][:10] = -10.0  # ... and ten transparent ones
    g.state["object_id"] = torch.arange(n, dtype=torch.int32)
    before = evaluate_view(m, plane_frame())["coverage"]
    assert before > 0.95
    removed, n_split = m.prune_and_split()
    if not split:  # pruning drops them all
        assert removed == n and n_split == 0 and len(g) == 0
        return
    assert removed == 10
    assert n_split == n - 10 and len(g) == 2 * (n - 10)
    # each parent left two children with its id, 1/1.6 its size, none transparent
    assert torch.equal(g.state["object_id"].sort().values, torch.arange(10, n, dtype=torch.int32).repeat_interleave(2))
    assert torch.allclose(g.activated()["scales"], torch.full((len(g), 3), 0.08 / 1.6))
    assert bool((g.activated()["opacities"] > 0.5).all())
    assert evaluate_view(m, plane_frame())["coverage"] > before - 0.05  # the surface stays covered


def test_a_non_finite_gaussian_neither_crashes_nor_spreads():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    m.integrate(plane_frame())
    n = len(m.map)
    with torch.no_grad():
        m.map.params["means"][0] = float("nan")
        m.map.params["scales"][1] = 60.0  # exp(60) m: a runaway Gaussian
    m.optimise(6)  # used to raise in the centre-depth term's lookup
    assert bool(torch.isfinite(m.map.params["means"][2:]).all()) and bool(torch.isfinite(m.map.params["sh0"]).all())
    removed, _ = m.prune_and_split()
    assert removed == 2 and len(m.map) == n - 2 and bool(torch.isfinite(m.map.params["means"]).all())


def _arrays(n=30):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n, 4))
    return {
        "means": rng.normal(size=(n, 3)).astype(np.float32),
        "quats": (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
        "scales": rng.uniform(0.01, 0.05, (n, 3)).astype(np.float32),
        "opacities": rng.uniform(0.1, 0.9, n).astype(np.float32),
        "rgb": rng.uniform(0.1, 0.9, (n, 3)).astype(np.float32),
        "features": rng.normal(size=(n, 16)).astype(np.float32),
        "object_id": rng.integers(0, 5, n).astype(np.int32),
        "confidence": rng.random(n).astype(np.float32),
    }


def test_save_load_roundtrip_and_truncation_refused(tmp_path):
    a = _arrays()
    recs = {1: {"views": [(3.0, np.ones(4, np.float32))], "n_masks": 7, "last_seen": 2.5}}
    save_map(tmp_path / "m", a, recs, {"k": 1})
    b, r, meta = load_map(tmp_path / "m")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert meta == {"k": 1} and np.allclose(r[1]["views"][0][1], 1)
    assert r[1]["n_masks"] == 7 and r[1]["last_seen"] == 2.5
    raw = (tmp_path / "m.ply").read_bytes()
    (tmp_path / "m.ply").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MapFileError):
        load_map(tmp_path / "m")


def test_backproject_matches_pinhole():
    cam = Camera(100, 100, 10, 5, 21, 11)
    d = torch.full((11, 21), 2.0)
    P = backproject(d, cam, torch.eye(4))
    assert torch.allclose(P[5, 10], torch.tensor([0.0, 0.0, 2.0]))
    assert torch.allclose(P[5, 20], torch.tensor([0.2, 0.0, 2.0]))


def test_empty_map_saves_and_loads(tmp_path):
    a = {k: v[:0] for k, v in _arrays().items()}
    save_map(tmp_path / "empty", a, {})
    b, _, _ = load_map(tmp_path / "empty")
    assert len(b["means"]) == 0


def test_held_out_view_scores_the_surface_the_keyframes_saw():
    """A view 0.5 m to the side of the only keyframe shows a strip of plane the keyframe never saw:
    columns u >= 60 of 80 (world x > 0.9875 m; 59-60 straddle the edge). `psnr_observed` leaves it out."""
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    m.integrate(plane_frame(x=0.0, d=1.5))
    kf = m.prepare(plane_frame(x=0.5, d=1.5))
    seen = observed(m, kf).numpy()
    assert seen[:, :59].all() and not seen[:, 61:].any()
    ev = evaluate_view(m, plane_frame(x=0.0, d=1.5))
    assert ev["unseen_fraction"] == 0.0 and ev["psnr_observed"] == ev["psnr"]
    ev = evaluate_view(m, plane_frame(x=0.5, d=1.5))
    assert abs(ev["unseen_fraction"] - 0.25) < 0.02


def test_grown_map_keeps_every_object_in_place(tmp_path):
    from gs_semantic_node.eval.fixtures import grow_map

    a = _arrays()
    recs = {1: {"views": [(3.0, np.ones(4, np.float32))], "n_masks": 7, "last_seen": 2.5}}
    save_map(tmp_path / "m", a, recs)
    n0, n = len(a["means"]), 7 * len(a["means"]) + 3
    assert grow_map(tmp_path / "m", tmp_path / "big", n) == n
    b, r, meta = load_map(tmp_path / "big")
    assert len(b["means"]) == n and r.keys() == recs.keys() and meta["grown_to"] == n
    np.testing.assert_allclose(b["means"][:n0], a["means"], atol=1e-6)  # the originals first, unmoved
    for oid in np.unique(a["object_id"]):
        orig, grown = a["means"][a["object_id"] == oid], b["means"][b["object_id"] == oid]
        assert len(grown) > len(orig)
        # every copy lies near a Gaussian of its own object (within 3 sigma of the jitter)
        d = np.linalg.norm(grown[:, None] - orig[None], axis=-1).min(1)
        assert d.max() < 3 * 0.5 * np.sqrt(3) * a["scales"].max()
    save_map(tmp_path / "empty", {k: v[:0] for k, v in a.items()}, {})
    with pytest.raises(ValueError, match="no Gaussians"):
        grow_map(tmp_path / "empty", tmp_path / "x", 10)
