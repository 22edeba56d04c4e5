"""Two workers in one group split the partitions; both publish; either answers the read API
for any learner, forwarding to the owner in both directions (a 404 and learning paths too; a
request forwarded twice refused), to the operator or to the learner's own token only (the lists
published lately and the fusion weights to the operator only); the
metrics endpoint exposes the named series with sensible values."""

from __future__ import annotations

import http.client
import json
import re
import secrets
import time
from collections import Counter
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from online.events import Recommendation
from online.sources import oulad_catalogue
from streams.tools.demo import SAMPLE, sample_events
from streams.tools.processes import WorkerProcess, free_port
from streams.web import FORWARDED
from tests.kafka_io import consume, produce
from tests.test_pipeline import new_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.model]


def samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(found: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def wait_ready(urls: list[str], workers: list[WorkerProcess], timeout_s: float = 90.0) -> None:
    """Until every worker says ready twice in a row a second apart (the group has settled)."""
    deadline, streak = time.monotonic() + timeout_s, 0
    while streak < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("\n".join(w.log()[-3000:] for w in workers))
        try:
            ok = all(httpx.get(f"{url}/readyz").status_code == 200 for url in urls)
        except httpx.TransportError:
            ok = False
        streak = streak + 1 if ok else 0
        time.sleep(1.0)


class Platform:
    """The platform that signs learner tokens (ES256), and the worker settings that trust it."""

    def __init__(self, folder: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = folder / "platform-public.pem"
        self.public_key.write_bytes(self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.operator_token = secrets.token_hex(32)

    def env(self) -> dict[str, str]:
        return {"COURSESTREAM_WEB_TOKEN": self.operator_token, "COURSESTREAM_WEB_JWT_PUBLIC_KEY": str(self.public_key)}

    def learner_token(self, user: str, key: ec.EllipticCurvePrivateKey | None = None, **claims: object) -> str:
        claims = {"sub": user, "aud": "coursestream", "exp": int(time.time()) + 300, **claims}
        return jwt.encode(claims, key or self.key, algorithm="ES256")

    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}

    def learner(self, user: str, **claims: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.learner_token(user, **claims)}"}


def test_two_workers_share_partitions_and_answer_for_every_learner(broker, encoder_service, tmp_path) -> None:
    pipeline = new_pipeline(broker, encoder_service, tmp_path, partitions=4)
    platform = Platform(tmp_path)
    s = pipeline.settings
    envs = [{**pipeline.env, **platform.env(), "COURSESTREAM_WEB_PORT": str(free_port()),
             "COURSESTREAM_DATA_DIR": str(tmp_path / f"state{i}")} for i in range(2)]
    urls = [f"http://127.0.0.1:{env['COURSESTREAM_WEB_PORT']}" for env in envs]
    # Logging at info: the access log is on, and must not name learners.
    workers = [WorkerProcess(env, tmp_path / f"worker{i}.log", ("streams", "worker", "--loglevel", "info")).start()
               for i, env in enumerate(envs)]
    try:
        wait_ready(urls, workers)
        catalogue = list(oulad_catalogue(SAMPLE))
        pipeline.index(catalogue, workers[0])
        events = list(sample_events(600))
        pipeline.send_events(events)
        produce(s.kafka_bootstrap_servers, s.topic_learner_events, [(b"x", b"not json")])
        recs = consume(s.kafka_bootstrap_servers, s.topic_recommendations,
                       lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events},
                       decode=lambda m: Recommendation.model_validate_json(m.value),
                       describe=lambda: workers[0].log()[-2000:] + workers[1].log()[-2000:])

        found = [samples(url) for url in urls]
        published = [total(f, "coursestream_recommendations_total") for f in found]
        assert all(p > 0 for p in published), f"both workers publish: {published}"
        assert sum(published) >= len(events)
        kinds = Counter(e.kind for e in events)
        for kind, count in kinds.items():
            assert sum(total(f, "coursestream_events_total", kind=kind) for f in found) >= count
        assert sum(total(f, "coursestream_courses_indexed_total") for f in found) == len(catalogue)
        assert sum(total(f, "coursestream_dead_letters_total", error_type="InvalidEvent") for f in found) == 1
        assert sum(total(f, "coursestream_event_to_recommendation_seconds_count") for f in found) >= len(events)
        assert sum(total(f, "coursestream_vector_store_seconds_count", operation="search") for f in found) > 0
        assert sum(total(f, "coursestream_learner_step_seconds_count", step="learn") for f in found) >= len(events)
        assert sum(total(f, "coursestream_encoder_calls_total", outcome="ok") for f in found) >= 1
        assert any(name == "coursestream_consumer_lag" for f in found for name, _ in f)
        for modality, prior in (("image", 1.0), ("video", 1.0)):  # text only: the media weights keep their prior
            assert all(total(f, "coursestream_fusion_weight", modality=modality) == pytest.approx(prior) for f in found)
        # the text weight is the re-ranker's similarity weight, which learns online from take-ups
        assert all(total(f, "coursestream_fusion_weight", modality="text") > 0 for f in found)

        last = {rec.user_id: rec for rec in recs}  # per learner, the output topic is in order
        per_user = Counter(e.user_id for e in events)
        users = list(per_user)[:8]
        for user in users:
            for url in urls:  # either worker answers, whichever owns the learner
                for credentials in (platform.operator(), platform.learner(user)):
                    answer = httpx.get(f"{url}/recommendations/{user}", headers=credentials)
                    assert answer.status_code == 200, answer.text
                    assert Recommendation.model_validate_json(answer.content) == last[user]
                    summary = httpx.get(f"{url}/profiles/{user}", headers=credentials).json()
                    assert summary["events"] == per_user[user]
                    assert summary["recent_courses"] and summary["interests"]
                    assert 0 < summary["mastery"]["overall"] < 1
        nobody = httpx.get(f"{urls[0]}/recommendations/nobody", headers=platform.operator())
        assert nobody.status_code == 200 and nobody.json()["cold_start"]  # a newcomer gets a list, never a 404
        check_forwarding(urls, platform, list(per_user))
        check_read_api_security(urls, platform, users[0], users[1])
    finally:
        for worker in workers:
            worker.stop()
    # The access log names routes, never learners.
    for worker in workers:
        routes = [line for line in worker.log().splitlines() if "streams.web.access" in line or "GET /" in line]
        assert any("GET /profiles/{user_id} 200" in line for line in routes)
        assert all(not re.search(r"/(profiles|recommendations|paths)/(?!\{user_id\})", line) for line in routes), routes


def owner(urls: list[str], path: str, headers: dict[str, str]) -> int:
    """Which worker owns the learner of ``path``: asked as if another worker had forwarded the
    request, the owner answers and any other worker refuses with 503 (it would forward again)."""
    answers = [httpx.get(url + path, headers={**headers, FORWARDED: "1"}) for url in urls]
    assert sorted(a.status_code == 503 for a in answers) == [False, True], [(a.status_code, a.text) for a in answers]
    assert "ownership is changing" in next(a for a in answers if a.status_code == 503).text
    return next(i for i, a in enumerate(answers) if a.status_code != 503)


def check_forwarding(urls: list[str], platform: Platform, learners: list[str]) -> None:
    """Each worker owns some learners; asked about a learner it does not own, a worker forwards
    to the owner, in both directions, for every learner endpoint: the owner's answer, a 404 and a
    cold start too;
    a request forwarded twice is refused (503) rather than sent round again."""
    operator = platform.operator()
    owners = {user: owner(urls, f"/profiles/{user}", operator) for user in learners}
    assert set(owners.values()) == {0, 1}, f"one worker owns every learner: nothing is forwarded ({owners})"
    for user, at in owners.items():
        other = urls[1 - at]
        for path in (f"/profiles/{user}", f"/recommendations/{user}", f"/paths/{user}/some-course"):
            own, forwarded = httpx.get(urls[at] + path, headers=operator), httpx.get(other + path, headers=operator)
            assert own.status_code == forwarded.status_code == 200, (path, own.text, forwarded.text)
            assert forwarded.json() == own.json()
        assert owner(urls, f"/paths/{user}/some-course", operator) == at
    strangers: dict[int, str] = {}
    for i in range(64):
        if len(strangers) < 2:
            strangers.setdefault(owner(urls, f"/profiles/nobody-{i}", operator), f"nobody-{i}")
    assert set(strangers) == {0, 1}
    for at, stranger in strangers.items():  # the owner's answer about a stranger, whichever worker is asked
        path = f"/profiles/{stranger}"  # a 404
        own, forwarded = httpx.get(urls[at] + path, headers=operator), httpx.get(urls[1 - at] + path, headers=operator)
        assert own.status_code == forwarded.status_code == 404
        assert forwarded.json() == own.json() and "no " in own.json()["detail"]
        path = f"/recommendations/{stranger}"  # the owner's cold start
        own, forwarded = httpx.get(urls[at] + path, headers=operator), httpx.get(urls[1 - at] + path, headers=operator)
        assert own.status_code == forwarded.status_code == 200 and own.json()["cold_start"]
        assert [i["course_id"] for i in forwarded.json()["items"]] == [i["course_id"] for i in own.json()["items"]]


def check_read_api_security(urls: list[str], platform: Platform, user: str, other: str) -> None:
    """401 without valid credentials, 403 with another learner's, on either worker (whether it
    owns the learner or forwards); ids checked; a forwarded path is not re-interpreted."""
    stranger = ec.generate_private_key(ec.SECP256R1())
    for url in urls:
        for path in (f"/profiles/{user}", f"/recommendations/{user}", f"/paths/{user}/some-course"):
            for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {platform.operator_token}"},
                            {"Authorization": "Bearer not-a-token"},
                            {"Authorization": f"Bearer {platform.learner_token(user, stranger)}"},
                            platform.learner(user, exp=int(time.time()) - 3600),
                            platform.learner(user, aud="another-service")):
                refused = httpx.get(url + path, headers=headers)
                assert refused.status_code == 401, (path, headers, refused.text)
                assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert httpx.get(url + path, headers=platform.learner(other)).status_code == 403
        # The lists published lately and the fusion weights concern every learner: the operator's alone.
        for shared in ("/recommendations", "/models/fusion"):
            assert httpx.get(url + shared).status_code == 401
            assert httpx.get(url + shared, headers=platform.learner(user)).status_code == 403
        fusion = httpx.get(f"{url}/models/fusion", headers=platform.operator()).json()
        assert set(fusion["mean"]["weights"]) == {"text", "image", "video"} and fusion["partitions"]
        published = httpx.get(f"{url}/recommendations", params={"limit": 3}, headers=platform.operator()).json()
        assert published["next"] > 0 and 0 < len(published["lists"]) <= 3
        assert httpx.get(f"{url}/profiles/{user}%01", headers=platform.operator()).status_code == 422
        assert httpx.get(f"{url}/profiles/{'x' * 300}", headers=platform.operator()).status_code == 422
        # Health and metrics stay open to probes and Prometheus.
        assert httpx.get(f"{url}/readyz").status_code == 200 and httpx.get(f"{url}/metrics").status_code == 200
        # A path that smuggles another learner's route, encoded or with dot segments, through the
        # learner's own path endpoint reaches no profile: the owner gets the raw path, or none.
        for smuggled in (f"/paths/{user}/..%2F..%2Fprofiles%2F{other}", f"/paths/{user}/../../profiles/{other}"):
            host, port = url.removeprefix("http://").split(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.request("GET", smuggled, headers=platform.learner(user))  # sent as is, not normalised
            answer = connection.getresponse()
            body = answer.read()
            connection.close()
            assert answer.status in (200, 400, 404, 409), (smuggled, answer.status, body)
            if answer.status == 200:  # the learner's own path to a goal of that odd name
                assert set(json.loads(body)) == {"user_id", "goal", "path"} and json.loads(body)["user_id"] == user
