"""Both vector-store back ends behind one interface, on real embeddings of a real catalogue; and
what only the server back end does (payload indexes, HTTP errors as outages) over real HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoders.text import TextEncoder
from online.sources import oulad_catalogue
from streams.tools.demo import SAMPLE
from streams.tools.processes import free_port
from streams.vectorstore import (
    KEYWORD_FIELDS,
    CoursePoint,
    EdgeVectorStore,
    Hits,
    SEARCH_EF,
    QdrantClientVectorStore,
    Search,
    VectorStore,
    is_outage,
    point_id,
)
from tests.qdrant_server_stub import Answer, QdrantServerStub, error, ok

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
    assert store.search([Search(points[0].vectors["text"], 5)], "text") == [([], [])]  # nothing stored yet: no error
    store.ensure_collection({"text": 384})
    store.upsert(points)
    assert store.count() == len(points)

    query = points[7].vectors["text"]
    [(ids, scores)] = store.search([Search(query, 10)], "text")
    assert ids == exact_top(points, query, 10)
    assert ids[0] == points[7].course_id and scores[0] == pytest.approx(1.0, abs=1e-4)

    excluded = ids[:3]
    [(ids, _)] = store.search([Search(query, 10, {"language": "en"}, exclude=excluded)], "text")
    assert ids == exact_top(points, query, 10, lambda p: p.course_id not in excluded and p.payload["language"] == "en")

    found = store.points([points[1].course_id, "no-such-course"], "text")
    assert list(found) == [points[1].course_id]
    assert np.allclose(found[points[1].course_id].vectors["text"], points[1].vectors["text"], atol=1e-5)
    assert found[points[1].course_id].payload["part_of"] == points[1].payload["part_of"]
    assert sorted(p["course_id"] for p in store.payloads()) == sorted(p.course_id for p in points)


def test_searches_come_back_one_list_each(store: VectorStore, points: list[CoursePoint]) -> None:
    """A batch of searches answers each in order, with each hit's cosine to its query."""
    store.ensure_collection({"text": 384})
    store.upsert(points)
    query, other = points[7].vectors["text"], points[40].vectors["text"]
    nearest, french, near_other = store.search([Search(query, 5), Search(query, 3, {"language": "fr"}),
                                                Search(other, 2)], "text")
    assert nearest.course_ids == exact_top(points, query, 5)
    assert french.course_ids == exact_top(points, query, 3, lambda p: p.payload["language"] == "fr")
    assert near_other.course_ids == exact_top(points, other, 2)
    vectors = {p.course_id: p.vectors["text"] for p in points}
    for course_id, score in [*zip(*nearest), *zip(*french)]:
        assert score == pytest.approx(float(vectors[course_id] @ query), abs=1e-4)


def test_one_query_fuses_a_prefetch_per_named_vector(store: VectorStore, points: list[CoursePoint]) -> None:
    """Candidates come from every modality in one query: a course far from the text query but
    whose image matches is found by the fused search and not by the text one; the filter holds
    in every prefetch; a course without an image is stored and read without one."""
    images = np.eye(32, dtype=np.float32)
    with_images = [CoursePoint(p.course_id, {**p.vectors, "image_reduced": images[i % 32]}, p.payload) if i % 2
                   else p for i, p in enumerate(points)]
    store.ensure_collection({"text": 384, "image_reduced": 32})
    store.upsert(with_images)
    query = points[7].vectors["text"]
    text_only = exact_top(points, query, 10)
    pictured = [p for i, p in enumerate(with_images) if i % 2 and i % 32 == 5 and p.course_id not in text_only]
    assert pictured
    [(by_text, _), (fused, scores)] = store.search(
        [Search(query, 10), Search(query, 10, media={"image_reduced": images[5]})], "text")
    assert by_text == text_only and not set(by_text) & {p.course_id for p in pictured}
    assert {p.course_id for p in pictured} <= set(fused) and set(fused) & set(text_only)
    assert all(np.isnan(scores))  # an RRF score is no cosine: the ranking computes similarities
    [(french, _)] = store.search([Search(query, 10, {"language": "fr"}, media={"image_reduced": images[5]})], "text")
    assert french and all(by_id["language"] == "fr" for by_id in (store.points(french, "text")[c].payload for c in french))

    found = store.points([with_images[0].course_id, with_images[5].course_id], "text", also=["image_reduced"])
    assert set(found[with_images[0].course_id].vectors) == {"text"}
    assert set(found[with_images[5].course_id].vectors) == {"text", "image_reduced"}
    np.testing.assert_allclose(found[with_images[5].course_id].vectors["image_reduced"], images[5], atol=1e-6)


