"""Lifting, registry and boxes on small synthetic and simulated scenes."""

import numpy as np
import pytest
import torch

from gs_semantic_node.config import Config, MapperConfig, SemanticsConfig
from gs_semantic_node.mapping.mapper import Mapper
from gs_semantic_node.semantics.boxes import (
    box_iou,
    clean_points,
    fit_box,
    front_circle,
    grow_sides,
    mirror_back,
    seen_side,
)
from gs_semantic_node.semantics.lifting import mask_weights
from gs_semantic_node.semantics.refinement import peel_support
from gs_semantic_node.semantics.registry import ObjectRegistry
from gs_semantic_node.types import Camera, Frame, OrientedBox


def two_region_frame():
    cam = Camera(60, 60, 39.5, 29.5, 80, 60)
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[:, :40] = 200
    return Frame(rgb, np.full((60, 80), 1.5, np.float32), cam, np.eye(4), 0.0, 0)


def test_lifting_weights_are_compositing_contributions():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    kf = m.integrate(two_region_frame())
    left = np.zeros((60, 80), bool)
    left[:, :40] = True
    W = mask_weights(m, kf, [left, ~left])
    x = m.map.means.detach()[:, 0].numpy()
    assert W.shape == (len(m.map), 3)
    assert torch.all(W >= -1e-6)
    lw, rw = W[:, 1].numpy(), W[:, 2].numpy()
    assert (lw[x < -0.1] > rw[x < -0.1]).all() and (rw[x > 0.1] > lw[x > 0.1]).all()
    # total weight equals the rendered alpha summed over the image (one backward pass = exact)
    out = m.render(kf, detach_geometry=True)
    assert float(W.sum()) == pytest.approx(float(out.alpha.sum()), rel=1e-4)


def test_registry_gives_every_gaussian_one_object():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    kf = m.integrate(two_region_frame())
    left = np.zeros((60, 80), bool)
    left[:, :40] = True
    emb = np.eye(4, dtype=np.float32)[:2]
    reg = ObjectRegistry(SemanticsConfig(), embed_text=lambda t: np.tile(np.eye(4, dtype=np.float32)[2], (len(t), 1)))
    for _ in range(2):
        W = mask_weights(m, kf, [left, ~left])
        ids = reg.update(m.map, W, emb, 0.0)
    assert ids[0] != ids[1] and min(ids) > 0
    obj = m.map.state["object_id"].numpy()
    x = m.map.means.detach()[:, 0].numpy()
    assert set(np.unique(obj)) <= {0, ids[0], ids[1]}
    assert (obj[x < -0.05] == ids[0]).mean() > 0.95 and (obj[x > 0.05] == ids[1]).mean() > 0.95
    # a mask that holds most of both objects (SAM merging neighbours) votes for neither
    W = mask_weights(m, kf, [np.ones((60, 80), bool)])
    assert reg.update(m.map, W, emb[:1], 1.0) == [-1]


def test_a_whole_mask_over_the_parts_one_view_founded_joins_them():
    """A thing put down late whose first view split it in two masks: the next view's whole mask is the
    thing, not SAM merging two known neighbours (neither part has a second view yet)."""
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    kf = m.integrate(two_region_frame())
    left = np.zeros((60, 80), bool)
    left[:, :40] = True
    e = np.eye(4, dtype=np.float32)[1]
    reg = ObjectRegistry(SemanticsConfig(), embed_text=lambda t: np.tile(np.eye(4, dtype=np.float32)[2], (len(t), 1)))
    parts = reg.update(m.map, mask_weights(m, kf, [left, ~left]), np.stack([e, e]), 0.0)
    whole = np.ones((60, 80), bool)
    joined = [reg.update(m.map, mask_weights(m, kf, [whole]), e[None], 1.0 + i)[0] for i in range(2)]
    assert min(parts) > 0 and joined[0] in parts and joined == [joined[0]] * 2, (parts, joined)


def test_a_mask_on_a_young_thing_joins_it_however_many_of_its_gaussians_are_fresh():
    """An object put down late: its record holds the Gaussians one mask voted for, and the next view
    seeded three times as many in front of it. The next mask is that object, not a new one."""
    m = gaussians_at(np.random.default_rng(0).uniform(-0.03, 0.03, (100, 3)).astype(np.float32))
    e = np.eye(4, dtype=np.float32)
    m.state["votes"][:25, 1] = 1.0  # the first view's record; Gaussians 25-99 are fresh
    reg = registry_with([(1, e[1], 1)])
    W = torch.zeros(100, 2)
    W[:, 1] = 1.0
    assert reg.update(m, W, e[1][None], 1.0) == [1]


