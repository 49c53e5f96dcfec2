"""The change bench's event scores: spurious events (what no change explains) and announced changes."""

from gs_semantic_node.eval.changes import announced, spurious


def test_events_before_the_change_or_about_unchanged_classes_are_spurious():
    changes = [{"kind": "moved", "class": "bowl"}, {"kind": "added", "class": "apple"}]
    events = [
        {"kind": "added", "id": 9, "label": "bowl", "stamp": 1.0},  # before anything changed
        {"kind": "removed", "id": 6, "label": "bowl", "stamp": 3.0},
        {"kind": "moved", "id": 6, "label": "bowl", "stamp": 3.5},
        {"kind": "added", "id": 8, "label": "apple", "stamp": 4.0},
        {"kind": "removed", "id": 2, "label": "mug", "stamp": 4.5},  # nobody touched the mug
    ]
    assert [e["id"] for e in spurious(events, changes, t_change=2.0)] == [9, 2]
    assert spurious(events[1:4], changes, t_change=2.0) == []


def test_a_change_is_announced_by_its_own_kind_and_label_after_it_happened():
    moved = {"kind": "moved", "class": "mug"}
    assert announced([{"kind": "moved", "label": "mug", "stamp": 3.0}], moved, t_change=2.0)
    assert not announced([{"kind": "moved", "label": "cup", "stamp": 3.0}], moved, t_change=2.0)
    assert not announced([{"kind": "added", "label": "mug", "stamp": 3.0}], moved, t_change=2.0)
    assert not announced([{"kind": "moved", "label": "mug", "stamp": 1.0}], moved, t_change=2.0)