def test_an_edge_search_skips_a_match_every_course_holds(tmp_path: Path, points: list[CoursePoint]) -> None:
    """A match every stored course satisfies filters nothing, so the embedded engine is not asked to
    check it at each point it visits: the lists stay the same, and a course that changes its
    value brings the filter back."""
    store = EdgeVectorStore(tmp_path / "edge")
    english = [CoursePoint(p.course_id, p.vectors, {**p.payload, "language": "en"}) for p in points]
    store.ensure_collection({"text": 384})
    store.upsert(english)
    assert store._held_by_every_point({"language", "course_id"}) == {"language": "en"}
    query = points[7].vectors["text"]
    [(ids, _)] = store.search([Search(query, 10, {"language": "en"})], "text")
    assert ids == exact_top(english, query, 10)

    store.upsert([CoursePoint(points[7].course_id, points[7].vectors, {"language": "fr"})])
    assert store._held_by_every_point({"language"}) == {}
    [(ids, _)] = store.search([Search(query, 10, {"language": "en"})], "text")
    assert ids == exact_top(english[:7] + english[8:], query, 10)
    store.close()


def test_resending_a_course_updates_it(store: VectorStore, points: list[CoursePoint]) -> None:
    store.ensure_collection({"text": 384})
    store.upsert(points[:10])
    moved = CoursePoint(points[0].course_id, points[5].vectors, {"language": "de"})
    store.upsert([moved])
    assert store.count() == 10
    [([course_id], _)] = store.search([Search(points[5].vectors["text"], 1, exclude=[points[5].course_id])], "text")
    assert course_id == points[0].course_id and store.points([course_id], "text")[course_id].payload["language"] == "de"


def test_edge_store_persists_across_reopen(tmp_path: Path, points: list[CoursePoint]) -> None:
    store = EdgeVectorStore(tmp_path / "edge")
    store.ensure_collection({"text": 384})
    store.upsert(points)
    before = store.search([Search(points[3].vectors["text"], 5)], "text")
    store.close()
    reopened = EdgeVectorStore(tmp_path / "edge")  # knows no payload yet: reads those of its hits
    assert reopened.count() == len(points)
    assert reopened.search([Search(points[3].vectors["text"], 5)], "text") == before
    assert before[0].course_ids[0] == points[3].course_id
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
    [(ids, _)] = store.search([Search(query, 5, exclude=[points[3].course_id])], "text")
    assert ids[:4] == exact_top(points, query, 5)[1:]
    by_id = {p.course_id: p for p in points}
    found = store.points(ids, "text")
    assert all(found[c].payload == {**by_id[c].payload, "course_id": c} for c in ids)
    store.upsert(points[:1])  # a re-sent course overwrites its point rather than adding one
    assert store.count() == len(points)
    store.close()


# ---------------------------------------------------------------- Qdrant server-only paths
# Against a stand-in of the server's REST API (tests/qdrant_server_stub.py: answers written in the
# server's documented format, not recorded from a server; none can run here).


def serving(**routes: Answer) -> QdrantServerStub:
    """A stub answering ``routes`` (by "METHOD /path"), 404 otherwise."""
    return QdrantServerStub(lambda method, path, body: routes.get(f"{method} {path}", error(404, "Not found")))


