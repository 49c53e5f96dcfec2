"""The benchmark commands run end to end at small settings and write the promised JSON keys."""

import json

import numpy as np
import pytest

from gs_semantic_node.cli import main
from gs_semantic_node.config import Config

pytestmark = pytest.mark.slow


def test_quality_and_speed_bench_write_json(tmp_path):
    assert (
        main(["bench", "quality", "--seeds", "101", "--tune-seeds", "", "--frames", "8", "--out", str(tmp_path)]) == 0
    )
    q = json.loads((tmp_path / "quality.json").read_text())
    for m in ("full", "threshold"):
        assert set(q[m]) >= {
            "query_success",
            "mean_box_iou",
            "gaussian_accuracy",
            "abstention",
            "abstention_near_miss",
            "abstention_unrelated",
            "n_scenes",
            "n_queries",
        }
        assert q[m]["n_scenes"] == 1 and 0.0 <= q[m]["query_success"] <= 1.0
    assert "oracle perception" in q["perception"] and q["noise_preset"] == "realistic"
    assert q["min_similarity_mode"] == "calibrate" and q["map_resolution"] == [160, 120]
    assert set(q["per_class"]) == {o["class"] for o in q["objects"]} and isinstance(q["false_positives"], list)
    argv = ["--family", "libero", "--pose-noise-m", "0.003", "--pose-noise-deg", "0.3", "--depth-noise"]
    argv += ["--oracle-preset", "harsh", "--map-width", "96", "--map-height", "72", "--min-similarity", "shipped"]
    assert (
        main(["bench", "quality", "--seeds", "101", "--tune-seeds", "", "--frames", "6", "--out", str(tmp_path), *argv])
        == 0
    )
    q = json.loads((tmp_path / "quality.json").read_text())
    assert q["scene"]["family"] == "libero" and q["scene"]["pose_noise_m"] == 0.003 and q["scene"]["depth_noise"]
    assert q["noise_preset"] == "harsh" and q["map_resolution"] == [96, 72]
    shipped = Config.preset("oracle_bench").query.min_similarity
    assert q["query_min_similarity"] == shipped and q["min_similarity_mode"] == "shipped"
    assert (tmp_path / "sim_libero_orbit_s101_f6_pose0.003m0.3deg_depthnoise" / "gt.json").exists()
    assert main(["bench", "speed", "--seeds", "101", "--frames", "8", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "speed.json").read_text())
    assert set(s) >= {
        "device",
        "frames_per_s",
        "lift_ms_per_keyframe",
        "query_ms_p50",
        "query_ms_p99",
        "peak_mem_gb",
        "gaussians",
    }
    assert s["frames_per_s"] > 0 and s["gaussians"] > 0


def test_changes_bench_scores_both_methods_per_kind(tmp_path):
    argv = ["bench", "changes", "--seeds", "201", "--frames", "10", "--map-width", "96", "--map-height", "72"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "changes.json").read_text())
    assert r["scene"]["changes"] == "mixed" and "oracle perception" in r["perception"]
    for name in ("change handling", "no change handling"):
        m = r["methods"][name]
        assert set(m["per_kind"]) == {"moved", "removed", "added"}
        assert set(m["overall"]) >= {"found_new", "ghost", "id_kept", "removed_forgotten", "keyframes_to_update_p90"}
        assert m["keyframe_ms_mean"] > 0 and len(m["rows"]) == 3
    assert (tmp_path / "sim_primitives_orbit_s201_f10_mixed" / "gt.json").exists()