def test_a_thing_on_a_table_keeps_one_object_and_misread_table_masks_vote_for_none():
    """The table's votes dominate a small thing's Gaussians (dilated table masks); the thing's masks
    must still gather into one object, view after view, and a table mask read as the thing is ignored."""
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0))
    kf = m.integrate(two_region_frame())
    thing = np.zeros((60, 80), bool)
    thing[25:35, 35:45] = True
    table, e_thing = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    reg = ObjectRegistry(SemanticsConfig(), embed_text=lambda t: np.tile(np.eye(4, dtype=np.float32)[2], (len(t), 1)))
    everything = np.ones((60, 80), bool)
    for _ in range(4):  # table masks bleeding over the thing
        reg.update(m.map, mask_weights(m, kf, [everything]), table[None], 0.0)
    ids = [reg.update(m.map, mask_weights(m, kf, [thing]), e_thing[None], 1.0 + i)[0] for i in range(3)]
    assert ids[0] > 0 and ids == [ids[0]] * 3, ids
    assert len(reg.records) == 2
    assert reg.update(m.map, mask_weights(m, kf, [everything]), e_thing[None], 5.0) == [-1]
    assert len(reg.records) == 2


def gaussians_at(pts: np.ndarray):
    """A grey map of 4 mm Gaussians at the given centres."""
    from gs_semantic_node.mapping.gaussians import GaussianMap

    m = GaussianMap(4, "cpu")
    m.append(torch.as_tensor(pts), torch.full((len(pts), 3), 0.5), torch.full((len(pts), 3), 0.004))
    return m


def table_with_things(centres, seed=0):
    """Table grid (hidden under the things) + 5 x 5 x 5 cm things: map, per-thing Gaussian masks."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(np.linspace(-0.3, 0.3, 31), np.linspace(-0.3, 0.3, 31)), -1).reshape(-1, 2)
    for c in centres:
        g = g[np.abs(g - c).max(1) > 0.035]
    parts = [np.c_[g, np.zeros(len(g))]]
    parts += [np.c_[rng.uniform(-0.025, 0.025, (150, 2)) + c, rng.uniform(0.0, 0.05, 150)] for c in centres]
    pts = np.concatenate(parts).astype(np.float32)
    m = gaussians_at(pts)
    owner = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)])  # 0 table, k thing k
    return m, pts, owner, rng


def registry_with(records: list, merge_vote_cosine: float = 0.3, stuff_vote_weight: float | None = None):
    from gs_semantic_node.semantics.registry import ObjectRecord

    e = np.eye(4, dtype=np.float32)

    def vocab(texts):
        return np.stack([e[0] if t == "table" else e[3] for t in texts])

    cfg = SemanticsConfig(merge_vote_cosine=merge_vote_cosine)
    if stuff_vote_weight is not None:
        cfg.stuff_vote_weight = stuff_vote_weight
    reg = ObjectRegistry(cfg, embed_text=vocab)
    for oid, emb, n in records:
        reg.records[oid] = ObjectRecord(oid, [(1.0, emb)], 0.0, n)
    return reg


@pytest.mark.parametrize("vote_merge", [True, False])
def test_a_thing_read_as_two_classes_is_still_one_object(vote_merge):
    """A butter read as "butter" in some views and "a small yellow box" in others has two records
    whose votes each lose to the table's dilated masks (tuning seed 4: 402 and 314 vs 537 on its
    Gaussians); masks that voted for the same Gaussians make it one object."""
    m, pts, owner, rng = table_with_things([(0.0, 0.0)])
    on_thing = owner == 1
    votes = m.state["votes"]
    votes[:, 1] = 5.0  # table masks cover everything
    for k in (2, 3):
        votes[torch.as_tensor(on_thing), k] = torch.as_tensor(rng.uniform(2, 4, on_thing.sum()), dtype=torch.float32)
    e = np.eye(4, dtype=np.float32)
    # the table's votes counted in full: the vote merge alone (a discounted table would let each record win)
    reg = registry_with([(1, e[0], 30), (2, e[1], 10), (3, e[2], 7)], 0.3 if vote_merge else 1.1, 1.0)
    reg.refresh(m)
    things = [o for o in reg.objects if not o.is_background]
    ids = m.state["object_id"].numpy()
    if vote_merge:
        above = on_thing & (pts[:, 2] > 0.005)  # (its base in the table joins it)
        assert len(things) == 1 and (ids[above] == things[0].id).all() and (ids[~on_thing] == 1).all()
        assert reg.records[things[0].id].n_masks == 17
    else:
        assert not things and (ids == 1).all()  # the failure this guards against


def test_a_part_split_off_another_thing_does_not_take_its_identity():
    """A bottle's masks bled onto a bowl across the table and outvote the bowl's first mask there; the
    bottle splits, and its far part merges with the bowl's record (they voted for the same Gaussians).
    The part carries the bottle's views at its share of the votes, so the bowl stays a bowl (change
    seed 206: the bowl became a "wine bottle" and lost its id when it was moved)."""
    m, pts, owner, rng = table_with_things([(0.0, 0.0), (0.2, 0.2)])
    votes = m.state["votes"]
    votes[torch.as_tensor(owner == 0), 1] = 5.0
    votes[torch.as_tensor(owner == 1), 2] = 10.0
    votes[torch.as_tensor(owner == 2), 2] = 2.5
    votes[torch.as_tensor(owner == 2), 3] = 2.0
    e = np.eye(4, dtype=np.float32)
    reg = registry_with([(1, e[0], 30), (2, e[1], 10), (3, e[2], 3)])
    reg.records[2].views = [(3000.0, e[1])] * 3
    reg.records[3].views = [(1000.0, e[2])] * 3
    reg.refresh(m)
    ids = m.state["object_id"].numpy()
    bottle, bowl = np.bincount(ids[owner == 1]).argmax(), np.bincount(ids[owner == 2]).argmax()
    assert bottle == 2 and bowl not in (1, 2) and (ids[owner == 2] == bowl).mean() > 0.9
    emb = reg.records[bowl].embedding()
    assert float(emb @ e[2]) > float(emb @ e[1])
    assert reg.records[bowl].n_masks == 3  # the bowl's own masks: the bottle's stayed with it


def test_merged_records_keep_the_id_more_masks_saw():
    """Two records on one thing merge; the one seen in more masks keeps its id even when the newer one
    holds more votes, so a reader's object does not turn into an "added" one under another id."""
    m, pts, owner, rng = table_with_things([(0.0, 0.0)])
    votes = m.state["votes"]
    votes[torch.as_tensor(owner == 0), 1] = 5.0
    votes[torch.as_tensor(owner == 1), 2] = 1.0
    votes[torch.as_tensor(owner == 1), 3] = 3.0
    e = np.eye(4, dtype=np.float32)
    reg = registry_with([(1, e[0], 30), (2, e[1], 5), (3, e[1], 2)])
    reg.refresh(m)
    things = [o for o in reg.objects if not o.is_background]
    assert [o.id for o in things] == [2] and reg.records[2].n_masks == 7 and 3 not in reg.records


