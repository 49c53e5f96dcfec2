"""Objects through scene changes: retired when free space takes them, the same id when they reappear
elsewhere, added when they appear on mapped surface."""

import numpy as np
import torch

from gs_semantic_node.config import SemanticsConfig
from gs_semantic_node.mapping.gaussians import GaussianMap
from gs_semantic_node.semantics.changes import ChangeTracker
from gs_semantic_node.semantics.records import ObjectRecord, free_id
from gs_semantic_node.types import OrientedBox, SemanticObject


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


MUG, BOOK = unit([1, 0.1, 0]), unit([0, 1, 0.2])


def obj(i, label, emb, center, size=(0.1, 0.1, 0.1), n=40):
    box = OrientedBox(np.asarray(center, float), np.eye(3), np.asarray(size, float))
    return SemanticObject(i, label, 0.9, obb=box, embedding=emb, num_gaussians=n)


def world(ids: list[int], appeared: float = 0.0) -> GaussianMap:
    g = GaussianMap(4, "cpu", max_objects=8)
    n = len(ids)
    g.append(torch.rand(n, 3), torch.rand(n, 3), torch.full((n, 3), 0.01))
    g.state["object_id"] = torch.tensor(ids, dtype=torch.int32)
    g.state["votes"][torch.arange(n), torch.tensor(ids)] = 1.0
    g.state["appeared"][:] = appeared
    return g


def mug_taken_away() -> tuple[ChangeTracker, dict]:
    """A tracker that reported a mug (object 1), then saw free space take all of it."""
    t = ChangeTracker(SemanticsConfig())
    records = {1: ObjectRecord(1, [(5.0, MUG)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8])], records, world([1] * 40), 1.0)
    t.note_carved(torch.full((40,), 1, dtype=torch.int32))
    t.retire(records, world([0] * 5), 2.0)
    return t, records


def test_a_moved_object_is_retired_then_found_elsewhere_with_its_id():
    cfg = SemanticsConfig()
    t = ChangeTracker(cfg)
    records = {1: ObjectRecord(1, [(5.0, MUG)]), 2: ObjectRecord(2, [(5.0, BOOK)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8]), obj(2, "book", BOOK, [0.3, 0, 0.8])], records, world([1] * 10), 1.0)
    g = world([1] * 10 + [2] * 40)  # the mug lost 30 of its 40 Gaussians to free space
    t.note_carved(torch.full((30,), 1, dtype=torch.int32))
    assert t.retire(records, g, 2.0) == [1]
    assert 1 not in records and float(g.state["votes"][:, 1].sum()) == 0 and 2 in records
    assert free_id(records, 8, t.reserved()) == 3  # its id waits for it
    # a mug appears 40 cm away, founded as object 3
    records[3] = ObjectRecord(3, [(4.0, MUG)])
    g = world([2] * 40 + [3] * 30, appeared=1.0)
    moved = obj(3, "mug", unit(MUG + 0.05), [0.4, 0.2, 0.8], (0.11, 0.1, 0.09))
    objs = [obj(2, "book", BOOK, [0.3, 0, 0.8]), moved]
    t.update(objs, records, g, 3.0)
    assert moved.id == 1 and 1 in records and 3 not in records and records[1].id == 1
    assert int((g.state["object_id"] == 1).sum()) == 30 and float(g.state["votes"][:, 3].sum()) == 0
    ev = [(e.kind, e.id) for e in t.drain()]
    assert ev == [("removed", 1), ("moved", 1)]
    assert t.drain() == []


def test_an_object_put_on_mapped_surface_is_added_and_a_different_one_is_not_the_moved_one():
    t, records = mug_taken_away()
    records[2] = ObjectRecord(2, [(4.0, BOOK)])
    book = obj(2, "book", BOOK, [0.4, 0.2, 0.8], (0.2, 0.15, 0.04))
    t.update([book], records, world([2] * 30, appeared=1.0), 3.0)
    assert book.id == 2
    assert [(e.kind, e.id) for e in t.drain()] == [("removed", 1), ("added", 2)]


def test_one_mask_reports_an_object_where_free_space_was_and_nothing_elsewhere():
    """A mask founds a record on fresh surface: where earlier views saw free space (an object put down) it is
    reported at once and the registry asks for a refresh; on surface first seen (a spurious mask, a side) it
    waits for semantics.min_object_masks."""
    from gs_semantic_node.semantics.registry import ObjectRegistry

    reported = {}
    for appeared in (1.0, 0.0):
        reg = ObjectRegistry(SemanticsConfig())
        g = world([0] * 30, appeared=appeared)
        g.state["votes"][:] = 0
        W = torch.zeros(30, 2)
        W[:, 1] = 1.0  # one mask over all of them
        assert reg.update(g, W, BOOK[None], 1.0, [500]) == [1]
        due = reg.due
        reg.refresh(g, stamp=1.0)
        reported[appeared] = (due, [o.id for o in reg.objects if not o.is_background])
    assert reported == {1.0: (True, [1]), 0.0: (False, [])}