def test_device_benches_run_on_cpu(tmp_path):
    """The GPU benches' code paths (mapping, lifting, query latency, perception) at CPU sizes."""
    from gs_semantic_node.eval.perception import bench_perception
    from gs_semantic_node.types import Camera, Frame

    common = ["--seeds", "101", "--frames", "6", "--out", str(tmp_path)]

    def mapping(*extra) -> dict:
        """`bench mapping` at 64x48, 2 iterations, with extra flags; its first row."""
        argv = ["bench", "mapping", "--width", "64", "--height", "48", "--iters", "2", *extra, *common]
        assert main(argv) == 0
        return json.loads((tmp_path / "mapping.json").read_text())[0]

    m = mapping()
    assert m["frames"] + m["heldout_frames"] == 6 and m["heldout_frames"] >= 1
    assert m["frames_per_s"] > 0 and m["gaussians"] > 0 and m["heldout_psnr_db"] > 10 and m["split_large"] is True
    m = mapping("--frame-step", "2", "--split-large", "0")
    assert m["frames"] + m["heldout_frames"] == 3 and m["frame_step"] == 2 and m["split_large"] is False
    m = mapping("--max-gaussians", "300", "--cap-policy", "merge")
    assert m["cap_policy"] == "merge" and 0 < m["gaussians"] <= 300 and m["map_resolution_m"] > 0
    cam = tmp_path / "camera.yaml"  # a camera's params file: its mapper settings count, the flags' resolution too
    cam.write_text("/**:\n  ros__parameters:\n    mapper:\n      exposure_compensation: true\n      width: 320\n")
    m = mapping("--params", str(cam), "--heldout-fit", "3")
    assert m["exposure_compensation"] is True and m["pose_refinement"] is False and m["resolution"] == [64, 48]
    assert m["heldout_fit_steps"] == 3 and m["heldout_psnr_fitted_db"] > 10  # and the report is written
    assert "pose and response fitted" in (tmp_path / "mapping.md").read_text()
    assert main(["bench", "lift", "--width", "64", "--height", "48", "--sizes", "3000", "--repeats", "1", *common]) == 0
    lift = json.loads((tmp_path / "lift.json").read_text())[0]
    assert lift["gaussians"] == 3000 and lift["trace_ms"] > 0 and lift["registry_update_ms"] > 0
    assert lift["distill_ms"] > 0 and lift["lift_ms"] == pytest.approx(
        lift["trace_ms"] + lift["registry_update_ms"] + lift["distill_ms"]
    )  # what a keyframe's lift runs
    assert main(["bench", "latency", "--sizes", "20000", "--objects", "5", "--clip-model", "tiny", *common]) == 0
    lat = json.loads((tmp_path / "latency.json").read_text())[0]
    assert lat["gaussians"] == 20000 and lat["cold_p50_ms"] >= lat["warm_p50_ms"] > 0
    from gs_semantic_node.eval.fixtures import instructions
    from gs_semantic_node.query.parser import parse

    assert len({parse(t).target for t in instructions(3000)}) == 3000  # "cold" really is new to the cache
    rng = np.random.default_rng(0)
    f = Frame(
        (rng.random((48, 64, 3)) * 255).astype(np.uint8),
        np.ones((48, 64), np.float32),
        Camera(50, 50, 31.5, 23.5, 64, 48),
        np.eye(4),
        0.0,
        0,
    )
    rows = bench_perception(f, ["tiny"], "tiny", "cpu", repeats=1, clip_masks=4, stock_keep_all=True)
    kinds = {r["what"].split(" (")[0] for r in rows}
    assert {"SAM tiny ours", "SAM tiny stock SamAutomaticMaskGenerator", "SAM tiny image encoder alone"} <= kinds
    assert all(r["ms"] > 0 for r in rows)
    assert sum("image encoder alone" in r["what"] for r in rows) == 2  # stock and fused attention


def test_load_bench_queries_a_grown_map_through_the_node(tmp_path):
    """`bench load --map-gaussians`: offline base map -> grown -> LoadMap into the real node over
    loopback DDS -> fresh sentences while the bag replays into it."""
    assert (
        main(
            [
                "bench",
                "load",
                "--seeds",
                "101",
                "--frames",
                "6",
                "--threads",
                "2",
                "--per-thread",
                "15",
                "--map-gaussians",
                "20000",
                "--fresh-text",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    r = json.loads((tmp_path / "load.json").read_text())
    assert r["loaded"] == "loaded 20000 Gaussians" and r["map_gaussians"] == 20000
    assert r["queries"] == 30 and r["failures"] == 0 and r["distinct_instructions"] == 30
    assert 0 < r["rtt_ms_p50"] <= r["rtt_ms_p99"] and r["text_encoder"] == "text_proxy"