@pytest.mark.parametrize("weight", [1.0, 0.25])
def test_a_surface_mask_covering_a_thing_counts_less_than_the_things_own(weight):
    """A small thing put down on the table: the table's masks covered it in more views (it merged into
    them) than its own masks did. With a surface's votes discounted it is its own object at once, and
    the table Gaussians its masks bled onto stay the table's."""
    m, pts, owner, rng = table_with_things([(0.0, 0.0)])
    on_thing = owner == 1
    votes = m.state["votes"]
    votes[:, 1] = 5.0  # table masks over everything
    votes[torch.as_tensor(on_thing), 2] = 2.0
    bleed = (owner == 0) & (np.abs(pts[:, :2]).max(1) < 0.06)
    votes[torch.as_tensor(bleed), 2] = 1.0
    e = np.eye(4, dtype=np.float32)
    reg = registry_with([(1, e[0], 30), (2, e[1], 2)], stuff_vote_weight=weight)
    reg.refresh(m)
    ids = m.state["object_id"].numpy()
    assert (ids[owner == 0] == 1).all()
    things = [o for o in reg.objects if not o.is_background]
    if weight < 1:
        above = on_thing & (pts[:, 2] > 0.005)  # (its base in the table joins it)
        assert len(things) == 1 and things[0].id == 2 and (ids[above] == 2).all()
        assert things[0].obb.size[:2].max() < 0.06  # the bleed did not widen it
    else:
        assert not things and (ids == 1).all()  # the failure this guards against