def test_a_first_sighting_is_no_change_and_a_few_floaters_do_not_retire_an_object():
    cfg = SemanticsConfig()
    t = ChangeTracker(cfg)
    records = {1: ObjectRecord(1, [(5.0, MUG)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8])], records, world([1] * 40, appeared=1.0), 1.0)
    t.note_carved(torch.full((5,), 1, dtype=torch.int32))
    assert t.retire(records, world([1] * 40), 2.0) == [] and 1 in records
    assert t.drain() == []


def test_a_moved_object_first_seen_partly_is_added_then_recognised_once_its_box_grows():
    t, records = mug_taken_away()
    records[3] = ObjectRecord(3, [(4.0, MUG)])
    g = world([3] * 30, appeared=1.0)
    partly = obj(3, "mug", MUG, [0.4, 0.2, 0.8], (0.1, 0.03, 0.1))  # one view: its front face only
    t.update([partly], records, g, 3.0)
    assert partly.id == 3
    whole = obj(3, "mug", MUG, [0.4, 0.2, 0.8], (0.1, 0.09, 0.1))  # seen round
    t.update([whole], records, g, 4.0)
    assert whole.id == 1 and 1 in records and int((g.state["object_id"] == 1).sum()) == 30
    assert [(e.kind, e.id) for e in t.drain()] == [("removed", 1), ("added", 3), ("moved", 1)]


def test_a_moved_object_is_named_from_its_views_before_the_move_too():
    """A view or two at its new place name the mug a cup; the views that named it a mug still count."""
    cup = unit([1, 0.6, 0])

    def classify(e):
        return ("mug" if float(e @ MUG) > float(e @ cup) else "cup"), 0.9, []

    t = ChangeTracker(SemanticsConfig(), classify)
    records = {1: ObjectRecord(1, [(5.0, MUG), (4.0, MUG)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8])], records, world([1] * 40), 1.0)
    t.note_carved(torch.full((40,), 1, dtype=torch.int32))
    t.retire(records, world([0] * 5), 2.0)
    records[3] = ObjectRecord(3, [(1.0, cup)])
    moved = obj(3, "cup", cup, [0.4, 0.2, 0.8])
    t.update([moved], records, world([3] * 30, appeared=1.0), 3.0)
    assert moved.id == 1 and moved.label == "mug" and len(moved.view_embeddings) == 3
    assert [(e.kind, e.label) for e in t.drain()] == [("removed", "mug"), ("moved", "mug")]


def placed(groups: list[tuple[int, list[float], int]]) -> GaussianMap:
    """A map of (object id, centre, count) groups of Gaussians, each within 1 cm of its centre."""
    ids = [i for i, _, n in groups for _ in range(n)]
    g = world(ids)
    pts = [torch.tensor(c) + 0.01 * (torch.rand(n, 3) - 0.5) for _, c, n in groups]
    g.params["means"].data.copy_(torch.cat(pts))
    return g


def test_free_space_that_took_all_but_the_band_on_its_support_retires_an_object():
    """Views through a mug's place carve its body, not the 2 cm on the table: those views meet the
    table within the carving margin. The band does not count for or against the mug."""
    t = ChangeTracker(SemanticsConfig())
    records = {1: ObjectRecord(1, [(5.0, MUG)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8])], records, world([1] * 60), 1.0)  # floor at z = 0.75
    t.note_carved(torch.full((20,), 1, dtype=torch.int32))
    assert t.retire(records, placed([(1, [0, 0, 0.76], 40)]), 2.0) == [1]
    # 40 left, 30 of them over the band: the mug stands
    t = ChangeTracker(SemanticsConfig())
    records = {1: ObjectRecord(1, [(5.0, MUG)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8])], records, world([1] * 60), 1.0)
    t.note_carved(torch.full((20,), 1, dtype=torch.int32))
    assert t.retire(records, placed([(1, [0, 0, 0.76], 10), (1, [0, 0, 0.82], 30)]), 2.0) == [] and 1 in records


