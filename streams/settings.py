"""One typed settings object, read from ``COURSESTREAM_*`` environment variables.

Production points the ``COURSESTREAM_KAFKA_*`` settings at a real Kafka cluster (SASL/SSL
supported) and ``COURSESTREAM_QDRANT_URL`` at a Qdrant server; the defaults suit one
machine. ``coursestream demo`` overrides the broker and store with embedded ones.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Literal

import faust
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from encoders.credentials import Secret, SecretFileSettings, Token
from encoders.settings import EncoderSettings
from online.recommender import FUSION_LEARNING_RATE, LEARNING_RATE
from streams.vectorstore import SEARCH_EF


class Settings(SecretFileSettings):
    """Every setting of the worker and the tools; secrets may be files (see ``encoders.credentials``)."""

    model_config = SettingsConfigDict(env_prefix="COURSESTREAM_", env_file=".env", extra="ignore")

    app_id: str = Field("coursestream", description="Faust app id: the consumer group and table prefix.")
    data_dir: Path = Field(Path(".coursestream"), description="Local state: table stores, embedded Qdrant.")

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_session_timeout_s: float = 30.0
    kafka_heartbeat_interval_s: float = 3.0
    kafka_producer_batch_bytes: int = Field(
        262_144, ge=16_384, lt=1_000_000, description="The worker's producer batch per partition (Faust's"
        " producer_max_batch_size; below its 1,000,000-byte request size). A list is several KB, and once a"
        " partition's batch is full each send waits for the broker to answer the request before: at Kafka's"
        " 16,384 a batch held about three lists, and lists went out a few per round trip.",
    )
    kafka_embedded: bool = Field(
        False, description="The broker is the embedded one (Tansu, set by `coursestream demo`/`broker`):"
        " `coursestream worker` applies its work-arounds at start-up."
    )
    kafka_embedded_fetch_wait_ms: int = Field(
        10, ge=1, description="The worker's fetch wait on the embedded broker. Tansu answers a fetch only when the"
        " wait expires (so it is latency), and answers it empty when finding the offset takes longer, which it does"
        " once a partition holds tens of thousands of large records: long runs need 500.",
    )

    # Topics. Learner-keyed topics share `partitions` so they are co-partitioned.
    topic_learner_events: str = "coursestream.learner-events"
    topic_course_content: str = "coursestream.course-content"
    topic_recommendations: str = "coursestream.recommendations"
    topic_dead_letter: str = "coursestream.dead-letter"
    topic_course_indexed: str = Field(
        "coursestream.course-indexed", description="Announces each course that became recommendable."
    )
    topic_content_retry: str = Field(
        "coursestream.course-content-retry", description="Content parked until the encoder can take it."
    )
    topic_course_vectors: str = Field(
        "coursestream.course-vectors",
        description="Indexed course points (compacted), replicated to every worker's embedded vector store.",
    )
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    learner_data_retention_days: float = Field(
        7.0, gt=0, description="Retention of the topics that hold learners' data: learner events (and forget and rank"
        " requests), recommendations and dead letters (set when the topics are created).",
    )
    content_retention_days: float = Field(
        30.0, gt=0, description="Retention of course content, parked content and course-indexed notices (set when"
        " the topics are created); course vectors are compacted instead.",
    )

    # State
    table_store: Literal["rocksdb", "memory"] = "rocksdb"

    # Vector store
    vector_store: Literal["edge", "qdrant"] = Field(
        "edge", description="edge: Qdrant's embedded engine in-process; qdrant: a Qdrant server via qdrant-client."
    )
    qdrant_url: str | None = Field(None, description="Qdrant server URL; None with vector_store=qdrant: local mode.")
    qdrant_api_key: Secret | None = None
    qdrant_collection: str = "courses"
    vector_search_ef: int = Field(
        SEARCH_EF, ge=1, description="HNSW beam width (hnsw_ef) of each nearest-courses search: wider finds the"
        " exact nearest more often and costs more (see streams.vectorstore.SEARCH_EF).",
    )

    # Encoder service
    encoder_url: str = Field("http://127.0.0.1:8001", description="The worker's encoder service (token: encoder.token).")
    encoder_timeout_s: float = 30.0
    encoder_attempts: int = Field(4, ge=1, description="Tries per encoder call before content is parked.")
    retry_initial_s: float = Field(5.0, gt=0, description="First wait before a parked course is retried.")
    retry_max_s: float = Field(300.0, gt=0, description="Longest wait between retries of a parked course.")
    content_max_failures: int = Field(
        5, ge=1, description="Times the encoder may fail while handling a course (dropping the connection, as a"
        " crash does, or answering 500) before it is dead-lettered instead of parked again. Waiting for an encoder"
        " that cannot be reached or is busy does not count.",
    )
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)

    # Recommendations
    recommendations_k: int = Field(10, ge=1, le=100)
    ranking_vector: str = Field("text", description="The named vector profiles and queries live in.")
    policies: list[Literal["reranked-v3", "reranked-diverse-v3"]] = Field(
        ["reranked-v3"], min_length=1,
        description='Ranking policies run side by side (A/B), learners split by a hash of their id; JSON list.',
    )
    interest_half_life_days: float = Field(14.0, gt=0)
    explore_share: float = Field(0.1, ge=0, le=1, description="Share of recommended slots that explore (bandit-picked, marked explore).")
    reranker_learning_rate: float = Field(
        LEARNING_RATE, ge=0, description="The re-ranker's online step from each course a learner takes up from their last"
        " list (online.recommender.LEARNING_RATE); 0 keeps the prior fitted on OULAD.",
    )
    fusion_learning_rate: float = Field(
        FUSION_LEARNING_RATE, ge=0, description="The learned fusion's step: the weights of the image and video similarity features, "
        "learned from every take-up against the shown courses left (online.recommender.FUSION_LEARNING_RATE); 0 "
        "keeps the prior.",
    )
    recommend_on_event: bool = Field(
        True, description="Publish a fresh list after every learner event; off, lists answer rank requests only "
        "(the evaluation turns it off so that the worker shows lists exactly where the offline harness does)."
    )
    content_batch_size: int = Field(32, ge=1, description="Course content items embedded per encoder call.")
    learner_batch_size: int = Field(
        256, ge=1, description="Most learner events processed together (one candidate search for their lists, one"
        " write per changed table row); 1 ranks each list before the next event is learned.",
    )
    learner_batch_wait_ms: float = Field(
        20.0, gt=0, description="How long a batch of learner events may wait for more while the consumer lags (events"
        " on their way); with no lag a batch goes at once (see streams.batches).",
    )
    learner_write_interval_ms: float = Field(
        1000.0, ge=0, description="How long the table rows of the learner agent's batches may wait in memory, to be"
        " written together (each changed row once), while it lags; once it has caught up it writes after each batch."
        " 0: always after each batch. Lists are published with each batch; a crash redelivers what was not written,"
        " and a rebalance waits for the write (up to this long).",
    )
    coalesce_bursts: bool = Field(
        False, description="Publish one list per learner per batch segment, answering all of their events in it "
        "(named in its `coalesced` triggers), instead of one list per event: a burst's earlier lists are stale "
        "before they are read.",
    )

    # The worker's HTTP API (health, metrics, read APIs)
    web_enabled: bool = True
    web_host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 in a container.")
    web_port: int = Field(6066, ge=1, le=65535)
    web_canonical_url: str | None = Field(
        None, description="How other workers reach this one (default: http://web_host:web_port)."
    )
    web_token: Token | None = Field(
        None, description="Operator bearer token: reads any learner's profile, recommendations and path. Required to"
        " serve on any other address than loopback (at least 16 characters; placeholders are refused).",
    )
    web_jwt_public_key: Path | None = Field(
        None, description="PEM file of the public key that signs the platform's learner tokens (JWTs): a learner's"
        " token reads that learner's own data. Unset, only the operator token is accepted.",
    )
    web_jwt_algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]] = Field(
        ["RS256", "ES256", "EdDSA"], min_length=1, description="Signature algorithms accepted for learner tokens.",
    )
    web_jwt_audience: str = Field("coursestream", description="The `aud` learner tokens must carry.")
    web_jwt_issuer: str | None = Field(None, description="The `iss` learner tokens must carry, when set.")
    web_jwt_user_claim: str = Field("sub", description="The claim of a learner token that names the learner.")
    log_format: Literal["text", "json"] = "text"

    def embedded_vector_store(self) -> bool:
        """True when the vector store lives in the worker process (each worker has its own)."""
        return self.vector_store == "edge" or self.qdrant_url is None

    def canonical_url(self) -> str:
        host = socket.gethostname() if self.web_host == "0.0.0.0" else self.web_host
        return self.web_canonical_url or f"http://{host}:{self.web_port}"

    def broker_urls(self) -> list[str]:
        return [f"kafka://{server.strip()}" for server in self.kafka_bootstrap_servers.split(",")]

    def broker_credentials(self) -> faust.types.auth.CredentialsT | ssl.SSLContext | None:
        """Faust credentials for the configured security protocol (None for PLAINTEXT)."""
        context = None
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
            if self.kafka_ssl_certfile:
                context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if self.kafka_security_protocol.startswith("SASL"):
            password = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            return faust.SASLCredentials(
                username=self.kafka_sasl_username,
                password=password,
                mechanism=self.kafka_sasl_mechanism,
                ssl_context=context,
            )
        return context

    def kafka_client_options(self) -> dict[str, object]:
        """Security options in the keyword form aiokafka and kafka-python both take."""
        options: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            credentials = self.broker_credentials()
            options["ssl_context"] = credentials.ssl_context if isinstance(credentials, faust.SASLCredentials) else credentials
        if self.kafka_security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return options
