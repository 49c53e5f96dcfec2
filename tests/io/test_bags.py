"""Any robot's bag: real TUM RGB-D frames (../shared/data) written the way robots record them (topic
names of their own, JPEG colour, slow camera_info, poses from another source at other stamps, no GT),
in both storages, read back as the same frames the node would assemble."""

import collections

import numpy as np
import pytest
from PIL import Image
from robot_bags import REALSENSE, TUM, needs_tum, tum_pose, tum_truth, write_robot_bag

from gs_semantic_node.config import Config, NodeConfig
from gs_semantic_node.io.assembler import PoseBuffer
from gs_semantic_node.io.bags import BagError, BagWriter, read_frames
from gs_semantic_node.io.datasets import ImportOptions, import_frames, import_tum
from gs_semantic_node.io.imageconv import decode_compressed, encode_compressed
from gs_semantic_node.types import Camera


@needs_tum
@pytest.mark.parametrize("storage,compressed", [("mcap", True), ("sqlite3", False), ("sqlite3", True)])
def test_a_robot_recording_reads_back_as_the_same_frames(tmp_path, storage, compressed):
    truth = tum_truth(11)
    write_robot_bag(tmp_path / "bag", truth, storage, compressed, np.random.default_rng(0))
    with pytest.raises(BagError, match="/camera/color/image_raw.*it holds.*/camera/camera/color"):
        list(read_frames(tmp_path / "bag"))  # the default topic names are not this robot's
    skipped = collections.Counter()
    got = list(read_frames(tmp_path, REALSENSE, faults=skipped))
    # the last image has no pose after it within its gap: it takes the one 4 ms later (nearest in slop)
    assert len(got) == len(truth) and not skipped, skipped
    for f, g in zip(truth, got):
        assert g.stamp == pytest.approx(f["t"]) and g.gt_instances is None
        err = np.abs(g.rgb.astype(int) - f["rgb"]).mean()
        assert err < 6.0 if compressed else err == 0  # JPEG at quality 90
        assert np.abs(g.depth - f["depth"]).max() <= 0.0006  # 16UC1 millimetres
        assert np.abs(g.T_world_cam[:3, 3] - f["T"][:3, 3]).max() < 2e-3  # interpolated odometry
        assert g.camera.width == 640 and g.camera.fx == pytest.approx(517.3)


@needs_tum
def test_import_tum_then_every_frame_reads_back(tmp_path):
    n = import_tum(TUM, tmp_path, ImportOptions(every=2, limit=5))
    assert n == 5
    truth = tum_truth(9)[::2]
    got = list(read_frames(tmp_path))
    assert len(got) == 5
    for f, g in zip(truth, got):
        assert np.array_equal(g.rgb, f["rgb"]) and np.abs(g.depth - f["depth"]).max() <= 0.0006
        assert np.allclose(g.T_world_cam, f["T"], atol=1e-6)
        assert np.allclose(g.T_world_depth, tum_pose(f["td"]), atol=1e-6)  # Kinect v1: depth at its own instant
    late_depth = NodeConfig(depth_time_offset=-0.025)
    for f, g in zip(truth, read_frames(tmp_path, late_depth)):
        assert np.allclose(g.T_world_depth, tum_pose(f["td"] - 0.025), atol=1e-6)
        assert g.T_world_rows is None  # a global shutter unless node.rgb_readout says otherwise
    for f, g in zip(truth, read_frames(tmp_path, NodeConfig(rgb_readout=0.02))):  # the Kinect v1's rolling shutter
        first, last = g.T_world_rows
        assert np.allclose(first, tum_pose(f["t"] - 0.01), atol=1e-6) and np.allclose(
            last, tum_pose(f["t"] + 0.01), atol=1e-6
        )
    import_tum(TUM, tmp_path / "late", ImportOptions(limit=3, pose_offset=0.03))
    late = tum_truth(3, pose_offset=0.03)
    for f, g in zip(late, read_frames(tmp_path / "late")):
        assert np.allclose(g.T_world_cam, f["T"], atol=1e-6) and g.stamp == pytest.approx(f["t"])
    assert not np.allclose(late[0]["T"], truth[0]["T"], atol=1e-3)  # the camera moved in those 30 ms


