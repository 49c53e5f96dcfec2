"""`gs-semantic bench latency`: in-process QueryEngine.query on a synthetic map of a given size, text
encoding included (cold: each phrase new to the text cache; warm: cached)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import QueryConfig
from ..mapping.mapper import resolve_device
from .common import device_name, write_rows
from .fixtures import instructions, random_clip, synthetic_objects


def bench_latency(
    n_gaussians: int, n_objects: int, embedder, queries: int = 300, vocab: list[str] | None = None
) -> dict:
    """In-process `QueryEngine.query` on a map of n_gaussians split into n_objects (text encoding
    included: cold = each phrase new to the cache, warm = cached)."""
    from ..query.engine import QueryEngine

    dim = embedder.embed_text(["x"]).shape[1]
    objs = synthetic_objects(n_gaussians, n_objects, dim)
    eng = QueryEngine(QueryConfig(), embedder.embed_text)
    texts = instructions(queries, vocab)
    eng.query(texts[0], objs)  # negatives + first encode, untimed
    res = {}
    for name, batch in (("cold", texts[1:]), ("warm", texts[1:])):
        lat = []
        for q in batch:
            t = time.perf_counter()
            eng.query(q, objs)
            lat.append(1e3 * (time.perf_counter() - t))
        res[name] = {
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "queries": len(lat),
        }
    return {"gaussians": n_gaussians, "objects": n_objects, **res}


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(a.device)
    clip = a.clip_model or "ViT-B-16"
    if clip == "text_proxy":
        from ..perception.oracle import TextProxyEmbedder

        emb = TextProxyEmbedder(None)
    else:
        emb = random_clip(clip, dev)
    rows = [
        dict(bench_latency(int(n), a.objects or 50, emb), device=device_name(dev), text_encoder=clip)
        for n in a.sizes.split(",")
    ]
    rows = [
        {
            **{k: v for k, v in r.items() if k not in ("cold", "warm")},
            **{f"{k}_{m}": r[k][m] for k in ("cold", "warm") for m in ("p50_ms", "p99_ms")},
        }
        for r in rows
    ]
    cols = [
        "gaussians",
        "objects",
        "text_encoder",
        "cold_p50_ms",
        "cold_p99_ms",
        "warm_p50_ms",
        "warm_p99_ms",
        "device",
    ]
    return write_rows(out, "latency", rows, cols)
