"""Free space: what later views see through goes; what they cannot see (occluded, a depth hole) stays."""

import numpy as np
import torch
from builders import plane_frame

from gs_semantic_node.config import MapperConfig
from gs_semantic_node.mapping.mapper import Mapper
from gs_semantic_node.types import Frame

PLANE = 1.5


def box_in_front(x: float, z: float = PLANE - 0.3) -> Frame:
    """The plane with a box standing in front of it, seen from a camera moved x along its x axis."""
    f = plane_frame(x, PLANE)
    du = int(round(f.camera.fx * x / z))  # the box stays where it is in the map
    f.depth[20:40, 30 - du : 50 - du] = z
    f.rgb[20:40, 30 - du : 50 - du] = [30, 30, 200]
    return f


def mapped(first: Frame) -> Mapper:
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=2, device="cpu"), seed=0)
    m.integrate(first)
    return m


def near(m: Mapper, z: float, band: float = 0.05) -> int:
    return int(((m.map.means.detach()[:, 2] - z).abs() < band).sum())


def test_an_object_taken_away_is_carved_and_the_plane_behind_it_seeded():
    m = mapped(box_in_front(0.0))
    assert near(m, PLANE - 0.3) > 20
    before_plane = near(m, PLANE)
    m.integrate(plane_frame(0.06, PLANE))  # one view that sees through it: evidence, not yet proof
    assert near(m, PLANE - 0.3) > 20
    m.integrate(plane_frame(0.12, PLANE))
    assert near(m, PLANE - 0.3) == 0
    assert near(m, PLANE) > before_plane  # the surface it hid was seeded
    assert len(m.carved) > 20 and m.carved.dtype == torch.int32


def test_what_is_occluded_or_on_a_depth_hole_keeps_its_gaussians():
    m = mapped(plane_frame(0.0, 2.5))  # a far wall, then a nearer one hides it
    far = near(m, 2.5)
    for x in (0.06, 0.12, 0.18):
        m.integrate(plane_frame(x, PLANE))
    assert near(m, 2.5) == far

    m = mapped(box_in_front(0.0))
    kept = near(m, PLANE - 0.3)
    for x in (0.06, 0.12, 0.18):
        f = plane_frame(x, PLANE)
        f.depth[15:45, 25:55] = 0  # no depth where the box stood: the sensor says nothing there
        m.integrate(f)
    assert near(m, PLANE - 0.3) == kept


def test_a_view_that_sees_a_gaussian_where_it_is_clears_its_evidence():
    m = mapped(box_in_front(0.0))
    n = near(m, PLANE - 0.3)
    for i in range(4):  # through it, on it, through it, on it: never two in a row
        m.integrate(plane_frame(0.06 * (i + 1), PLANE) if i % 2 == 0 else box_in_front(0.06 * (i + 1)))
    assert near(m, PLANE - 0.3) >= 0.8 * n


def test_the_rim_of_an_object_in_place_is_not_seen_through():
    m = mapped(box_in_front(0.0))
    n = near(m, PLANE - 0.3)
    for x in (0.06, 0.12, 0.18, 0.24):  # the box still there, seen from a little aside
        m.integrate(box_in_front(x))
    assert near(m, PLANE - 0.3) >= 0.9 * n


def test_carving_off_keeps_everything():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=2, device="cpu", free_space_carving=False))
    m.integrate(box_in_front(0.0))
    n = near(m, PLANE - 0.3)
    for x in (0.06, 0.12):
        m.integrate(plane_frame(x, PLANE))
    assert near(m, PLANE - 0.3) == n and np.asarray(m.carved).size == 0


def appeared_near(m: Mapper, z: float, band: float = 0.05) -> torch.Tensor:
    return m.map.state["appeared"][(m.map.means.detach()[:, 2] - z).abs() < band]


def test_surface_appeared_only_where_an_earlier_view_saw_free_space():
    """A box put where the first view saw the plane appeared; one standing outside the first view, in
    front of plane that view mapped, is only first looked at (a change event would be spurious)."""
    m = mapped(plane_frame(0.0, PLANE))
    m.integrate(box_in_front(0.06))
    put = appeared_near(m, PLANE - 0.3)
    assert len(put) > 20 and float(put.mean()) > 0.8

    m = mapped(plane_frame(0.0, PLANE))
    f = plane_frame(0.6, PLANE)
    f.depth[20:40, 51:60] = PLANE - 0.3  # world x 0.83 to 1.0: outside the first view at that depth
    f.rgb[20:40, 51:60] = [30, 30, 200]
    m.integrate(f)
    first_seen = appeared_near(m, PLANE - 0.3)
    assert len(first_seen) > 20 and float(first_seen.sum()) == 0
    assert float(appeared_near(m, PLANE).sum()) == 0  # nor is the plane it first shows


def test_the_foot_of_an_object_put_down_is_seeded_down_to_the_surface_it_stands_on():
    """A slope put in front of the mapped plane reaches down to it. Its foot, within seed_depth_margin + the
    noise of the plane, is seeded for the surface above it reaches down there; the plane gets nothing new."""
    foot = (PLANE - 0.032, PLANE - 0.018)  # in front of the plane by more than the noise, less than the margin

    def counts(steps: int) -> tuple[int, int]:
        m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=0, device="cpu", seed_grow_steps=steps))
        m.integrate(plane_frame(0.0, PLANE))
        plane = near(m, PLANE, 0.005)
        f = plane_frame(0.06, PLANE)
        f.depth[20:41, 30:50] = np.linspace(PLANE - 0.3, PLANE - 0.005, 21)[:, None]
        f.rgb[20:41, 30:50] = [30, 30, 200]
        m.integrate(f)
        z = m.map.means.detach()[:, 2]
        return int(((z > foot[0]) & (z < foot[1])).sum()), near(m, PLANE, 0.005) - plane

    (grown, plane_grown), (margin_only, plane_margin_only) = counts(8), counts(0)
    assert margin_only == 0 and grown >= 20
    assert plane_grown == plane_margin_only