@pytest.mark.parametrize("rule", [True, False])
def test_touching_things_of_one_view_found_their_own_objects(rule):
    """Development seed 17: in the first view a book's mask joined the record the table's mask had just
    founded (blur over their border gave it the share to join), and from the next view on it shared its
    neighbour book's record: one "book" for two. A mask of the same view that overlaps the founder's
    weights by little is another thing; a part mask inside a whole one still joins it."""
    m, pts, owner, rng = table_with_things([(-0.03, 0.0), (0.03, 0.0)])
    a, b = torch.as_tensor(owner == 1), torch.as_tensor(owner == 2)
    W = torch.zeros(len(pts), 4)
    W[owner == 0, 0] = 1.0
    W[a, 1] = 1.0
    W[b, 1] = torch.as_tensor(rng.uniform(0, 0.6, int(b.sum())), dtype=torch.float32)  # blur over the border
    W[b, 2] = 1.0
    W[a & torch.as_tensor(pts[:, 0] < -0.03), 3] = 1.0  # a part of the first
    book = np.eye(4, dtype=np.float32)[1]
    reg = ObjectRegistry(
        SemanticsConfig(same_view_overlap=0.5 if rule else 0.0),
        embed_text=lambda t: np.tile(np.eye(4, dtype=np.float32)[2], (len(t), 1)),
    )
    first, second, part = reg.update(m, W, np.stack([book] * 3), 0.0)
    assert part == first
    assert (second != first) == rule, (first, second)


def test_a_mask_bridging_two_things_does_not_merge_them():
    """SAM's merged-neighbour mask votes for two mugs at once; they stay two objects."""
    m, pts, owner, rng = table_with_things([(-0.045, 0.0), (0.045, 0.0)])
    votes = m.state["votes"]
    votes[:, 1] = 1.0
    for k, oid in ((1, 2), (2, 3)):
        votes[torch.as_tensor(owner == k), oid] = 10.0
    votes[torch.as_tensor(owner > 0), 4] = 2.0  # the bridging record
    e = np.eye(4, dtype=np.float32)
    reg = registry_with([(1, e[0], 30), (2, e[1], 10), (3, e[1], 10), (4, e[1], 2)])
    reg.refresh(m)
    things = [o for o in reg.objects if not o.is_background]
    assert len(things) == 2 and all(o.num_gaussians >= 130 for o in things)  # (bases join the table)
    assert abs(things[0].obb.center[0] - things[1].obb.center[0]) > 0.08


def test_gaussians_lying_in_the_support_surface_join_it():
    """Mask bleed puts table Gaussians around an object's base into the object; they go back."""
    from gs_semantic_node.semantics.registry import ObjectRecord

    g = np.stack(np.meshgrid(np.linspace(-0.3, 0.3, 61), np.linspace(-0.3, 0.3, 61)), -1).reshape(-1, 2)
    table = np.c_[g, np.zeros(len(g))]
    rng = np.random.default_rng(0)
    body = np.c_[rng.uniform(-0.04, 0.04, (400, 2)), rng.uniform(0.0, 0.1, 400)]  # a 8 x 8 x 10 cm thing
    pts = np.concatenate([table, body]).astype(np.float32)
    m = gaussians_at(pts)
    ids = np.zeros(len(pts), np.int32)
    ids[len(table) :] = 1
    bleed = np.all(np.abs(table[:, :2]) <= 0.07, axis=1)  # dilated masks: 3 cm of table
    ids[: len(table)][bleed] = 1
    m.state["object_id"] = torch.as_tensor(ids)
    reg = ObjectRegistry(SemanticsConfig(support_peel=0.01))
    reg.records[1] = ObjectRecord(1, [(1.0, np.eye(4, dtype=np.float32)[0])], 0.0, 3)
    peel_support(reg.records, m, reg.labels, reg.cfg)
    out = m.state["object_id"].numpy()
    assert (out[: len(table)] == 0).all()  # every table Gaussian is table again
    assert (out[len(table) :][body[:, 2] > 0.01] == 1).all()  # the thing keeps everything above 1 cm
    box = reg.describe(m.snapshot())
    thing = [o for o in box if o.id == 1][0]
    assert thing.obb.size[0] < 0.1 and thing.obb.size[1] < 0.1  # 8 cm wide, not the 14 cm of the bleed
    assert thing.obb.center[2] - thing.obb.size[2] / 2 == pytest.approx(0.0, abs=3e-3)  # and rests on the table


