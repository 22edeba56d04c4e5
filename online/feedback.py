"""Explicit feedback (``online.events.Feedback``): what a dismissal or a rating teaches.

- **Dismissal**: the course is hidden from the learner's lists for
  ``online.dismissals.DISMISS_DAYS`` days of event time (kept in their profile), and it is a
  negative for the re-ranker and for the bandit arm that picked it, if it was exploring.
- **Rating**: 1 or 2 stars are a negative, 4 or 5 a positive, 3 teaches nothing; nothing is hidden.

The re-ranker learns the course with the features it was shown with, so only feedback on a
course of the learner's last list reaches it (and only while its learning rate is above 0, as
for take-ups; see ``online.recommender.LEARNING_RATE``); so does the bandit. Feedback is not a
use of the course: nothing is taken up, and interest does not move. It is applied once: a
redelivered feedback message changes nothing (the profile's watermark and recent ids).

>>> from datetime import datetime, timezone
>>> from online.events import Feedback
>>> from online.profile import LearnerProfile
>>> from online.recommender import Recommender, Shown
>>> recommender, profile = Recommender(), LearnerProfile()
>>> shown = Shown.of([{"course_id": "intro"}, {"course_id": "art", "explore": True, "exploration_arm": "random"}])
>>> dismiss = Feedback(event_id="f1", user_id="u1", course_id="art", action="dismiss",
...                    event_time=datetime(2024, 5, 1, tzinfo=timezone.utc))
>>> learn_feedback(recommender, profile, dismiss, shown, offset=7)
True
>>> recommender.explorer.table["random"]   # the arm that picked it failed
[1.0, 2.0]
>>> learn_feedback(recommender, profile, dismiss, shown, offset=7)   # redelivered
False
>>> len(profile.dismissed), profile.events
(1, 0)
"""

from __future__ import annotations

from online.events import Feedback
from online.profile import LearnerProfile
from online.recommender import FEATURES, Recommender, Shown


def verdict(feedback: Feedback) -> bool | None:
    """Whether the feedback says the course was a good recommendation (None: it does not say).

    >>> from datetime import datetime, timezone
    >>> def rate(stars):
    ...     return Feedback(event_id="f", user_id="u", course_id="c", action="rate", rating=stars,
    ...                     event_time=datetime(2024, 5, 1, tzinfo=timezone.utc))
    >>> [verdict(rate(stars)) for stars in (1, 2, 3, 4, 5)]
    [False, False, None, True, True]
    """
    if feedback.action == "dismiss":
        return False
    assert feedback.rating is not None  # the contract requires one with "rate"
    return None if feedback.rating == 3 else feedback.rating > 3


def learn_feedback(
    recommender: Recommender, profile: LearnerProfile, feedback: Feedback, shown: Shown, offset: int | None = None
) -> bool:
    """Learn one feedback message into the profile and the shared models (see the module);
    ``shown`` is the learner's last list. False if it was already applied."""
    if not profile.mark_applied(feedback.event_id, offset):
        return False
    if feedback.action == "dismiss":
        profile.dismissed.add(feedback.course_id, feedback.event_time.timestamp())
    good = verdict(feedback)
    if good is None or feedback.course_id not in shown.course_ids:
        return True
    j = shown.course_ids.index(feedback.course_id)
    if recommender.reranker.learning_rate:
        shown_with = shown.items[j].get("features", {})
        recommender.reranker.learn_one({name: shown_with.get(name, 0.0) for name in FEATURES}, good)
    if shown.arms[j] is not None:
        recommender.explorer.update(shown.arms[j], float(good))
    return True
