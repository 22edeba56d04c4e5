"""How much interest each learner event shows, as a weight in [0, 1].

- A click is weak evidence: 0.1, rising slowly with repeated clicks (log-scaled, so a
  day of 200 clicks on one page counts about three times one click, not 200 times).
- Video watching: the share of the video played in this stretch, counted in video time
  (watched seconds x playback rate), capped at one full play so a looping player cannot
  dominate; watching at all gives at least as much as a click.
- A quiz answer shows the learner is working through the course (0.3) whatever the
  score; the score itself is evidence of mastery and goes to the knowledge state.

>>> from datetime import datetime, timezone
>>> from online.events import ClickEvent, VideoEvent
>>> t = datetime(2024, 5, 1, tzinfo=timezone.utc)
>>> engagement(ClickEvent(event_id="e", user_id="u", course_id="c", event_time=t, action="open"))
0.1
>>> engagement(VideoEvent(event_id="e", user_id="u", course_id="c", event_time=t, video_id="v",
...     watched_seconds=300, position_seconds=300, video_length_seconds=600))
0.5
>>> engagement(VideoEvent(event_id="e", user_id="u", course_id="c", event_time=t, video_id="v",
...     watched_seconds=6000, position_seconds=0, video_length_seconds=600))
1.0
"""

from __future__ import annotations

import math

from online.events import ClickEvent, QuizEvent, VideoEvent

CLICK_WEIGHT = 0.1
QUIZ_WEIGHT = 0.3


def engagement(event: ClickEvent | VideoEvent | QuizEvent) -> float:
    """Interest weight of one event, in [0, 1]."""
    if isinstance(event, ClickEvent):
        return min(1.0, CLICK_WEIGHT * (1.0 + math.log(event.count)))
    if isinstance(event, VideoEvent):
        played = event.watched_seconds * event.playback_rate / event.video_length_seconds
        return max(CLICK_WEIGHT, min(played, 1.0))
    return QUIZ_WEIGHT
