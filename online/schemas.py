"""JSON Schema files of the event contract, generated from the models in ``online.events``.

``coursestream schemas`` writes them to ``schemas/``; a test keeps the committed files
equal to what the models say, so subscribers can validate against them.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import TypeAdapter

from online.events import (
    CourseContent,
    CourseIndexed,
    DeadLetter,
    Feedback,
    ForgetRequest,
    LearnerEvent,
    ParkedContent,
    RankRequest,
    Recommendation,
)

CONTRACT = {
    "learner-event": TypeAdapter(LearnerEvent),
    "feedback": TypeAdapter(Feedback),
    "forget-request": TypeAdapter(ForgetRequest),
    "rank-request": TypeAdapter(RankRequest),
    "course-content": TypeAdapter(CourseContent),
    "recommendation": TypeAdapter(Recommendation),
    "course-indexed": TypeAdapter(CourseIndexed),
    "parked-content": TypeAdapter(ParkedContent),
    "dead-letter": TypeAdapter(DeadLetter),
}


def schema(name: str) -> dict:
    """The JSON Schema of one message kind.

    >>> sorted(schema("learner-event")["discriminator"]["mapping"])
    ['click', 'quiz', 'video']
    """
    document = CONTRACT[name].json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"coursestream/{name}.json", **document}


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in CONTRACT:
        path = out / f"{name}.json"
        path.write_text(json.dumps(schema(name), indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths
