"""SIGKILL while a map is being saved: the previous (or the new) complete map always loads."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from gs_semantic_node.io.mapfile import load_map, save_map

WRITER = r"""
import sys, numpy as np
from gs_semantic_node.io.mapfile import save_map
n = 200_000
rng = np.random.default_rng(1)
q = rng.normal(size=(n, 4)).astype(np.float32)
a = {"means": rng.normal(size=(n, 3)).astype(np.float32), "quats": q / np.linalg.norm(q, axis=1, keepdims=True),
     "scales": np.full((n, 3), 0.01, np.float32), "opacities": np.full(n, 0.5, np.float32),
     "rgb": np.full((n, 3), 0.5, np.float32), "features": np.zeros((n, 16), np.float32),
     "object_id": np.full(n, 7, np.int32), "confidence": np.ones(n, np.float32)}
print("ready", flush=True)
while True:
    save_map(sys.argv[1], a, {}, {"which": "big"})
"""


def small():
    n = 100
    q = np.tile([1, 0, 0, 0], (n, 1)).astype(np.float32)
    return {
        "means": np.zeros((n, 3), np.float32),
        "quats": q,
        "scales": np.full((n, 3), 0.01, np.float32),
        "opacities": np.full(n, 0.5, np.float32),
        "rgb": np.full((n, 3), 0.5, np.float32),
        "features": np.zeros((n, 16), np.float32),
        "object_id": np.full(n, 3, np.int32),
        "confidence": np.ones(n, np.float32),
    }


def test_sigkill_during_save_never_corrupts(tmp_path):
    path = tmp_path / "map"
    save_map(path, small(), {}, {"which": "small"})
    rng = np.random.default_rng(0)
    outcomes = set()
    for trial in range(6):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.05, 1.5)))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        arrays, _, meta = load_map(path)  # must not raise
        n = len(arrays["means"])
        assert (meta["which"], n) in {("small", 100), ("big", 200_000)}
        assert (arrays["object_id"] == (3 if n == 100 else 7)).all()
        outcomes.add(meta["which"])
    assert "big" in outcomes or "small" in outcomes
