"""Shared fixtures. Every test process stays on loopback DDS with its own domain id."""

import os
import random

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 199)))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory):
    """A short, small-resolution primitives scene as an MCAP bag + GT."""
    from gs_semantic_node.sim.generate import SimConfig, generate

    out = tmp_path_factory.mktemp("sim")
    return generate(SimConfig(seed=5, frames=12, width=320, height=240), out, progress=False)
