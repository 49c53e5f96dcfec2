import numpy as np
import pytest
import torch
from builders import plane_frame

from gs_semantic_node.config import MapperConfig
from gs_semantic_node.eval.metrics import evaluate_view
from gs_semantic_node.mapping.compaction import SPREAD, merge_groups, merge_in_voxels, rotmat_to_quat
from gs_semantic_node.mapping.gaussians import GaussianMap
from gs_semantic_node.mapping.mapper import Mapper
from gs_semantic_node.mapping.rasterizer import quat_to_rotmat


def test_rotmat_to_quat_inverts_quat_to_rotmat():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(5000, 4), dim=-1)
    q = torch.cat([q, torch.tensor([[0.0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]])])  # 180-degree turns, identity
    q = torch.where(q[:, :1] < 0, -q, q)
    back = rotmat_to_quat(quat_to_rotmat(q))
    assert torch.allclose(quat_to_rotmat(back), quat_to_rotmat(q), atol=1e-5)


def test_a_tiling_of_discs_merges_into_one_disc_in_their_plane():
    """Four 1 cm discs on the tilted plane z = y, side by side: one disc in the same plane, its centre
    their centroid, spread over the tiling (widened by SPREAD); colour averaged, votes added."""
    g = GaussianMap(16)
    n = torch.nn.functional.normalize(torch.tensor([0.0, -1.0, 1.0]), dim=0)  # plane normal
    e1, e2 = torch.tensor([1.0, 0.0, 0.0]), torch.nn.functional.normalize(torch.tensor([0.0, 1.0, 1.0]), dim=0)
    centres = torch.stack([a * e1 + b * e2 for a in (-0.01, 0.01) for b in (-0.01, 0.01)])
    centres = centres + torch.tensor([0.3, 0.2, 0.2])
    R = torch.stack([e1, e2, n], 1)  # disc axes: e1, e2, normal
    quats = rotmat_to_quat(R[None].repeat(4, 1, 1))
    rgb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]])
    g.append(centres, rgb, torch.tensor([[0.01, 0.01, 0.001]]).repeat(4, 1), opacity=0.9, quats=quats)
    g.state["votes"][:, 5] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    g.state["object_id"][:] = 5
    merge_groups(g, torch.arange(4), torch.zeros(4, dtype=torch.long))
    a = g.activated()
    assert len(g) == 1
    assert torch.allclose(a["means"][0], centres.mean(0), atol=1e-6)
    axes = quat_to_rotmat(a["quats"])[0]
    s = a["scales"][0]
    thin = axes[:, s.argmin()]
    assert abs(float(thin.detach() @ n)) > 0.999  # still in the plane
    in_plane = (1e-4 + SPREAD * 1e-4) ** 0.5  # own 1 cm + the members' 1 cm spread, widened
    assert s.min() < 0.002 and torch.allclose(s.sort().values[1:], torch.full((2,), in_plane), atol=1e-5)
    assert torch.allclose(a["rgb"][0], rgb.mean(0), atol=1e-5)
    assert float(g.state["votes"][0, 5]) == 10.0 and int(g.state["object_id"][0]) == 5


def test_merging_never_mixes_objects():
    g = GaussianMap(16)
    g.append(
        torch.tensor([[0.01, 0.0, 0.0], [0.02, 0.0, 0.0], [0.03, 0.0, 0.0], [0.04, 0.0, 0.0]]),
        torch.rand(4, 3),
        torch.full((4, 3), 0.005),
    )
    g.state["object_id"][:] = torch.tensor([1, 2, 1, 2], dtype=torch.int32)
    assert merge_in_voxels(g, 0.1) == 2
    assert sorted(g.state["object_id"].tolist()) == [1, 2]
    means = {int(o): float(x) for o, x in zip(g.state["object_id"], g.means.detach()[:, 0])}
    assert means == pytest.approx({1: 0.02, 2: 0.03})


@pytest.mark.parametrize("policy", ["merge", "evict"])
def test_a_map_over_its_cap_stays_under_it(policy):
    """A 1200-Gaussian plane under a 300 cap. Merging keeps the surface covered (coarser); evicting
    the least opaque leaves three quarters of it empty. Object labels stay on their own side, and a
    second view of new surface seeds at the coarsened resolution."""
    cfg = MapperConfig(width=80, height=60, iters_per_keyframe=0, max_gaussians=300, cap_policy=policy)
    m = Mapper(cfg)
    with torch.no_grad():
        m.seed(m.prepare(plane_frame(d=1.5)))
    m.map.state["object_id"][:] = torch.where(m.map.means[:, 0] < 0, 1, 2).int()
    m.enforce_cap()
    assert len(m.map) <= 300
    x = m.map.means.detach()[:, 0]
    assert ((x < 0) == (m.map.state["object_id"] == 1)).float().mean() > 0.97
    ev = evaluate_view(m, plane_frame(d=1.5))
    if policy == "evict":
        assert ev["coverage"] < 0.5 and m.resolution == 0
        return
    assert ev["coverage"] > 0.9 and ev["depth_l1"] < 0.02 and m.resolution > 0
    m.integrate(plane_frame(x=1.0, d=1.5))  # half of it new surface
    assert len(m.map) <= 300
    assert evaluate_view(m, plane_frame(x=1.0, d=1.5))["coverage"] > 0.9
    assert np.all(m.map.snapshot()["scales"].max(1) < 4 * m.resolution)


def test_cap_policy_is_checked():
    with pytest.raises(ValueError, match="cap_policy"):
        Mapper(MapperConfig(cap_policy="random"))
