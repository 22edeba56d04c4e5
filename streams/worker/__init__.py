"""The stream worker: learner events in, profiles updated, recommendations out; content indexed.

Data flow::

    learner-events --(learners: parse, learn, candidates, features, order, explain, publish, write)-->
        profiles, latest-recommendations, learned (tables, changelogs) and recommendations
    rank request (on learner-events) --(learners)--> its answer on recommendations
    forget request (on learner-events) --(learners)--> the learner's table rows deleted (tombstones)
    course-content --(courses)--> encoder service --> Qdrant (course_index)
    anything malformed --> dead-letter (original bytes, topic/partition/offset, reason)

Modules: ``app`` (the Faust app, topics and tables), ``learners`` (the learner agent and its
steps: ``parse``, ``learn``, ``candidates``, ``ranking``, ``publish``, ``write``), ``partitions``
(each partition's learning core), ``course_index`` (vector store, encoder client, catalogue),
``courses`` (content agents), ``dead_letters``, ``api`` (the read API). Delivery is
at-least-once; profiles skip events they already applied (see ``online.profile``), and every
recommendation names its trigger event so subscribers can drop a redelivered duplicate.
"""

from streams.worker import api, courses, learners  # noqa: F401  (they declare the agents and the API)
from streams.worker.app import app, settings

__all__ = ["app", "settings"]
