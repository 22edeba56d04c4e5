"""Step 1, parse: a learner-topic message becomes a learner event, feedback, a rank request or a
forget request; anything malformed goes to the dead-letter topic with the reason."""

from __future__ import annotations

from collections.abc import Sequence

from faust.types import EventT

from online.events import Feedback, ForgetRequest, InvalidEvent, RankRequest, parse_learner_message
from online.recommender import LearnerEvent
from streams.worker.dead_letters import dead_letter

LearnerMessage = LearnerEvent | Feedback | RankRequest | ForgetRequest


async def parse(events: Sequence[EventT]) -> list[tuple[EventT, LearnerMessage]]:
    """The batch's messages that parse, in order, each with its stream event."""
    parsed = []
    for event in events:
        message = event.message
        try:
            value = parse_learner_message(message.value)
            if message.key != value.user_id.encode():
                raise InvalidEvent("message key must be the user_id (learner topics are keyed by user)")
        except InvalidEvent as error:
            await dead_letter(message, str(error), "InvalidEvent")
            continue
        parsed.append((event, value))
    return parsed
