"""Held-out views scored through the pose and camera response that fit them (eval.metrics.fit_view)."""

import dataclasses

from builders import striped_plane

from gs_semantic_node.config import MapperConfig
from gs_semantic_node.eval.metrics import evaluate_view
from gs_semantic_node.mapping.mapper import Mapper


def striped_map():
    m = Mapper(MapperConfig(width=80, height=60, iters_per_keyframe=10, keyframe_translation=0.0, track=False))
    for x in (0.0, 0.03, 0.06, 0.09):
        m.integrate(dataclasses.replace(striped_plane(x, x), stamp=x))
    return m


def test_a_held_out_view_recorded_off_is_scored_through_the_pose_that_fits_it():
    m = striped_map()
    off = evaluate_view(m, striped_plane(0.045, 0.057), fit_steps=60)  # its recorded pose 12 mm off (0.7 px)
    assert off["psnr_fitted"] > off["psnr"] + 3, off
    assert 8 < off["fit_correction_mm"] < 16, off
    exact = evaluate_view(m, striped_plane(0.045, 0.045), fit_steps=60)
    assert exact["fit_correction_mm"] < 6, exact  # a right pose stays about where it was
    assert abs(exact["psnr_fitted"] - off["psnr_fitted"]) < 1.0  # the same map, the same view
    assert "psnr_fitted" not in evaluate_view(m, striped_plane(0.045, 0.045))  # only when asked