@needs_tum
def test_import_frames_reads_a_7scenes_layout(tmp_path):
    src = tmp_path / "seq-01"
    src.mkdir()
    truth = tum_truth(3)
    for i, f in enumerate(truth):
        Image.fromarray(f["rgb"]).save(src / f"frame-{i:06d}.color.png")
        mm = np.round(f["depth"] * 1000).astype(np.uint16)
        mm[mm == 0] = 65535  # 7-Scenes' "no depth"
        Image.fromarray(mm).save(src / f"frame-{i:06d}.depth.png")
        np.savetxt(src / f"frame-{i:06d}.pose.txt", f["T"])
    (src / "K.txt").write_text("517.3 516.5 318.6 255.3\n")
    assert import_frames(src, tmp_path / "out", ImportOptions(), intrinsics=str(src / "K.txt")) == 3
    got = list(read_frames(tmp_path / "out"))
    assert len(got) == 3 and got[0].camera.fx == pytest.approx(517.3)
    for f, g in zip(truth, got):
        assert np.array_equal(g.rgb, f["rgb"]) and np.allclose(g.T_world_cam, f["T"], atol=1e-6)
        assert np.abs(g.depth - f["depth"]).max() <= 0.0006 and (g.depth[f["depth"] == 0] == 0).all()


def test_pose_buffer_interpolates_and_refuses_gaps():
    from scipy.spatial.transform import Rotation

    pb = PoseBuffer(max_gap=0.5)
    a, b = np.eye(4), np.eye(4)
    b[:3, 3] = [1.0, 0, 0]
    b[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    pb.add(1.0, a)
    pb.add(1.4, b)
    mid = pb.at(1.2, 0.01)
    assert np.allclose(mid[:3, 3], [0.5, 0, 0])
    assert Rotation.from_matrix(mid[:3, :3]).magnitude() == pytest.approx(np.radians(45))
    assert pb.at(1.41, 0.02) is b and pb.at(1.5, 0.02) is None
    pb.add(3.0, a)  # 1.6 s gap: not interpolated across
    assert pb.at(2.0, 0.02) is None


def test_compressed_depth_roundtrip_and_garbage_is_an_image_error():
    from gs_semantic_node.io.imageconv import ImageError

    d = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    fmt, data = encode_compressed(d)
    back, enc = decode_compressed(fmt, data)
    assert enc == "16UC1" and np.array_equal(back, d)
    rgb = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    fmt, data = encode_compressed(rgb, "png")
    assert np.array_equal(decode_compressed(fmt, data)[0], rgb)
    with pytest.raises(ImageError):
        decode_compressed("jpeg", b"\xff\xd8 not a jpeg")


def test_depth_at_another_resolution_is_resampled_or_refused():
    from gs_semantic_node.io.validate import InputFault, resample_depth

    d = np.arange(4 * 6, dtype=np.uint16).reshape(4, 6)
    up = resample_depth(d, (8, 12))
    assert up.shape == (8, 12) and up[0, 0] == d[0, 0] and up[-1, -1] == d[-1, -1]
    with pytest.raises(InputFault, match="aspect"):
        resample_depth(d, (8, 8))


def test_oracle_perception_on_a_bag_without_ground_truth_says_so(tmp_path):
    from gs_semantic_node.offline import offline_pipeline

    cam = Camera(50, 50, 15.5, 11.5, 32, 24)
    with BagWriter(tmp_path / "bag") as w:
        for i in range(2):
            w.write_rgb(np.zeros((24, 32, 3), np.uint8), 1.0 + i)
            w.write_depth(np.ones((24, 32), np.float32), 1.0 + i)
            w.write_info(cam, 1.0 + i)
            w.write_pose(np.eye(4), 1.0 + i)
    with pytest.raises(FileNotFoundError, match="no simulator gt.json.*masks:=none"):
        offline_pipeline(tmp_path, Config.preset("oracle_bench"))
