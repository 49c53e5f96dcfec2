import numpy as np
import pytest

from gs_semantic_node.config import QueryConfig
from gs_semantic_node.query.engine import QueryEngine
from gs_semantic_node.query.parser import parse
from gs_semantic_node.types import OrientedBox, SemanticObject


@pytest.mark.parametrize("text,target,count,relation,anchor", [
    ("grab the mug", "mug", 1, None, None),
    ("Please pick up the red bowl.", "red bowl", 1, None, None),
    ("where is the ketchup?", "ketchup", 1, None, None),
    ("bring me the two books", "book", 2, None, None),
    ("the mug next to the bowl", "mug", 1, "next_to", "bowl"),
    ("could you hand me the cup left of the plate", "cup", 1, "left_of", "plate"),
    ("grab the bottle nearest to the camera", "bottle", 1, "nearest_camera", None),
    ("get all apples", "apple", 0, None, None),
])
def test_parser(text, target, count, relation, anchor):
    p = parse(text)
    assert (p.target, p.count, p.relation, p.anchor) == (target, count, relation, anchor)


VOCAB = {"mug": [1, 0, 0, 0], "bowl": [0, 1, 0, 0], "object": [0.3, 0.3, 0.3, 0.3], "things": [0.3, 0.3, 0.3, 0.3],
         "stuff": [0.3, 0.3, 0.3, 0.3], "texture": [0.3, 0.3, 0.3, 0.3], "laptop": [0, 0, 0, 1]}


def embed(texts):
    v = np.array([VOCAB.get(t, [0, 0, 1, 0]) for t in texts], np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def obj(i, e, x):
    e = np.asarray(e, np.float32)
    box = OrientedBox(np.array([x, 0, 0.8]), np.eye(3), np.full(3, 0.1))
    return SemanticObject(i, "x", 0.9, obb=box, centroid=box.center, embedding=e / np.linalg.norm(e))


def test_retrieval_finds_and_abstains():
    eng = QueryEngine(QueryConfig(), embed)
    objs = [obj(1, [1, 0.1, 0, 0], 0.0), obj(2, [0.1, 1, 0, 0], 0.3)]
    r = eng.query("grab the mug", objs)
    assert r.found and r.objects[0].id == 1 and len(r.objects) == 1
    r = eng.query("bring me the laptop", objs)
    assert not r.found and "not in the map" in r.message
    assert not eng.query("grab the mug", []).found


def test_relation_orders_by_anchor():
    eng = QueryEngine(QueryConfig(), embed)
    objs = [obj(1, [1, 0, 0, 0], 0.0), obj(2, [1, 0, 0, 0], 1.0), obj(3, [0, 1, 0, 0], 0.9)]
    r = eng.query("the mug next to the bowl", objs)
    assert r.found and r.objects[0].id == 2


def test_a_confident_label_is_evidence_a_doubtful_one_is_not():
    noisy = [0.55, 0.0, 0.84, 0.0]            # views' average: cosine 0.55 with "mug" (below the bar)
    eng = QueryEngine(QueryConfig(min_similarity=0.7), embed)
    sure = obj(1, noisy, 0.0)
    sure.label, sure.confidence = "mug", 0.9
    assert eng.query("grab the mug", [sure]).found
    unsure = obj(1, noisy, 0.0)
    unsure.label, unsure.confidence = "mug", 0.3
    assert not eng.query("grab the mug", [unsure]).found
    assert not eng.query("grab the laptop", [sure]).found


def test_views_that_agree_are_evidence_a_single_misread_view_is_not():
    """A butter seen as 'butter' twice and as 'a small box' three times averages below the bar."""
    u = lambda v: np.asarray(v, np.float32) / np.linalg.norm(v)       # noqa: E731
    mug, box = u([1, 0, 0, 0]), u([0, 0, 1, 0])
    eng = QueryEngine(QueryConfig(min_similarity=0.7, view_evidence=2), embed)
    two = obj(1, u(2 * mug + 3 * box), 0.0)
    two.view_embeddings = np.stack([mug, mug, box, box, box])
    assert float(two.embedding @ mug) < 0.7 and eng.query("grab the mug", [two]).found
    one = obj(1, u(mug + 4 * box), 0.0)
    one.view_embeddings = np.stack([mug, box, box, box, box])
    assert not eng.query("grab the mug", [one]).found
    assert not QueryEngine(QueryConfig(min_similarity=0.7, view_evidence=0), embed).query("grab the mug", [two]).found
