"""Create the project's topics with the configured partition count, before anything produces.

A broker that auto-creates topics on first produce would give them its default
partition count, breaking the co-partitioning of learner-keyed topics and tables.
"""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.settings import Settings


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.topic_learner_events,
        settings.topic_course_content,
        settings.topic_recommendations,
        settings.topic_dead_letter,
        settings.topic_course_indexed,
        settings.topic_content_retry,
        settings.topic_course_vectors,
    ]


def _configs(settings: Settings, name: str) -> dict[str, str]:
    # Only the latest point of a course matters, however often it is re-indexed.
    return {"cleanup.policy": "compact"} if name == settings.topic_course_vectors else {}


def ensure_topics(settings: Settings) -> None:
    """Create missing topics; refuse to go on if learner events have the wrong partition count."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options())
    try:
        existing = set(admin.list_topics())
        if settings.topic_learner_events in existing:
            (described,) = admin.describe_topics([settings.topic_learner_events])
            found = len(described["partitions"])
            if found != settings.partitions:
                raise RuntimeError(
                    f"topic {settings.topic_learner_events} has {found} partitions but COURSESTREAM_PARTITIONS is "
                    f"{settings.partitions}: profiles are co-partitioned with it, so the two must agree"
                )
        missing = [
            NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=_configs(settings, name))
            for name in topic_names(settings)
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another process won the race
                pass
    finally:
        admin.close()