@pytest.mark.parametrize("height,stays", [(0.002, False), (0.03, True)])
def test_a_thing_lying_wholly_in_the_surface_is_that_surface(height, stays):
    """A spurious mask on the floor read as "a spoon" makes a flat "thing" inside the floor (dev seed
    2: 0.5 % of the map, a phantom); a low object standing on it keeps its id."""
    from gs_semantic_node.semantics.registry import ObjectRecord

    g = np.stack(np.meshgrid(np.linspace(-0.3, 0.3, 61), np.linspace(-0.3, 0.3, 61)), -1).reshape(-1, 2)
    rng = np.random.default_rng(0)
    floor = np.c_[g, rng.normal(0, 0.0005, len(g))]
    patch = np.c_[rng.uniform(-0.05, 0.05, (80, 2)), rng.uniform(0.0, height, 80)]
    pts = np.concatenate([floor[np.abs(g).max(1) > 0.05], patch]).astype(np.float32)
    m = gaussians_at(pts)
    ids = np.zeros(len(pts), np.int32)
    ids[-len(patch) :] = 1
    m.state["object_id"] = torch.as_tensor(ids)
    reg = ObjectRegistry(SemanticsConfig())
    reg.records[1] = ObjectRecord(1, [(1.0, np.eye(4, dtype=np.float32)[0])], 0.0, 2)
    peel_support(reg.records, m, reg.labels, reg.cfg)
    assert ((m.state["object_id"].numpy()[-len(patch) :] == 1).mean() > 0.8) == stays


def test_upright_box_and_iou():
    rng = np.random.default_rng(0)
    R = np.array([[np.cos(0.5), -np.sin(0.5), 0], [np.sin(0.5), np.cos(0.5), 0], [0, 0, 1]])
    truth = OrientedBox(np.array([0.2, -0.1, 0.8]), R, np.array([0.2, 0.1, 0.15]))
    pts = truth.center + ((rng.random((3000, 3)) - 0.5) * truth.size) @ R.T
    pts = np.concatenate([pts, [[3, 3, 3], [-2, 1, 0]]])  # floaters
    b = fit_box(clean_points(pts, np.ones(len(pts))))
    assert box_iou(b, truth) > 0.9
    assert box_iou(truth, truth) == pytest.approx(1.0, abs=0.01)
    far = OrientedBox(truth.center + 5, R, truth.size)
    assert box_iou(truth, far) == 0.0


def test_a_mug_box_follows_its_handle():
    """The minimal footprint of a cylinder + handle stands askew to the handle; the principal axis
    (within the area tolerance) gives the box a planner expects: 10 x 8 cm along the handle."""
    from gs_semantic_node.semantics.boxes import upright_box

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 2 * np.pi, 2000)
    body = np.c_[0.04 * np.cos(a), 0.04 * np.sin(a), rng.uniform(0, 0.1, 2000)]
    handle = np.c_[rng.uniform(0.04, 0.06, 300), rng.uniform(-0.008, 0.008, 300), rng.uniform(0.03, 0.07, 300)]
    pts = np.concatenate([body, handle])

    def along(b):
        return np.degrees(np.arccos(min(1.0, abs(b.rotation[:2, int(np.argmax(b.size[:2]))] @ [1, 0]))))

    assert along(upright_box(pts, 0.0)) > 20  # minimal area: askew
    b = upright_box(pts, 0.2)
    assert along(b) < 3 and np.allclose(sorted(b.size[:2]), [0.08, 0.1], atol=3e-3)


def _fib_sphere(n: int, r: float) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    t = np.pi * (1 + 5**0.5) * i
    return r * np.column_stack([np.sqrt(1 - z * z) * np.cos(t), np.sqrt(1 - z * z) * np.sin(t), z])


def test_box_sides_grow_where_the_surface_curves_not_on_flat_faces():
    """Rendering pulls the centres of a curved surface about one scale inside it, not those of a
    flat face: an apple's box grows to the apple, a book's stays on its faces, a can's wall half way."""
    sigma = 0.007
    rng = np.random.default_rng(0)

    def grown(pts):
        box = fit_box(pts, "upright")
        return box, grow_sides(pts, box, sigma, 1.0, 0.75, 0.4)

    # a sphere of radius 40 mm whose centres sit at 33 mm
    apple = _fib_sphere(40, 0.033)  # 32 kept: what the mapper leaves on an apple
    apple = apple[apple[:, 2] > -0.02] + [0, 0, 0.8]
    b0, b1 = grown(apple)
    assert np.all(b1.size[:2] - b0.size[:2] > 1.1 * sigma) and b1.size[2] == b0.size[2]
    # a 200 x 150 x 36 mm book sampled every 10 mm on its faces
    g = np.mgrid[-0.1:0.1001:0.01, -0.075:0.0751:0.01].reshape(2, -1).T
    top = np.column_stack([g, np.full(len(g), 0.036)])
    sides = [
        np.column_stack([np.full(5, x), np.full(5, y), np.linspace(0, 0.036, 5)])
        for x in np.linspace(-0.1, 0.1, 21)
        for y in (-0.075, 0.075)
    ] + [
        np.column_stack([np.full(5, x), np.full(5, y), np.linspace(0, 0.036, 5)])
        for y in np.linspace(-0.075, 0.075, 16)
        for x in (-0.1, 0.1)
    ]
    book = np.vstack([top, *sides]) + rng.normal(0, 0.001, (len(top) + 5 * len(sides), 3))
    b0, b1 = grown(book)
    assert np.all(b1.size[:2] - b0.size[:2] < 0.4 * sigma)
    # a can's wall (radius 33 mm, 120 mm tall): half the sphere's growth
    a = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    can = np.vstack(
        [np.column_stack([0.033 * np.cos(a), 0.033 * np.sin(a), np.full(16, z)]) for z in np.linspace(0.005, 0.12, 8)]
    )
    b0, b1 = grown(can)
    assert np.all(np.abs(b1.size[:2] - b0.size[:2] - sigma) < 0.5 * sigma)


