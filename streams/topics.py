"""Create the project's topics with the configured partition count and retention, before anything produces.

A broker that auto-creates topics on first produce would give them its default
partition count, breaking the co-partitioning of learner-keyed topics and tables, and its
default retention (a week, or for ever), whatever learners' data should be kept for.

>>> configs = topic_configs(Settings(_env_file=None))
>>> configs["coursestream.learner-events"], configs["coursestream.course-vectors"]
({'retention.ms': '604800000'}, {'cleanup.policy': 'compact'})
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


DAY_MS = 24 * 3600 * 1000


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Each topic's configuration: how long it keeps what it holds."""
    learners = {"retention.ms": str(round(settings.learner_data_retention_days * DAY_MS))}
    content = {"retention.ms": str(round(settings.content_retention_days * DAY_MS))}
    return {
        settings.topic_learner_events: learners,
        settings.topic_recommendations: learners,
        settings.topic_dead_letter: learners,  # dead letters quote learner events
        settings.topic_course_content: content,
        settings.topic_course_indexed: content,
        settings.topic_content_retry: content,
        # Only the latest point of a course matters, however often it is re-indexed.
        settings.topic_course_vectors: {"cleanup.policy": "compact"},
    }


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
        configs = topic_configs(settings)
        missing = [
            NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=configs[name])
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