def test_a_server_collection_gets_keyword_indexes_on_every_filtered_field() -> None:
    stub = serving(**{"GET /collections/courses/exists": ok({"exists": False}),
                      "PUT /collections/courses": ok(True),
                      "PUT /collections/courses/index": ok({"operation_id": 1, "status": "completed"})})
    store = QdrantClientVectorStore("courses", url=stub.url)
    try:
        store.ensure_collection({"text": 384, "fused": 1664})
    finally:
        store.close()
        stub.close()
    [created] = [body for method, path, body in stub.requests if (method, path) == ("PUT", "/collections/courses")]
    assert created["vectors"] == {"text": {"size": 384, "distance": "Cosine"}, "fused": {"size": 1664, "distance": "Cosine"}}
    indexes = [body for method, path, body in stub.requests if path == "/collections/courses/index"]
    assert sorted((b["field_name"], b["field_schema"]) for b in indexes) == sorted((f, "keyword") for f in KEYWORD_FIELDS)


def test_a_server_search_sends_filters_and_reads_course_ids() -> None:
    hit = {"id": point_id("c9"), "version": 3, "score": 0.875, "payload": {"course_id": "c9"}}
    stub = serving(**{"GET /collections/courses/exists": ok({"exists": True}),
                      "POST /collections/courses/points/query/batch": ok([{"points": [hit]}, {"points": []}])})
    store = QdrantClientVectorStore("courses", url=stub.url)
    try:
        found = store.search([Search(np.ones(4), 5, {"language": "en"}, exclude=["c1"]), Search(np.ones(4), 3)], "text")
    finally:
        store.close()
        stub.close()
    assert found == [Hits(["c9"], [0.875]), Hits([], [])]
    [(_, _, body)] = [r for r in stub.requests if r[1].endswith("/query/batch")]
    first = body["searches"][0]
    assert first["using"] == "text" and first["limit"] == 5 and first["with_payload"] == ["course_id"]
    assert first["filter"]["must"] == [{"key": "language", "match": {"value": "en"}}]
    assert first["filter"]["must_not"] == [{"has_id": [point_id("c1")]}]
    assert first["params"]["hnsw_ef"] == SEARCH_EF  # the beam width each nearest search asks for


@pytest.mark.parametrize(("status", "outage"), [(429, True), (502, True), (503, True), (504, True),
                                                (500, False), (400, False), (404, False)])
def test_a_busy_or_unreachable_server_is_an_outage_and_a_refusal_is_an_error(status: int, outage: bool) -> None:
    """An outage makes the worker wait and retry (``streams.worker.course_index``); any other
    failure is an error of the call (its event is dead-lettered)."""
    stub = serving(**{"GET /collections/courses/exists": ok({"exists": True}),
                      "POST /collections/courses/points/query/batch": error(status, "no")})
    store = QdrantClientVectorStore("courses", url=stub.url)
    try:
        with pytest.raises(Exception) as raised:
            store.search([Search(np.ones(4), 5)], "text")
    finally:
        store.close()
        stub.close()
    assert getattr(raised.value, "status_code", None) == status
    assert is_outage(raised.value) is outage


def test_a_server_nobody_answers_on_is_an_outage() -> None:
    store = QdrantClientVectorStore("courses", url=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(Exception) as raised:
            store.search([Search(np.ones(4), 5)], "text")
    finally:
        store.close()
    assert is_outage(raised.value)


def test_media_vectors_are_read_from_a_collection_made_without_them(store: VectorStore, points: list[CoursePoint]) -> None:
    """A text-only collection (made before the encoder returned reduced vectors) still answers."""
    store.ensure_collection({"text": 384})
    store.upsert(points[:3])
    found = store.points([points[0].course_id], "text", also=["image_reduced", "video_reduced"])
    assert set(found[points[0].course_id].vectors) == {"text"}