@pytest.mark.parametrize("views_deg, one_sided", [(0, True), (120, True), (360, False)])
def test_a_can_seen_from_one_side_gets_a_box_round_its_whole_body(views_deg, one_sided):
    """A 70 mm can put down in front of the camera: the views so far (an arc of views_deg round it)
    seeded its front, so the box also bounds that front mirrored behind its silhouette's rim; a can
    the views went round is left as seen. A stray seed from behind does not count as a view."""
    rng = np.random.default_rng(1)
    facing = 0.7  # the views' mean azimuth seen from the can
    cam = facing + rng.uniform(-np.radians(views_deg) / 2, np.radians(views_deg) / 2, 500)
    a = cam + rng.uniform(-np.pi / 2, np.pi / 2, 500)  # what each view sees: the half facing it
    pts = np.column_stack([0.4 + 0.035 * np.cos(a), -0.1 + 0.035 * np.sin(a), rng.uniform(0, 0.12, 500)])
    cams = np.column_stack([0.4 + 0.8 * np.cos(cam), -0.1 + 0.8 * np.sin(cam), np.full(500, 0.5)])
    cams[0] = [0.4 - 0.8 * np.cos(facing), -0.1 - 0.8 * np.sin(facing), 0.5]  # one seed from behind
    seen_from = (cams - pts) / np.linalg.norm(cams - pts, axis=1, keepdims=True)
    side = seen_side(seen_from, 180.0)
    assert (side is not None) == one_sided
    assert seen_side(np.zeros((500, 3)), 180.0) is None  # a loaded map does not know its views
    assert seen_side(np.concatenate([seen_from[:200], np.zeros((300, 3))]), 180.0) is None  # nor mostly
    if one_sided:
        assert side @ [np.cos(facing), np.sin(facing)] > 0.95  # towards where it was seen from
        seen = fit_box(pts, "upright")
        whole = fit_box(np.concatenate([pts, mirror_back(pts, side, 0.004)]), "upright")
        assert seen.size[:2].min() < (0.045 if views_deg == 0 else 0.065)  # the seen part: about a radius deep
        assert np.all(np.abs(whole.size[:2] - 0.07) < 0.008)
        assert np.linalg.norm(whole.center[:2] - [0.4, -0.1]) < 0.005


def _seeded_front(shape: str, inset: float) -> np.ndarray:
    """What views from +x seed of an 80 mm object standing at the origin: the part facing them, on a
    grid whose outermost samples stop `inset` short of the silhouette's rim (as pixel centres do)."""
    r, rng = 0.04, np.random.default_rng(3)
    y, z = (g.ravel() for g in np.meshgrid(np.linspace(-r + inset, r - inset, 15), np.linspace(0.0, 2 * r, 15)))
    ty, tx = (g.ravel() for g in np.meshgrid(np.linspace(-r + inset, r - inset, 12), np.linspace(-r, r, 12)))
    top = np.column_stack([tx, ty, np.full_like(tx, 2 * r)])
    if shape == "apple":  # a sphere's front cap
        keep = y**2 + (z - r) ** 2 < (r - inset) ** 2
        front = np.column_stack([np.sqrt(np.clip(r**2 - y**2 - (z - r) ** 2, 0, None)), y, z])[keep]
    elif shape == "can":  # a cylinder's front wall and its top
        front = np.vstack([np.column_stack([np.sqrt(r**2 - y**2), y, z]), top[tx**2 + ty**2 < r**2]])
    else:  # a box face-on: its front face and its top
        front = np.vstack([np.column_stack([np.full_like(y, r), y, z]), top])
    return front + rng.normal(0, 0.0005, front.shape)


