"""The worker's Faust app, its topics and its tables: declarations only.

Learner-keyed topics and tables share one partition count, so a learner's events are processed
in order by the one worker that owns the learner's rows.
"""

from __future__ import annotations

import faust

from streams.faust_app import create_app, raw_topic
from streams.settings import Settings

settings = Settings()
app = create_app(settings)


def _raw_topic(name: str) -> faust.TopicT:
    return raw_topic(app, name, settings.partitions)


learner_events = _raw_topic(settings.topic_learner_events)
course_content = _raw_topic(settings.topic_course_content)
recommendations = _raw_topic(settings.topic_recommendations)
dead_letters = _raw_topic(settings.topic_dead_letter)
course_indexed = _raw_topic(settings.topic_course_indexed)
content_retry = _raw_topic(settings.topic_content_retry)
course_vectors = _raw_topic(settings.topic_course_vectors)

#: user id (bytes) -> LearnerProfile.to_bytes()
profiles = app.Table("profiles", key_type=bytes, value_type=bytes, partitions=settings.partitions)
#: user id (bytes) -> the latest Recommendation published for the learner (JSON), for the read API
latest_recommendations = app.Table(
    "latest-recommendations", key_type=bytes, value_type=bytes, partitions=settings.partitions
)
#: user id (bytes) -> TakenCourses.to_bytes(): every course the learner took, exactly (8-byte
#: hashes), which prerequisites are checked against (the profile's Bloom filter is not exact)
taken = app.Table("taken-courses", key_type=bytes, value_type=bytes, partitions=settings.partitions)
#: "partition:model:key" -> JSON state of the models a partition's learners share (question
#: difficulty, popularity, transitions, re-ranker, exploration; see ``online.recommender``).
#: Each partition learns from its own learners' events, so its state recovers exactly with it.
learned = app.Table("learned", key_type=str, partitions=settings.partitions)
