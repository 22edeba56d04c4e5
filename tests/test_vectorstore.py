"""Both vector-store back ends behind one interface, on real embeddings of a real catalogue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoders.text import TextEncoder
from online.profile import LearnerProfile
from online.sources import oulad_catalogue
from streams.demo import SAMPLE
from streams.vectorstore import (
    CoursePoint,
    EdgeVectorStore,
    QdrantClientVectorStore,
    Source,
    VectorStore,
    candidates_for,
    point_id,
)

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def points() -> list[CoursePoint]:
    courses = list(oulad_catalogue(SAMPLE))[:120]
    vectors = TextEncoder().encode([f"{c.title}. {c.description}" for c in courses])
    return [
        CoursePoint(c.course_id, {"text": v}, {"language": "en" if i % 3 else "fr", "part_of": c.part_of})
        for i, (c, v) in enumerate(zip(courses, vectors))
    ]


@pytest.fixture(params=["edge", "qdrant-client"])
def store(request, tmp_path: Path) -> VectorStore:
    if request.param == "edge":
        opened: VectorStore = EdgeVectorStore(tmp_path / "edge")
    else:
        opened = QdrantClientVectorStore("courses", location=":memory:")
    yield opened
    opened.close()


def exact_top(points: list[CoursePoint], query: np.ndarray, k: int, keep=lambda p: True) -> list[str]:
    scored = sorted(((float(p.vectors["text"] @ query), p.course_id) for p in points if keep(p)), reverse=True)
    return [course_id for _, course_id in scored[:k]]


def test_search_filters_and_vectors(store: VectorStore, points: list[CoursePoint]) -> None:
    assert store.query(points[0].vectors["text"], "text", [Source(5)]) == []  # nothing stored yet: no error
    store.ensure_collection({"text": 384})
    store.upsert(points)
    assert store.count() == len(points)

    query = points[7].vectors["text"]
    hits = store.query(query, "text", [Source(10)])
    assert [h.course_id for h in hits] == exact_top(points, query, 10)
    assert hits[0].course_id == points[7].course_id and hits[0].similarity == pytest.approx(1.0, abs=1e-4)

    excluded = [h.course_id for h in hits[:3]]
    hits = store.query(query, "text", [Source(10, {"language": "en"})], exclude=excluded)
    expected = exact_top(points, query, 10, lambda p: p.course_id not in excluded and p.payload["language"] == "en")
    assert [h.course_id for h in hits] == expected
    assert all(h.payload["language"] == "en" for h in hits)

    found = store.points([points[1].course_id, "no-such-course"], "text")
    assert list(found) == [points[1].course_id]
    assert np.allclose(found[points[1].course_id].vectors["text"], points[1].vectors["text"], atol=1e-5)
    assert found[points[1].course_id].payload["part_of"] == points[1].payload["part_of"]
    assert sorted(p["course_id"] for p in store.payloads()) == sorted(p.course_id for p in points)


def test_sources_come_back_as_one_list(store: VectorStore, points: list[CoursePoint]) -> None:
    """Nearest, filtered and by-id sources come back as one list, each course once, with its
    cosine to the query (and no vector); without a query vector the sources only filter."""
    store.ensure_collection({"text": 384})
    store.upsert(points)
    query = points[7].vectors["text"]
    wanted = [points[100].course_id, points[101].course_id]
    french = Source(3, {"language": "fr"})
    hits = store.query(query, "text", [Source(5), french, Source(2, ids=wanted)])
    ids = [h.course_id for h in hits]
    assert len(ids) == len(set(ids))
    assert set(exact_top(points, query, 5)) | set(wanted) <= set(ids)
    assert set(exact_top(points, query, 3, lambda p: p.payload["language"] == "fr")) <= set(ids)
    vectors = {p.course_id: p.vectors["text"] for p in points}
    for hit in hits:
        assert hit.similarity == pytest.approx(float(vectors[hit.course_id] @ query), abs=1e-4)
        assert hit.vector is None
    cold = store.query(None, "text", [Source(2, ids=wanted)])
    assert sorted(h.course_id for h in cold) == sorted(wanted) and all(h.similarity == 0.0 for h in cold)


def test_candidates_are_in_the_learners_language(store: VectorStore, points: list[CoursePoint]) -> None:
    store.ensure_collection({"text": 384})
    store.upsert(points)
    profile = LearnerProfile(interest=points[4].vectors["text"], recent=[points[4].course_id], language="fr")
    found = candidates_for(store, profile, "text", 10, ids=[points[1].course_id, points[3].course_id])
    assert found and all(c.payload["language"] == "fr" for c in found)
    assert points[1].course_id not in {c.course_id for c in found}  # "en": even when asked for by id


def test_resending_a_course_updates_it(store: VectorStore, points: list[CoursePoint]) -> None:
    store.ensure_collection({"text": 384})
    store.upsert(points[:10])
    moved = CoursePoint(points[0].course_id, points[5].vectors, {"language": "de"})
    store.upsert([moved])
    assert store.count() == 10
    assert store.query(points[5].vectors["text"], "text", [Source(1)], exclude=[points[5].course_id])[0].payload["language"] == "de"


def test_edge_store_persists_across_reopen(tmp_path: Path, points: list[CoursePoint]) -> None:
    store = EdgeVectorStore(tmp_path / "edge")
    store.ensure_collection({"text": 384})
    store.upsert(points)
    before = [(h.course_id, h.payload) for h in store.query(points[3].vectors["text"], "text", [Source(5)])]
    store.close()
    reopened = EdgeVectorStore(tmp_path / "edge")  # knows no payload yet: reads those of its hits
    assert reopened.count() == len(points)
    assert [(h.course_id, h.payload) for h in reopened.query(points[3].vectors["text"], "text", [Source(5)])] == before
    assert before[0][1] == {**points[3].payload, "course_id": points[3].course_id}
    reopened.close()


def test_an_edge_shard_with_uuid_point_ids_is_re_keyed_when_opened(tmp_path: Path, points: list[CoursePoint]) -> None:
    """A shard written before point ids were ints answers as before, once, after re-keying."""
    import qdrant_edge as q

    legacy = q.EdgeShard.create(str(tmp_path / "edge"), q.EdgeConfig(vectors={"text": q.EdgeVectorParams(
        size=384, distance=q.Distance.Cosine)}))
    legacy.update(q.UpdateOperation.upsert_points([
        q.Point(point_id(p.course_id), {"text": p.vectors["text"].tolist()}, {**p.payload, "course_id": p.course_id})
        for p in points
    ]))
    legacy.flush()
    legacy.close()
    store = EdgeVectorStore(tmp_path / "edge")
    assert store.count() == len(points) and not (tmp_path / "edge.rekeyed").exists()
    query = points[3].vectors["text"]
    hits = store.query(query, "text", [Source(5), Source(1, {"language": "fr"}), Source(1, ids=[points[9].course_id])],
                       exclude=[points[3].course_id])
    assert [h.course_id for h in hits][:4] == exact_top(points, query, 5)[1:]
    by_id = {p.course_id: p for p in points}
    assert points[9].course_id in {h.course_id for h in hits}
    assert all(h.payload == {**by_id[h.course_id].payload, "course_id": h.course_id} for h in hits)
    store.upsert(points[:1])  # a re-sent course overwrites its point rather than adding one
    assert store.count() == len(points)
    store.close()
