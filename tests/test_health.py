"""Fail fast at start-up (one clear line), never die after it; set-up names missing system packages;
map files stay inside node.map_dir."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gs_semantic_node.config import Config
from gs_semantic_node.health import StageHealth, StartupError, preflight
from gs_semantic_node.io.mapfile import MapFileError, confined_path

ROOT = Path(__file__).resolve().parents[1]


def ok_config(tmp_path) -> Config:
    cfg = Config.preset("oracle_bench")
    (tmp_path / "gt.json").write_text("{}")
    cfg.perception.gt_path = str(tmp_path / "gt.json")
    cfg.node.map_dir = str(tmp_path / "maps")
    return cfg


def test_preflight_passes_a_complete_config(tmp_path):
    preflight(ok_config(tmp_path))
    assert (tmp_path / "maps").is_dir()


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda c: setattr(c.perception, "gt_path", "/nowhere/gt.json"), "oracle perception"),
        (
            lambda c: (setattr(c.perception, "masks", "sam"), setattr(c.perception, "sam_checkpoint", "/x/sam.pth")),
            "SAM vit_h checkpoint not found at '/x/sam.pth'",
        ),
        (lambda c: setattr(c.perception, "embedder", "clip"), "CLIP ViT-B-16 checkpoint not set"),
        (lambda c: setattr(c.semantics, "vocabulary", []), "semantics.vocabulary"),
        (lambda c: setattr(c.mapper, "backend", "gsplat"), "gsplat"),
        (lambda c: setattr(c.node, "map_dir", "/proc/no/such"), "node.map_dir"),
        (lambda c: setattr(c.node, "rgb_readout", -0.02), "node.rgb_readout -0.02 s is no colour readout"),
    ],
)
def test_preflight_names_what_is_missing(tmp_path, change, words):
    cfg = ok_config(tmp_path)
    change(cfg)
    if words == "gsplat":
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    with pytest.raises(StartupError, match=words.replace("(", r"\(")) as e:
        preflight(cfg)
    assert "\n" not in str(e.value)


def test_a_missing_open3d_stops_the_start(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)  # import open3d -> ImportError
    with pytest.raises(StartupError, match="open3d"):
        preflight(ok_config(tmp_path))


def test_stage_health_counts_logs_once_with_traceback_and_recovers():
    lines = []
    h = StageHealth(lines.append, period=3600)
    for _ in range(3):
        with h.guard("publish"):
            raise RuntimeError("boom")
    assert h.errors["publish"] == 3 and h.failing == {"publish": "RuntimeError: boom"}
    assert len(lines) == 1 and "Traceback" in lines[0]  # rate-limited, the traceback once
    with h.guard("publish"):
        pass
    assert "publish" not in h.failing and lines[-1] == "publish works again"


def test_map_names_are_confined_to_the_map_dir(tmp_path):
    d = tmp_path / "maps"
    d.mkdir()
    assert confined_path(d, "kitchen/run1") == (d / "kitchen" / "run1").resolve()
    (d / "out").symlink_to(tmp_path)
    for bad in ("/etc/passwd", "../x", "a/../../x", "~/x", "", "out/x"):
        with pytest.raises(MapFileError):
            confined_path(d, bad)


def run_system_check(env_extra: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, GS_APT="0", **env_extra)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "system_deps.sh")], env=env, capture_output=True, text=True, timeout=60
    )


def test_setup_names_the_system_packages_it_lacks(tmp_path):
    """Set-up's check against an empty library path: it stops with one line naming every library package."""
    r = run_system_check({"GS_LIBRARY_PATH": str(tmp_path)})
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[setup] missing system packages:")
    listed = [
        ln.split()[0]
        for ln in (ROOT / "scripts" / "system-packages.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#") and ln.split()[1].startswith(("lib:", "dri:"))
    ]
    assert listed and all(p in lines[0] for p in listed)


def test_setup_check_passes_on_this_machine():
    """This machine ran set-up, so nothing is missing (what set-up installs is what the venv needs)."""
    r = run_system_check({"PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr


def test_typed_config_refuses_what_a_field_does_not_take_and_presets_match_their_yaml():
    from gs_semantic_node.config import PRESETS, ConfigError

    cfg = Config()
    assert cfg.perception.masks == "sam" and cfg.perception.embedder == "clip"  # the code defaults: a robot
    for name, value, words in (
        ("mapper.cap_policy", "drop", "one of 'evict', 'merge'"),
        ("mapper.width", 1.5, "int"),
        ("node.pose_type", "tf", "one of"),
        ("mapper.device", "gpu", "cuda"),
        ("semantics.vocabulary", "mug", "list"),
        ("node.nope", 1, "unknown"),
    ):
        with pytest.raises(ConfigError, match=words):
            cfg.set(name, value)
    cfg.set("mapper.lr_means", 1)  # ROS hands an int for a float parameter
    assert isinstance(cfg.mapper.lr_means, float)
    demo = Config.from_yaml(ROOT / "config" / "tabletop_demo.yaml")
    for k, v in PRESETS["oracle_bench"].items():  # the demo runs the oracle bench's preset
        assert demo.flat()[k] == v, k


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_every_shipped_params_file_names_only_real_parameters(name):
    """A typo in a shipped file would stop the node at start-up: each one loads into the typed config."""
    cfg = Config.from_yaml(ROOT / "config" / name)
    if name == "kinect_v1.yaml":
        assert cfg.node.rgb_readout > 0 and cfg.mapper.exposure_compensation and cfg.mapper.pose_refinement
