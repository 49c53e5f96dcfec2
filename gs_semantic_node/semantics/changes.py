"""Objects through changes of the scene: retired when free space takes their Gaussians, the same
object again (its id kept) when it reappears elsewhere, added when it appears on mapped surface.

The mapper removes the Gaussians that later views see through (Mapper.carve) and reports their
object ids; an object that lost `retire_share` of its Gaussians that way (of those free space can
judge: not the band on its support) is gone from where it was. If its own masks already found it
elsewhere (its Gaussians away from where it stood), it moved in view and stays; otherwise its record
is kept aside (its vote column reserved) for `move_window` seconds: an object that appears meanwhile
with an agreeing embedding and a similar size is that object moved, and takes its id back. Objects
are compared as they were before free space began to take them. Events (moved | removed | added)
queue up for the node's `~/changes` topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import SemanticsConfig
from ..mapping.gaussians import GaussianMap
from ..types import OrientedBox, SemanticObject
from .records import BACKGROUND, ObjectRecord, appeared_where_free


@dataclass
class ObjectChange:
    id: int
    label: str
    kind: str  # moved | removed | added
    old_box: OrientedBox | None
    new_box: OrientedBox | None
    stamp: float
    seq: int = 0  # position in the pipeline's change log (readers keep the last they saw)


@dataclass
class Retired:
    record: ObjectRecord
    last: SemanticObject  # as it was last reported, where it stood
    stamp: float


class ChangeTracker:
    def __init__(self, cfg: SemanticsConfig, classify: Callable | None = None):
        self.cfg = cfg
        self.classify = classify  # embedding -> (label, confidence, alternatives): names a moved object anew
        self.carved: dict[int, int] = {}  # object id -> its Gaussians free space removed
        self.intact: dict[int, SemanticObject] = {}  # ... and as it was reported before free space took any
        self.retired: dict[int, Retired] = {}
        self.moving: dict[int, SemanticObject] = {}  # gone from where it stood (as it stood), seen elsewhere
        self.known: dict[int, SemanticObject] = {}  # last reported, by id
        self.added: dict[int, float] = {}  # recently added object id -> stamp (a moved one may retire later)
        self.events: list[ObjectChange] = []

    def note_carved(self, ids: torch.Tensor) -> None:
        if ids.numel() == 0:
            return
        u, c = torch.unique(ids.long(), return_counts=True)
        for i, n in zip(u.tolist(), c.tolist()):
            if i != BACKGROUND:
                if i not in self.carved and i in self.known:
                    self.intact[i] = self.known[i]
                self.carved[i] = self.carved.get(i, 0) + n

    def reserved(self) -> set[int]:
        """Vote columns no new object may take: the retired ones that may come back."""
        return set(self.retired)

    @torch.no_grad()
    def retire(self, records: dict, gmap: GaussianMap, stamp: float) -> list[int]:
        """Objects whose Gaussians free space mostly took: their votes go, their records aside. One
        whose Gaussians stand elsewhere (its masks found it there) keeps those and is moving."""
        out = []
        ids = gmap.state["object_id"]
        means = gmap.means.detach()
        for i, n in list(self.carved.items()):
            if i not in records:
                del self.carved[i]
                self.intact.pop(i, None)
                continue
            mine = torch.nonzero(ids == i).squeeze(1)
            last = self.intact.get(i, self.known.get(i))
            if n < self.cfg.retire_share * (n + self._judged(means[mine], last)):
                continue
            del self.carved[i]
            self.intact.pop(i, None)
            if last is not None and self._moves_in_view(i, mine, means, last, gmap):
                continue
            rec = records.pop(i)
            gmap.state["votes"][:, i] = 0
            out.append(i)
            if last is None:  # never reported: nothing a reader knew is gone
                continue
            self.retired[i] = Retired(rec, last, stamp)
            self.events.append(ObjectChange(i, last.label, "removed", last.obb, None, stamp))
        self._expire(stamp)
        return out

    def _judged(self, pts: torch.Tensor, last: SemanticObject | None) -> int:
        """How many of an object's Gaussians free space can judge: those clear of the band on its
        support (retire_support_band, at most half its height), where a view through the object's place
        meets the support within the carving margin and neither carves nor clears them."""
        if last is None or last.obb is None or len(pts) == 0:
            return len(pts)
        z = last.obb.corners()[:, 2]
        band = min(self.cfg.retire_support_band, 0.5 * float(z.max() - z.min()))
        return int((pts[:, 2] > float(z.min()) + band).sum())

    def _moves_in_view(
        self, i: int, mine: torch.Tensor, means: torch.Tensor, last: SemanticObject, gmap: GaussianMap
    ) -> bool:
        """Its masks found the object elsewhere before free space cleared where it stood (views that see
        both places): at least min_object_gaussians of its Gaussians lie away from its old box. Those
        stay the object; the rest lose their votes for it (they go with the old place)."""
        if last.obb is None or len(mine) == 0:
            return False
        b = last.obb
        center, rot, half = (torch.as_tensor(x, device=means.device) for x in (b.center, b.rotation, b.size / 2))
        local = ((means[mine].double() - center) @ rot).abs()
        at_old = (local <= half + self.cfg.split_eps / 2).all(1)
        if int((~at_old).sum()) < self.cfg.min_object_gaussians:
            return False
        gmap.state["votes"][mine[at_old], i] = 0
        self.moving[i] = last
        return True

    def _expire(self, stamp: float) -> None:
        keep = self.cfg.move_window
        for i in [i for i, r in self.retired.items() if stamp - r.stamp > keep]:
            del self.retired[i]
        for i in [i for i, t in self.added.items() if stamp - t > keep]:
            del self.added[i]
        while len(self.retired) > self.cfg.max_retired:
            del self.retired[min(self.retired, key=lambda k: self.retired[k].stamp)]

    def same_object(self, new: SemanticObject, old: SemanticObject) -> bool:
        """Agreeing embeddings, a similar size, and somewhere else."""
        cfg = self.cfg
        if new.embedding is None or old.embedding is None or new.obb is None or old.obb is None:
            return False
        if float(np.dot(new.embedding, old.embedding)) < cfg.move_min_similarity:
            return False
        a, b = np.sort(new.obb.size), np.sort(old.obb.size)
        if np.any(np.maximum(a, b) > cfg.move_size_ratio * np.maximum(np.minimum(a, b), 1e-3)):
            return False
        return float(np.linalg.norm(new.obb.center - old.obb.center)) >= cfg.move_min_distance

    @torch.no_grad()
    def update(self, objects: list[SemanticObject], records: dict, gmap: GaussianMap, stamp: float) -> None:
        """After a refresh: new objects that are retired ones moved take their ids back (in place, in
        `objects`, `records` and the map); others on mapped surface are added."""
        appeared = gmap.state["appeared"]
        ids = gmap.state["object_id"]
        things = [o for o in objects if not o.is_background]
        self._arrived(things, records, gmap, stamp)
        for o in things:
            if o.id in self.known or o.id in self.added:
                continue
            match = self._match(o, [r.last for r in self.retired.values()])
            if match is not None:
                self._moved(o, match, records, gmap, stamp)
                continue
            # the first map has nothing to be added to
            if self.known and appeared_where_free(appeared, ids == o.id, self.cfg.added_share):
                self.added[o.id] = stamp
                self.events.append(ObjectChange(o.id, o.label, "added", None, o.obb, stamp))
        # an object added a moment ago that now matches a retired one is that one moved: retired after it
        # was seen at its new place, or first reported there from a view or two (a partial box)
        for i in list(self.added):
            o = next((x for x in things if x.id == i), None)
            match = self._match(o, [r.last for r in self.retired.values()]) if o else None
            if match is not None:
                del self.added[i]
                self._moved(o, match, records, gmap, stamp)
        self.known = {o.id: o for o in objects}

    def _arrived(self, things: list[SemanticObject], records: dict, gmap: GaussianMap, stamp: float) -> None:
        """Objects moving in view: reported elsewhere now, moved; not reportable, removed (and aside)."""
        for i, was in list(self.moving.items()):
            del self.moving[i]
            o = next((x for x in things if x.id == i), None)
            if o is None:
                if i in records:
                    self.retired[i] = Retired(records.pop(i), was, stamp)
                    gmap.state["votes"][:, i] = 0
                self.events.append(ObjectChange(i, was.label, "removed", was.obb, None, stamp))
            elif float(np.linalg.norm(o.obb.center - was.obb.center)) >= self.cfg.move_min_distance:
                self.events.append(ObjectChange(i, o.label, "moved", was.obb, o.obb, stamp))
            # else: it stands where it stood, less what free space took of it

    def _moved(self, o: SemanticObject, was: SemanticObject, records: dict, gmap: GaussianMap, stamp: float):
        """o is the retired object `was`, moved: it takes its id back, and the move is announced."""
        old = self.retired.pop(was.id)
        self._renumber(o, was.id, records, gmap, old.record)
        self._rename(o, records[o.id])
        self.events.append(ObjectChange(o.id, o.label, "moved", was.obb, o.obb, stamp))

    def _rename(self, o: SemanticObject, rec: ObjectRecord) -> None:
        """A moved object is named from all its views, those before the move too: the few at its new
        place alone name it less surely than the ones that named it before."""
        if self.classify is None:
            return
        o.embedding = rec.embedding()
        o.view_embeddings = rec.view_embeddings()
        o.label, o.confidence, o.alternatives = self.classify(o.embedding)

    def _match(self, o: SemanticObject, candidates: list[SemanticObject]) -> SemanticObject | None:
        best, score = None, -1.0
        for c in candidates:
            if self.same_object(o, c):
                s = float(np.dot(o.embedding, c.embedding))
                if s > score:
                    best, score = c, s
        return best

    def _renumber(
        self, o: SemanticObject, old_id: int, records: dict, gmap: GaussianMap, old_rec: ObjectRecord
    ) -> None:
        """Object o takes the id it had before it moved: its vote column, record and Gaussians."""
        new_id = o.id
        votes = gmap.state["votes"]
        votes[:, old_id] = votes[:, new_id]
        votes[:, new_id] = 0
        ids = gmap.state["object_id"]
        ids[ids == new_id] = old_id
        rec = records.pop(new_id)
        rec.id = old_id
        rec.views = sorted(rec.views + old_rec.views, key=lambda v: -v[0])[: self.cfg.top_k_views]
        rec.n_masks += old_rec.n_masks
        records[old_id] = rec
        o.id = old_id

    def drain(self) -> list[ObjectChange]:
        out, self.events = self.events, []
        return out