def test_an_object_its_masks_found_elsewhere_before_its_old_place_cleared_moves_in_view():
    """Views of both places: the mug's masks at its new place joined the mug while its old Gaussians
    still stood. Free space then takes the old place: the mug keeps its id and Gaussians there."""
    t = ChangeTracker(SemanticsConfig())
    records = {1: ObjectRecord(1, [(5.0, MUG)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8])], records, world([1] * 40), 1.0)
    t.note_carved(torch.full((35,), 1, dtype=torch.int32))
    g = placed([(1, [0, 0, 0.82], 5), (1, [0.4, 0.2, 0.8], 30)])
    assert t.retire(records, g, 2.0) == [] and 1 in records
    assert float(g.state["votes"][:5, 1].sum()) == 0 and float(g.state["votes"][5:, 1].sum()) == 30
    there = obj(1, "mug", MUG, [0.4, 0.2, 0.8])
    t.update([there], records, g, 3.0)
    ev = t.drain()
    assert [(e.kind, e.id) for e in ev] == [("moved", 1)] and there.id == 1
    assert np.allclose(ev[0].old_box.center, [0, 0, 0.8]) and np.allclose(ev[0].new_box.center, [0.4, 0.2, 0.8])
    # too few of them elsewhere to be reported: removed, and kept aside for a later match
    t = ChangeTracker(SemanticsConfig())
    records = {1: ObjectRecord(1, [(5.0, MUG)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8])], records, world([1] * 40), 1.0)
    t.note_carved(torch.full((35,), 1, dtype=torch.int32))
    g = placed([(1, [0.4, 0.2, 0.8], 20)])
    assert t.retire(records, g, 2.0) == []
    t.update([], records, g, 3.0)
    assert [(e.kind, e.id) for e in t.drain()] == [("removed", 1)] and 1 in t.reserved() and 1 not in records


def test_a_moved_object_is_matched_by_its_size_before_free_space_took_any_of_it():
    """Free space takes a mug over several views; its box shrinks meanwhile. Found elsewhere whole,
    it is compared with the mug it was, not with the remnant last reported."""
    t = ChangeTracker(SemanticsConfig())
    records = {1: ObjectRecord(1, [(5.0, MUG)])}
    t.update([obj(1, "mug", MUG, [0, 0, 0.8])], records, world([1] * 40), 1.0)
    t.note_carved(torch.full((10,), 1, dtype=torch.int32))
    t.update([obj(1, "mug", MUG, [0, 0, 0.77], (0.1, 0.1, 0.04))], records, world([1] * 30), 2.0)
    t.note_carved(torch.full((30,), 1, dtype=torch.int32))
    t.retire(records, world([0] * 5), 3.0)
    records[3] = ObjectRecord(3, [(4.0, MUG)])
    whole = obj(3, "mug", MUG, [0.4, 0.2, 0.8])
    t.update([whole], records, world([3] * 30, appeared=1.0), 4.0)
    ev = t.drain()
    assert whole.id == 1 and [(e.kind, e.id) for e in ev] == [("removed", 1), ("moved", 1)]
    assert np.allclose(ev[0].old_box.size, 0.1)


def test_after_a_change_event_the_pipeline_refreshes_at_each_keyframe_for_a_while(small_sim):
    """A moved or added object's box grows with each view: readers see every keyframe's state for
    `settle_keyframes` keyframes after a change event, then the cadence again."""
    from gs_semantic_node.config import Config
    from gs_semantic_node.io.bags import read_frames
    from gs_semantic_node.pipeline import SemanticMappingPipeline
    from gs_semantic_node.semantics.changes import ObjectChange

    cfg = Config.preset("oracle_bench")
    cfg.perception.gt_path = str(small_sim / "gt.json")
    cfg.mapper.iters_per_keyframe = 1
    cfg.mapper.keyframe_translation = 0.0  # every frame a keyframe
    cfg.mapper.free_space_carving = False  # no carving news
    cfg.semantics.refresh_every, cfg.semantics.min_object_masks = 1000, 1000  # no cadence, no "reportable" news
    cfg.semantics.settle_keyframes = 3
    p = SemanticMappingPipeline(cfg)
    frames = list(read_frames(small_sim, cfg.node, with_gt=True))[:8]
    refreshed = []
    for k, f in enumerate(frames):
        n = len(p.timings["refresh_ms"])
        assert p.process(f)
        refreshed.append(len(p.timings["refresh_ms"]) > n)
        if k == 1:  # a change event comes out of this keyframe's refresh
            p.registry.changes.events.append(ObjectChange(1, "mug", "removed", None, None, f.stamp))
            p.refresh()
    assert refreshed[1:] == [False, True, True, True, False, False, False]
    assert [c.kind for c in p.snapshot.changes] == ["removed"]
