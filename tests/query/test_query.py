import re

import numpy as np
import pytest

from gs_semantic_node.config import QueryConfig
from gs_semantic_node.query.engine import QueryEngine
from gs_semantic_node.types import OrientedBox, SemanticObject

VOCAB = {
    "mug": [1, 0, 0, 0],
    "bowl": [0, 1, 0, 0],
    "object": [0.3, 0.3, 0.3, 0.3],
    "things": [0.3, 0.3, 0.3, 0.3],
    "stuff": [0.3, 0.3, 0.3, 0.3],
    "texture": [0.3, 0.3, 0.3, 0.3],
    "laptop": [0, 0, 0, 1],
}


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
    bars = re.findall(r"(\w+) (-?[\d.]+) < ([\d.]+)", r.message)
    assert bars and all(float(x) < float(y) for _, x, y in bars), r.message  # only the bars it failed
    r = QueryEngine(QueryConfig(min_relevancy=0.0), embed).query("bring me the laptop", objs)
    assert "similarity" in r.message and "relevancy" not in r.message, r.message
    assert not eng.query("grab the mug", []).found


@pytest.mark.parametrize("first", [0, 1])
def test_of_two_objects_with_the_same_sure_label_the_bigger_answers_first(first):
    eng = QueryEngine(QueryConfig(), embed)
    objs = [obj(1, [1, 0.2, 0, 0], 0.0), obj(2, [1, 0.2, 0, 0], 0.5)]
    for o, n in zip(objs, (40, 400)):
        o.label, o.confidence, o.alternatives, o.num_gaussians = "mug", 0.95, [("bowl", 0.01)], n
    r = eng.query("grab the mug", objs[first:] + objs[:first])
    assert r.found and [o.id for o in r.objects][:2] == [2, 1]


def test_relation_orders_by_anchor():
    eng = QueryEngine(QueryConfig(), embed)
    objs = [obj(1, [1, 0, 0, 0], 0.0), obj(2, [1, 0, 0, 0], 1.0), obj(3, [0, 1, 0, 0], 0.9)]
    r = eng.query("the mug next to the bowl", objs)
    assert r.found and r.objects[0].id == 2


@pytest.mark.parametrize(
    "confidence,runner_up,found",
    [
        (0.9, 0.05, True),  # confident
        (0.45, 0.05, True),  # low in a 36-word vocabulary, but nine times the next class: still a mug
        (0.5, 0.4, False),  # a near tie with "bowl": the label is no evidence either way
        (0.2, 0.01, False),  # under the floor
    ],
)
def test_a_sure_label_is_evidence_a_doubtful_one_is_not(confidence, runner_up, found):
    noisy = [0.55, 0.0, 0.84, 0.0]  # views' average: cosine 0.55 with "mug" (below the bar)
    eng = QueryEngine(QueryConfig(min_similarity=0.7), embed)
    o = obj(1, noisy, 0.0)
    o.label, o.confidence, o.alternatives = "mug", confidence, [("bowl", runner_up)]
    assert eng.query("grab the mug", [o]).found == found
    assert not eng.query("grab the laptop", [o]).found


def test_views_that_agree_are_evidence_a_single_misread_view_is_not():
    """A butter seen as 'butter' twice and as 'a small box' three times averages below the bar."""

    def u(v):
        return np.asarray(v, np.float32) / np.linalg.norm(v)

    mug, box = u([1, 0, 0, 0]), u([0, 0, 1, 0])
    eng = QueryEngine(QueryConfig(min_similarity=0.7, view_evidence=2), embed)
    two = obj(1, u(2 * mug + 3 * box), 0.0)
    two.view_embeddings = np.stack([mug, mug, box, box, box])
    assert float(two.embedding @ mug) < 0.7 and eng.query("grab the mug", [two]).found
    one = obj(1, u(mug + 4 * box), 0.0)
    one.view_embeddings = np.stack([mug, box, box, box, box])
    assert not eng.query("grab the mug", [one]).found
    assert not QueryEngine(QueryConfig(min_similarity=0.7, view_evidence=0), embed).query("grab the mug", [two]).found


def test_calibration_takes_the_middle_of_the_best_plateau():
    """The evidence bar is the middle of the widest run of equally good thresholds, not its edge: an
    edge that merely clears the tuning seeds' weakest true match is where held-out ones fall under it."""
    from gs_semantic_node.eval.quality import calibrate

    grid = [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
    # one scene: true targets score 0.52 and 0.68; an absent query's best object scores 0.41
    scores, absent = [0.52, 0.68], [0.41]
    scene = {
        "seed": 0,
        "near": [False],
        "full": {t: [{"found": s >= t, "iou": 0.9, "gacc": 1.0} for s in scores] for t in grid},
        "abst": {t: [a < t for a in absent] for t in grid},
    }
    # zero errors for 0.45 and 0.5 only; their middle (upper when even) is 0.5, not the cautious edge
    assert calibrate([scene], "full", "abst", grid) == 0.5
    scores[0] = 0.66  # now 0.45 ... 0.65 tie at zero errors: the middle is 0.55
    scene["full"] = {t: [{"found": s >= t, "iou": 0.9, "gacc": 1.0} for s in scores] for t in grid}
    assert calibrate([scene], "full", "abst", grid) == 0.55
