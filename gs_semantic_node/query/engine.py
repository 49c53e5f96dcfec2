"""Retrieval over objects, not Gaussians, with an honest "not present".

Each object's embedding is scored against the target phrase. Evidence must clear two bars:
absolute cosine similarity (calibrated on tuning seeds) and LangSplat-style relevancy against
canonical negatives ("object", "things", "stuff", "texture"). Confidence is a softmax over the
objects plus the negatives. A `threshold` mode reproduces per-Gaussian similarity selection for
the benchmark's side-by-side comparison only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import QueryConfig
from ..types import SemanticObject
from .parser import ParsedQuery, parse


class QueryError(ValueError):
    """Queries that are not answerable as given (empty, too long, not text)."""


@dataclass
class QueryResult:
    found: bool
    parsed: ParsedQuery | None
    objects: list[SemanticObject] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    message: str = ""


class QueryEngine:
    def __init__(self, cfg: QueryConfig, embed_text):
        self.cfg = cfg
        self.embed_text = embed_text

    def validate(self, instruction) -> str:
        if not isinstance(instruction, str):
            raise QueryError(f"instruction must be text, got {type(instruction).__name__}")
        s = instruction.strip()
        if not s:
            raise QueryError("empty instruction")
        if len(s) > self.cfg.max_instruction_chars:
            raise QueryError(f"instruction longer than {self.cfg.max_instruction_chars} characters")
        if not any(c.isalpha() for c in s):
            raise QueryError("instruction has no words")
        return s

    @staticmethod
    def _closest_views(o: SemanticObject, tvec: np.ndarray, n: int) -> tuple[np.ndarray, float]:
        """The n views closest to the phrase: their mean embedding and mean cosine (not the cosine of
        the normalised mean, which one agreeing view plus one orthogonal one would push to 0.71)."""
        V = o.view_embeddings
        if V is None or len(V) < n:
            return o.embedding, float(o.embedding @ tvec)
        c = V @ tvec
        top = np.argsort(-c)[:n]
        e = V[top].mean(0)
        return e / max(float(np.linalg.norm(e)), 1e-8), float(c[top].mean())

    def relevancy(self, obj_emb: np.ndarray, target: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        """min over negatives of softmax([s_target, s_negative]) (LangSplat), per object."""
        t = self.cfg.temperature
        st = obj_emb @ target / t
        sn = obj_emb @ negatives.T / t
        return np.min(1.0 / (1.0 + np.exp(sn - st[:, None])), axis=1)

    def label_is_sure(self, o: SemanticObject) -> bool:
        """Sure = the label clears a floor and beats the runner-up by a ratio (Lowe's test): a can read
        at 0.45 against 0.05 for the next class is a can; an apple at 0.6 against 0.33 "banana" is not
        sure enough to answer "banana" (or "apple") from its label alone."""
        if not o.label or o.confidence < self.cfg.label_min_confidence:
            return False
        runner_up = o.alternatives[0][1] if o.alternatives else 0.0
        return o.confidence >= self.cfg.label_min_ratio * runner_up

    def score(self, cands: list[SemanticObject], E: np.ndarray, tvec: np.ndarray, negs: np.ndarray):
        """Per candidate: cosine evidence, relevancy against the negatives, softmax probability."""
        sim = E @ tvec
        rel = self.relevancy(E, tvec, negs)
        k_views = self.cfg.view_evidence
        if k_views > 0:  # a few views that agree on the phrase are evidence too (not a single, maybe misread one)
            views = [self._closest_views(o, tvec, k_views) for o in cands]
            sim = np.maximum(sim, [c for _, c in views])
            rel = np.maximum(rel, self.relevancy(np.stack([e for e, _ in views]), tvec, negs))
        # an object's vocabulary label is its embedding snapped to a clean class name: when the
        # classifier is sure, the label's text embedding is evidence too (denoises the views' average)
        sure = np.array([self.label_is_sure(o) for o in cands])
        if sure.any():
            L = self.embed_text([o.label for o in cands])
            sim = np.where(sure, np.maximum(sim, L @ tvec), sim)
            rel = np.where(sure, np.maximum(rel, self.relevancy(L, tvec, negs)), rel)
        logits = np.concatenate([sim, negs @ tvec]) / self.cfg.temperature
        prob = np.exp(logits - logits.max())
        return sim, rel, (prob / prob.sum())[: len(cands)]

    def query(
        self,
        instruction,
        objects: list[SemanticObject],
        max_results: int = 0,
        camera_position: np.ndarray | None = None,
    ) -> QueryResult:
        try:
            text = self.validate(instruction)
        except QueryError as e:
            return QueryResult(False, None, message=f"rejected: {e}")
        p = parse(text)
        if not p.target:
            return QueryResult(False, p, message="could not find an object phrase in the instruction")
        cands = [o for o in objects if o.embedding is not None and (self.cfg.include_background or not o.is_background)]
        if not cands:
            return QueryResult(False, p, message="the map is empty: no objects yet")
        E = np.stack([o.embedding for o in cands])
        vecs = self.embed_text([p.target] + list(self.cfg.negatives) + ([p.anchor] if p.anchor else []))
        sim, rel, prob = self.score(cands, E, vecs[0], vecs[1 : 1 + len(self.cfg.negatives)])
        ok = (sim >= self.cfg.min_similarity) & (rel >= self.cfg.min_relevancy)
        # of equal evidence (two objects whose sure labels both read the target), the one more of the
        # map backs first: a few stray Gaussians that took a real object's label do not shadow it
        size = np.array([o.num_gaussians for o in cands])
        order = [i for i in np.lexsort((-size, -np.round(sim, 6))) if ok[i]]
        if order:  # drop candidates the softmax gives a tenth of the best one's probability or less
            order = [i for i in order if prob[i] >= 0.1 * prob[order[0]]]
        if p.relation and order:
            order = self.apply_relation(p, cands, order, E, vecs[-1] if p.anchor else None, camera_position)
        n = max_results or self.cfg.max_results
        if p.count > 1:
            n = max(n, p.count)
        order = order[: (len(order) if p.count == 0 else n)]
        if not order:
            best = int(np.argmax(sim))
            why = []  # only the bars it failed (a relation can drop candidates that cleared both)
            if not sim[best] >= self.cfg.min_similarity:
                why.append(f"similarity {sim[best]:.2f} < {self.cfg.min_similarity:.2f}")
            if not rel[best] >= self.cfg.min_relevancy:
                why.append(f"relevancy {rel[best]:.2f} < {self.cfg.min_relevancy:.2f}")
            return QueryResult(
                False,
                p,
                message=f"'{p.target}' is not in the map (best match '{cands[best].label}', "
                f"{', '.join(why) or 'no match satisfies the relation'})",
            )
        found = [cands[i] for i in order]
        msg = f"found {len(found)} x '{p.target}'"
        if p.count > 1 and len(found) < p.count:
            msg += f" (asked for {p.count})"
        return QueryResult(
            True, p, found, [float(prob[i] / max(prob[order].sum(), 1e-9) * min(1.0, rel[i] * 2)) for i in order], msg
        )

    def apply_relation(self, p: ParsedQuery, cands, order, E, anchor_vec, camera_position):
        if p.relation == "nearest_camera" and camera_position is not None:
            return sorted(order, key=lambda i: float(np.linalg.norm(cands[i].centroid - camera_position)))
        if anchor_vec is None:
            return order
        a_sim = E @ anchor_vec
        anchors = [i for i in np.argsort(-a_sim) if a_sim[i] >= self.cfg.min_similarity and i not in order[:0]]
        if not anchors:
            return order
        a = cands[anchors[0]]
        d = {i: float(np.linalg.norm(cands[i].centroid - a.centroid)) for i in order if cands[i] is not a}
        if p.relation in ("next_to", "in", "on"):
            return sorted(d, key=d.get)
        if p.relation in ("left_of", "right_of") and camera_position is not None:
            fwd = a.centroid - camera_position
            right = np.cross(fwd, [0, 0, 1.0])
            side = {i: float((cands[i].centroid - a.centroid) @ right) for i in d}
            keep = [i for i in d if (side[i] < 0) == (p.relation == "left_of")]
            return sorted(keep, key=d.get)
        return order

    @staticmethod
    def threshold_select(gaussian_language: np.ndarray, target: np.ndarray, t: float) -> np.ndarray:
        """Baseline: indices of Gaussians whose own language feature clears cosine t."""
        return np.nonzero(gaussian_language @ target >= t)[0]