@pytest.mark.parametrize("shape", ["apple", "can", "box"])
def test_the_mirror_plane_is_the_middle_where_seeds_stop_short_of_the_rim(shape):
    """Seeds end up to a pixel inside the silhouette, and on a round object the outermost of them lie
    well in front of its middle: mirrored about them an 80 mm apple comes out about half as deep. The
    circle through the front outline puts the plane at the middle; the box's flat face leaves the
    rim's plane, which its seen top already puts at the middle."""
    pts = _seeded_front(shape, inset=0.004)
    body = np.concatenate([pts, mirror_back(pts, np.array([1.0, 0.0]), 0.004)])
    assert abs(np.ptp(body[:, 0]) - 0.08) < 0.008
    assert abs(body[:, 0].max() + body[:, 0].min()) / 2 < 0.005  # centred on the object


def _seeded_box_askew(view_deg: float, inset: float = 0.002) -> np.ndarray:
    """What views from azimuth `view_deg` seed of a 110 x 60 x 50 mm box at the origin, axis-aligned:
    the two side faces turned to them and the whole top, on grids stopping `inset` short of the edges."""
    half, rng = np.array([0.055, 0.03, 0.025]), np.random.default_rng(4)
    d = np.array([np.cos(np.radians(view_deg)), np.sin(np.radians(view_deg))])
    a, b = (np.linspace(-1, 1, 14) * (h - inset) for h in half[:2])
    z = np.linspace(0, 2 * half[2] - inset, 8)
    faces = [np.column_stack([g.ravel() for g in np.meshgrid(a, b)] + [np.full(len(a) * len(b), 2 * half[2])])]
    for ax in (0, 1):
        sign = np.sign(d[ax])
        other = b if ax == 0 else a
        o, zz = (g.ravel() for g in np.meshgrid(other, z))
        face = np.zeros((len(o), 3))
        face[:, ax], face[:, 1 - ax], face[:, 2] = sign * half[ax], o, zz
        faces.append(face)
    pts = np.vstack(faces)
    return pts + rng.normal(0, 0.0005, pts.shape)


@pytest.mark.parametrize("view_deg", [-70.0, -110.0, 200.0])
def test_a_box_seen_askew_is_completed_square_to_its_own_sides(view_deg):
    """A box seen from one side, not square-on: its seen faces turned half a turn about its middle
    land on its unseen ones. A reflection about the plane facing the views turned them askew, and a
    circle through the corner of its outline put the middle behind the box."""
    pts = _seeded_box_askew(view_deg)
    side = np.array([np.cos(np.radians(view_deg)), np.sin(np.radians(view_deg))])
    assert front_circle(pts @ [*side, 0], pts @ [-side[1], side[0], 0], 0.006) is None
    box = fit_box(np.concatenate([pts, mirror_back(pts, side, 0.006)]), "upright")
    truth = OrientedBox(np.array([0.0, 0.0, 0.025]), np.eye(3), np.array([0.11, 0.06, 0.05]))
    assert box_iou(box, truth) > 0.85


def test_a_solid_of_revolution_is_scored_whatever_the_gt_yaw():
    from gs_semantic_node.eval.metrics import yaw_free_iou

    def yawed(a, size):
        R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        return OrientedBox(np.array([0.1, 0.2, 0.79]), R, np.array(size))

    can = yawed(0.0, [0.066, 0.066, 0.12])
    pred = yawed(np.pi / 4, [0.066, 0.066, 0.12])  # the same cylinder's box, another yaw
    assert box_iou(pred, can) == pytest.approx(0.707, abs=0.02)  # strict IoU punishes an unobservable yaw
    assert yaw_free_iou(pred, can) == pytest.approx(1.0, abs=0.01)
    small = yawed(np.pi / 4, [0.05, 0.05, 0.12])  # a wrong size still costs
    assert yaw_free_iou(small, can) == pytest.approx((0.05 / 0.066) ** 2, abs=0.02)
    assert yaw_free_iou(yawed(0.3, [0.066, 0.066, 0.12]), far := yawed(0.0, [0.066, 0.066, 0.12])) > 0.99
    far.center = far.center + 1.0
    assert yaw_free_iou(pred, far) == 0.0


