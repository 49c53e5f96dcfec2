"""The benches' scene cache keys on every option that changes what the simulator renders."""

import argparse
import json

from gs_semantic_node.eval.common import SCENE_OPTIONS, scene, scene_name, scene_options
from gs_semantic_node.sim.generate import SimConfig


def test_every_scene_option_changes_the_cache_folder():
    base = scene_name(3, 30)
    assert base == scene_name(3, 30, {k: getattr(SimConfig, k) for k in SCENE_OPTIONS})
    changed = {
        "family": "libero",
        "trajectory": "wrist",
        "pose_noise_m": 0.003,
        "pose_noise_deg": 0.3,
        "depth_noise": True,
        "n_objects": 8,
    }
    names = {k: scene_name(3, 30, {k: v}) for k, v in changed.items()}
    assert base not in names.values() and len(set(names.values())) == len(changed)
    assert scene_name(4, 30) != base != scene_name(3, 31)


def test_a_folder_rendered_with_other_options_is_rendered_again(tmp_path):
    a = argparse.Namespace(
        family="primitives", trajectory="orbit", pose_noise_m=0.0, pose_noise_deg=0.0, depth_noise=False, objects=None
    )
    d = scene(5, 3, tmp_path, scene_options(a))
    assert json.loads((d / "gt.json").read_text())["config"]["pose_noise_m"] == 0.0
    stale = tmp_path / "stale"
    d.rename(stale)
    # the same folder name, but made with pose noise (as an older cache without options in its name was)
    gt = json.loads((stale / "gt.json").read_text())
    gt["config"]["pose_noise_m"] = 0.01
    (stale / "gt.json").write_text(json.dumps(gt))
    stale.rename(d)
    again = scene(5, 3, tmp_path, scene_options(a))
    assert again == d and json.loads((d / "gt.json").read_text())["config"]["pose_noise_m"] == 0.0
