"""The benchmark commands run end to end at small settings and write the promised JSON keys."""
import json

import pytest

from gs_semantic_node.cli import main

pytestmark = pytest.mark.slow


def test_quality_and_speed_bench_write_json(tmp_path):
    assert main(["bench", "quality", "--seeds", "101", "--tune-seeds", "", "--frames", "8", "--out", str(tmp_path)]) == 0
    q = json.loads((tmp_path / "quality.json").read_text())
    for m in ("full", "threshold"):
        assert set(q[m]) >= {"query_success", "mean_box_iou", "gaussian_accuracy", "abstention", "n_scenes", "n_queries"}
        assert q[m]["n_scenes"] == 1 and 0.0 <= q[m]["query_success"] <= 1.0
    assert "oracle perception" in q["perception"] and q["noise_preset"] == "realistic"
    assert main(["bench", "speed", "--seeds", "101", "--frames", "8", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "speed.json").read_text())
    assert set(s) >= {"device", "frames_per_s", "lift_ms_per_keyframe", "query_ms_p50", "query_ms_p99", "peak_mem_gb",
                      "gaussians"}
    assert s["frames_per_s"] > 0 and s["gaussians"] > 0