def test_table_top_offset_says_how_far_the_map_sank():
    from gs_semantic_node.eval.metrics import table_top_offset

    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 21), np.linspace(-0.4, 0.4, 17)), -1).reshape(-1, 2)
    top = np.c_[g, np.full(len(g), 0.75)]
    gt = {
        "surface_points": top,
        "surface_ids": np.ones(len(g), np.int64),
        "objects": [
            {
                "instance_id": 1,
                "class": "table",
                "is_background": True,
                "obb": OrientedBox(np.array([0, 0, 0.375]), np.eye(3), np.array([1.2, 0.9, 0.75])).to_dict(),
            }
        ],
    }
    sunk = top + [0.01, 0.0, -0.006]
    assert table_top_offset(sunk, gt) == pytest.approx(-0.006, abs=1e-6)
    assert table_top_offset(top + [0, 0, 0.5], gt) != table_top_offset(top + [0, 0, 0.5], gt)  # nothing near: nan


@pytest.mark.slow
def test_pipeline_on_a_simulated_scene(small_sim, tmp_path):
    from gs_semantic_node.eval.metrics import evaluate
    from gs_semantic_node.offline import offline_pipeline
    from gs_semantic_node.sim.generate import load_gt

    cfg = Config.preset("oracle_bench")
    cfg.mapper.iters_per_keyframe = 3
    p, _, _ = offline_pipeline(small_sim, cfg, progress=False)
    refreshes = len(p.timings["refresh_ms"])
    ev = evaluate(p.snapshot.arrays, p.snapshot.objects, load_gt(small_sim))
    ids = p.snapshot.arrays["object_id"]
    assert len(ids) == len(p.mapper.map) and (ids >= 0).all()  # every Gaussian has exactly one id
    assert ev["gaussian_accuracy"] > 0.9, ev
    r = p.query("grab the mug")
    assert r.found and r.objects[0].label == "mug"
    assert not p.query("bring me the laptop").found
    # a saved map loads with the same objects (ids, labels, members, boxes), still queryable
    from gs_semantic_node.pipeline import SemanticMappingPipeline

    p.save(tmp_path / "m")
    q = SemanticMappingPipeline(cfg)
    q.load(tmp_path / "m")
    before, after = p.objects(), q.objects()
    assert [(o.id, o.label, o.num_gaussians) for o in after] == [(o.id, o.label, o.num_gaussians) for o in before]
    assert all(np.allclose(a.obb.center, b.obb.center, atol=1e-4) for a, b in zip(after, before))
    assert q.query("grab the mug").found
    # publishing a loaded map (the node calls finish) keeps its saved labels: no re-segmentation
    snap = q.snapshot
    q.finish()
    assert q.snapshot is snap
    p.finish()  # nothing new since offline_pipeline's own finish
    assert len(p.timings["refresh_ms"]) == refreshes


def test_contrastive_loss_prefers_features_that_match_the_masks():
    from gs_semantic_node.semantics.features import contrastive_loss

    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    good = torch.nn.functional.one_hot(y, 4).float() + 0.01 * torch.randn(8, 4)
    bad = torch.randn(8, 4)
    assert float(contrastive_loss(good, y, 0.1)) < float(contrastive_loss(bad, y, 0.1))
    assert float(contrastive_loss(bad, torch.arange(8), 0.1)) == 0.0  # no positives: no signal


def test_distilled_features_separate_instances_across_views(small_sim):
    """Features trained on per-view masks (ids not shared between views) end up the same within
    a GT object and different between objects, on Gaussians of a real (CPU-rendered) map."""
    from gs_semantic_node.eval.metrics import gt_labels
    from gs_semantic_node.io.bags import read_frames
    from gs_semantic_node.semantics.features import distill, object_features
    from gs_semantic_node.sim.generate import load_gt

    frames = list(read_frames(small_sim / "bag"))[::3]
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=2, keyframe_translation=0.0), seed=0)
    kfs = [m.integrate(f) for f in frames]
    losses = []
    for rnd in range(6):
        for kf, f in zip(kfs, frames):
            masks = [f.gt_instances == i for i in np.unique(f.gt_instances) if i > 0]
            losses += distill(m, kf, masks, iters=2, pixels=512, seed=rnd)
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    gt = load_gt(small_sim)
    a = m.map.snapshot()
    lab = gt_labels(a["means"], gt)
    objs = [o["instance_id"] for o in gt["objects"] if (lab == o["instance_id"]).sum() >= 10]
    feats = object_features(a["features"], lab, objs)
    f = a["features"] / np.linalg.norm(a["features"], axis=1, keepdims=True)
    intra = np.mean([float((f[lab == o] @ feats[o]).mean()) for o in objs])
    inter = np.mean([float(feats[a_] @ feats[b_]) for i, a_ in enumerate(objs) for b_ in objs[i + 1 :]])
    assert len(objs) >= 3 and intra - inter > 0.3, (intra, inter)
