"""Map persistence: a standard 3DGS PLY (gsplat.export_splats, loadable by common viewers) plus a
semantics sidecar (`<map>.ply.semantics.npz`) tied to the PLY by its SHA-256.

Crash safety: both files are written to temporaries first; the previous sidecar is kept as
`.prev`; renames go sidecar first, PLY last. Whenever the process dies, the PLY on disk has a
matching sidecar (new or .prev), so the last complete map always loads. Loading validates
everything and raises MapFileError without touching the caller's map.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData

from ..mapping.gaussians import SH_C0

REQUIRED = (
    "x",
    "y",
    "z",
    "f_dc_0",
    "f_dc_1",
    "f_dc_2",
    "opacity",
    "scale_0",
    "scale_1",
    "scale_2",
    "rot_0",
    "rot_1",
    "rot_2",
    "rot_3",
)


class MapFileError(RuntimeError):
    pass


def confined_path(map_dir: str | Path, name: str) -> Path:
    """`name` inside `map_dir`, for paths that reach the node from outside (SaveMap / LoadMap over DDS).
    Only relative names without '..' are taken, and the resolved path (symlinks followed) must stay
    inside the resolved map_dir; anything else raises MapFileError."""
    base = Path(map_dir).expanduser().resolve()
    n = str(name).strip()
    if not n:
        raise MapFileError("empty map name")
    p = Path(n)
    if p.is_absolute() or n.startswith("~") or ".." in p.parts or "\0" in n:
        raise MapFileError(f"map name {name!r} refused: give a name relative to node.map_dir ({base}), without '..'")
    full = (base / p).resolve()
    files = _paths(full)
    for q in (full, *files, *(f.with_name(f.name + ".tmp") for f in files)):
        q = q.resolve()
        if q == base or base not in q.parents:
            raise MapFileError(f"map name {name!r} refused: it leads outside node.map_dir ({base})")
    return full


def _paths(path: str | Path) -> tuple[Path, Path, Path]:
    p = Path(path)
    if p.suffix != ".ply":
        p = p.with_name(p.name + ".ply")
    return p, p.with_name(p.name + ".semantics.npz"), p.with_name(p.name + ".semantics.prev.npz")


def _fsync_write(path: Path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_map(path: str | Path, arrays: dict, records: dict | None = None, meta: dict | None = None) -> Path:
    """arrays: GaussianMap.snapshot() (+ optional 'votes'); records: {id: {"views": [(weight, embedding), ...],
    "n_masks": int, "last_seen": float}} (the object registry's state)."""
    from gsplat import export_splats

    ply, side, prev = _paths(path)
    ply.parent.mkdir(parents=True, exist_ok=True)

    def t(k):
        return torch.as_tensor(np.asarray(arrays[k]), dtype=torch.float32)

    sh0 = ((t("rgb") - 0.5) / SH_C0)[:, None, :]
    op = t("opacities").clamp(1e-6, 1 - 1e-6)
    if len(sh0):
        data = export_splats(
            means=t("means"),
            scales=torch.log(t("scales").clamp(min=1e-9)),
            quats=t("quats"),
            opacities=torch.log(op / (1 - op)),
            sh0=sh0,
            shN=torch.zeros(len(sh0), 0, 3),
            format="ply",
        )
    else:  # an empty map is a valid map (export_splats cannot shape zero rows)
        from plyfile import PlyElement

        buf0 = io.BytesIO()
        PlyData([PlyElement.describe(np.zeros(0, dtype=[(k, "<f4") for k in REQUIRED]), "vertex")]).write(buf0)
        data = buf0.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    rec = {
        str(k): {
            "views": [[float(w), np.asarray(e, np.float32).tolist()] for w, e in r["views"]],
            "n_masks": int(r.get("n_masks", 0)),
            "last_seen": float(r.get("last_seen", 0.0)),
        }
        for k, r in (records or {}).items()
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        object_id=np.asarray(arrays["object_id"], np.int32),
        confidence=np.asarray(arrays["confidence"], np.float32),
        features=np.asarray(arrays["features"], np.float32),
        votes=np.asarray(arrays.get("votes", np.zeros((len(sh0), 0))), np.float32),
        header=np.frombuffer(
            json.dumps({"ply_sha256": digest, "n": len(sh0), "records": rec, "meta": meta or {}}).encode(), np.uint8
        ),
    )
    tmp_ply, tmp_side = ply.with_name(ply.name + ".tmp"), side.with_name(side.name + ".tmp")
    _fsync_write(tmp_ply, data)
    _fsync_write(tmp_side, buf.getvalue())
    if side.exists() and ply.exists():
        os.replace(side, prev)
    os.replace(tmp_side, side)
    os.replace(tmp_ply, ply)
    dfd = os.open(ply.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return ply


def load_map(path: str | Path) -> tuple[dict, dict, dict]:
    """-> (arrays, records, meta); MapFileError on anything missing, truncated or inconsistent."""
    ply, side, prev = _paths(path)
    if not ply.is_file():
        raise MapFileError(f"no map at {ply}")
    raw = ply.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        el = PlyData.read(io.BytesIO(raw))["vertex"]
        names = el.data.dtype.names
        missing = [r for r in REQUIRED if r not in names]
        if missing:
            raise MapFileError(f"{ply} is not a 3DGS PLY (missing {missing})")
        v = {k: np.asarray(el[k], np.float32) for k in REQUIRED}
    except MapFileError:
        raise
    except Exception as e:  # plyfile raises many kinds on truncated input
        raise MapFileError(f"{ply} is corrupt or truncated: {e}") from e
    n = len(v["x"])
    side_data = None
    for cand in (side, prev):
        if not cand.is_file():
            continue
        try:
            with np.load(cand) as z:
                header = json.loads(bytes(z["header"]).decode())
                if header.get("ply_sha256") == digest:
                    side_data = ({k: z[k] for k in ("object_id", "confidence", "features", "votes")}, header)
                    break
        except Exception as e:
            if cand == prev:
                raise MapFileError(f"semantics sidecar of {ply} is corrupt: {e}") from e
    if side_data is None:
        raise MapFileError(f"no semantics sidecar matching {ply} (expected {side.name})")
    sem, header = side_data
    if any(len(a) != n for a in (sem["object_id"], sem["confidence"], sem["features"])):
        raise MapFileError(f"sidecar of {ply} does not match its {n} Gaussians")
    means = np.stack([v["x"], v["y"], v["z"]], 1)
    arrays = {
        "means": means,
        "quats": np.stack([v[f"rot_{i}"] for i in range(4)], 1),
        "scales": np.exp(np.stack([v[f"scale_{i}"] for i in range(3)], 1)),
        "opacities": 1 / (1 + np.exp(-v["opacity"])),
        "rgb": np.clip(np.stack([v[f"f_dc_{i}"] for i in range(3)], 1) * SH_C0 + 0.5, 0, 1),
        "object_id": sem["object_id"],
        "confidence": sem["confidence"],
        "features": sem["features"],
    }
    if sem["votes"].size:
        arrays["votes"] = sem["votes"]
    for k, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise MapFileError(f"{ply}: non-finite values in {k}")
    try:
        records = {int(k): _record(val) for k, val in header["records"].items()}
    except (TypeError, ValueError, KeyError) as e:
        raise MapFileError(f"object records in the sidecar of {ply} are malformed: {e}") from e
    return arrays, records, header.get("meta", {})


def _record(val) -> dict:
    if isinstance(val, list):  # maps saved before records kept their counts: one mask per view kept
        val = {"views": val, "n_masks": len(val), "last_seen": 0.0}
    return {
        "views": [(float(w), np.asarray(e, np.float32)) for w, e in val["views"]],
        "n_masks": int(val["n_masks"]),
        "last_seen": float(val["last_seen"]),
    }
