"""Step 2, learn, for a learner's feedback on a recommended course (``online.feedback``): a
dismissal hides the course from their lists for a while; the re-ranker and the bandit learn it
from their last list; a fresh list is asked for, as after any event."""

from __future__ import annotations

from collections.abc import Container

from faust.types import EventT

from online.events import Feedback
from online.feedback import learn_feedback
from online.policies import assign
from online.profile import LearnerProfile
from online.recommender import NOTHING_SHOWN, Shown
from streams import metrics
from streams.worker.app import settings
from streams.worker.learn import Wanted, last_list
from streams.worker.partitions import recommender


def learn_from_feedback(event: EventT, value: Feedback, profile: LearnerProfile, unwritten: Shown | None,
                        taken: Container[str] | None = None) -> Wanted:
    """Learn ``value`` into ``profile`` and its partition's models; the fresh list it asks for.
    ``unwritten`` is the learner's last list if it is not written yet; ``taken`` what they took, exactly."""
    message = event.message
    last = last_list(message.key, unwritten)
    engine = recommender(message.partition)
    policy = assign(value.user_id, settings.policies)
    if learn_feedback(engine, profile, value, last or NOTHING_SHOWN, message.offset):
        metrics.feedback.labels(policy, value.action).inc()
    return Wanted(engine, profile, policy, value.event_time.timestamp(), value.event_id, event, taken)
