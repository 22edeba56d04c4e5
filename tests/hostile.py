"""Hypothesis strategies for learner-event messages: valid ones, and bad ones of every kind.

A message is ``(key, value)`` as a producer sends it. Bad messages are valid events with one
thing broken (``mutated``), so each breaks the contract for one stated reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

Message = tuple[bytes | None, bytes | None]

#: Ids of learners and courses no catalogue knows: new learners are valid, unknown courses too.
ids = st.text(st.characters(categories=("L", "N", "Pd")), min_size=1, max_size=12)
times = st.datetimes(datetime(1995, 1, 1), datetime(2026, 1, 1), timezones=st.just(timezone.utc)).map(
    lambda t: t.isoformat()
)
REQUIRED = {
    "click": ("event_id", "user_id", "course_id", "event_time", "action"),
    "video": ("event_id", "user_id", "course_id", "event_time", "video_id", "watched_seconds", "position_seconds",
              "video_length_seconds"),
    "quiz": ("event_id", "user_id", "course_id", "event_time", "quiz_id"),
}
TEXT_FIELDS = ("event_id", "user_id", "course_id", "event_time", "action", "video_id", "quiz_id", "item_id",
               "question_id")
NUMBER_FIELDS = ("count", "watched_seconds", "position_seconds", "video_length_seconds", "playback_rate", "score",
                 "attempt")
KNOWN_FIELDS = {"kind", *TEXT_FIELDS, *NUMBER_FIELDS, "skill_tags", "correct"}


def _base(kind: str) -> dict[str, Any]:
    return {"kind": st.just(kind), "event_id": ids, "user_id": ids, "course_id": ids, "event_time": times}


clicks = st.fixed_dictionaries(
    {**_base("click"), "action": st.sampled_from(["open", "enroll", "bookmark", "resource"])},
    optional={"count": st.integers(1, 100_000), "item_id": ids},
)


@st.composite
def videos(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.fixed_dictionaries(_base("video")))
    length = draw(st.floats(0.5, 24 * 3600.0))
    return {
        **event,
        "video_id": draw(ids),
        "video_length_seconds": length,
        "position_seconds": draw(st.floats(0, length)),
        "watched_seconds": draw(st.floats(0, 100 * length)),
        "playback_rate": draw(st.floats(0.25, 16)),
    }


quizzes = st.fixed_dictionaries(
    {**_base("quiz"), "quiz_id": ids, "correct": st.booleans()},
    optional={"score": st.floats(0, 1), "question_id": ids, "attempt": st.integers(1, 1000),
              "skill_tags": st.lists(ids, max_size=64)},
)

event_dicts = st.one_of(clicks, videos(), quizzes)


def keyed(event: dict[str, Any]) -> Message:
    return event["user_id"].encode(), json.dumps(event).encode()


valid_messages = event_dicts.map(keyed)

# What each mutation puts where a valid value was.
not_strings = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=3),
                        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
not_numbers = st.one_of(st.text(max_size=10), st.booleans(), st.lists(st.integers(), max_size=3),
                        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=10)


def _now() -> datetime:
    return datetime.now(timezone.utc)


bad_times = st.one_of(
    st.datetimes(datetime(1, 1, 2), datetime(1989, 12, 31), timezones=st.just(timezone.utc)).map(lambda t: t.isoformat()),
    st.integers(2, 2_900_000).map(lambda days: (_now() + timedelta(days=days)).isoformat()),  # the future
    st.datetimes(datetime(2000, 1, 1), datetime(2025, 1, 1)).map(lambda t: t.isoformat()),  # no time zone
    st.sampled_from(["2024-13-01T00:00:00Z", "2024-02-30T10:00:00Z", "yesterday", "", "2024-05-01T25:61:00Z"]),
    st.integers(0, 2_000_000_000),  # a Unix time: not RFC 3339
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Message]:
    """A valid event with one thing broken: ``(what was broken, message)``."""
    event = draw(event_dicts)
    kind = event["kind"]
    how = draw(st.sampled_from(sorted(MUTATIONS)))
    return how, MUTATIONS[how](draw, event, kind)


def _raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def _key(event: dict[str, Any]) -> bytes:
    return event["user_id"].encode() if isinstance(event.get("user_id"), str) else b"k"


def _set(event: dict[str, Any], field: str, value: Any) -> Message:
    return _key(event), _raw({**event, field: value})


def _not_json(draw: st.DrawFn, event: dict, kind: str) -> Message:
    raw = _raw(event)
    return _key(event), draw(st.one_of(st.binary(max_size=200), st.integers(1, len(raw) - 1).map(lambda n: raw[:n])))


def _not_an_object(draw: st.DrawFn, event: dict, kind: str) -> Message:
    return _key(event), json.dumps(draw(st.one_of(st.lists(json_values, max_size=4), st.integers(), st.text(),
                                                  st.none(), st.booleans()))).encode()


def _missing_field(draw: st.DrawFn, event: dict, kind: str) -> Message:
    field = draw(st.sampled_from(REQUIRED[kind]))
    return _key(event), _raw({k: v for k, v in event.items() if k != field})


def _extra_field(draw: st.DrawFn, event: dict, kind: str) -> Message:
    name = draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in KNOWN_FIELDS))
    return _set(event, name, draw(json_values))


def _wrong_type(draw: st.DrawFn, event: dict, kind: str) -> Message:
    field = draw(st.sampled_from(sorted(set(event) - {"kind"})))
    if field in TEXT_FIELDS:
        return _set(event, field, draw(not_strings))
    if field == "correct":
        return _set(event, field, draw(st.one_of(st.integers(), st.text(max_size=5))))
    if field == "skill_tags":
        return _set(event, field, draw(st.one_of(st.text(max_size=5), st.integers())))
    return _set(event, field, draw(not_numbers))


def _not_finite(draw: st.DrawFn, event: dict, kind: str) -> Message:
    fields = {"click": ["count"], "video": ["watched_seconds", "position_seconds", "video_length_seconds",
                                            "playback_rate"], "quiz": ["score", "attempt"]}[kind]
    return _set(event, draw(st.sampled_from(fields)), draw(st.sampled_from([math.nan, math.inf, -math.inf])))


def _out_of_range(draw: st.DrawFn, event: dict, kind: str) -> Message:
    """Negative or absurd durations, counts and scores."""
    if kind == "click":
        return _set(event, "count", draw(st.one_of(st.integers(max_value=0), st.integers(min_value=100_001))))
    if kind == "quiz":
        return draw(st.sampled_from([
            _set(event, "score", draw(st.one_of(st.floats(max_value=-1e-9),
                                                st.floats(min_value=1.000001, max_value=1e308)))),
            _set(event, "attempt", draw(st.one_of(st.integers(max_value=0), st.integers(min_value=1001)))),
            _set(event, "skill_tags", draw(st.lists(st.just("t"), min_size=65, max_size=100))),
            _set({k: v for k, v in event.items() if k not in ("score", "correct")}, "attempt", 1),  # no outcome
        ]))
    length = event["video_length_seconds"]
    return draw(st.sampled_from([
        _set(event, "watched_seconds", draw(st.floats(max_value=-1e-9, min_value=-1e308))),
        _set(event, "position_seconds", draw(st.floats(max_value=-1e-9, min_value=-1e308))),
        _set(event, "video_length_seconds", draw(st.one_of(st.floats(max_value=0, min_value=-1e308),
                                                           st.floats(min_value=24 * 3600.0 + 1, max_value=1e308)))),
        _set(event, "position_seconds", length * 1.01 + 1),
        _set(event, "watched_seconds", length * 101 + 1),
        _set(event, "playback_rate", draw(st.one_of(st.floats(max_value=0, min_value=-100),
                                                    st.floats(min_value=16.01, max_value=1e300)))),
    ]))


def _bad_time(draw: st.DrawFn, event: dict, kind: str) -> Message:
    return _set(event, "event_time", draw(bad_times))


def _unknown_kind(draw: st.DrawFn, event: dict, kind: str) -> Message:
    other = draw(st.one_of(st.text(max_size=10).filter(lambda k: k not in REQUIRED), st.none(), st.integers()))
    if draw(st.booleans()):
        return _set(event, "kind", other)
    return _key(event), _raw({k: v for k, v in event.items() if k != "kind"})


def _huge_string(draw: st.DrawFn, event: dict, kind: str) -> Message:
    field = draw(st.sampled_from([f for f in ("event_id", "user_id", "course_id", "action", "video_id", "quiz_id")
                                  if f in event]))
    value = draw(st.sampled_from("xé字🙂")) * draw(st.integers(257, 60_000))
    return (b"k" if field == "user_id" else _key(event)), _raw({**event, field: value})


def _deep_nesting(draw: st.DrawFn, event: dict, kind: str) -> Message:
    depth = draw(st.integers(30, 20_000))
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    nested = (opening * depth + "1" + closing * depth).encode()
    field = draw(st.sampled_from(["skill_tags", "course_id", "extra", "user_id"]))
    raw = _raw({**event, field: "NESTED"}).replace(b'"NESTED"', nested)
    return _key(event), raw


def _invalid_utf8(draw: st.DrawFn, event: dict, kind: str) -> Message:
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80",
                                b"\\ud800", b"\\udfff x"]))
    field = draw(st.sampled_from(["user_id", "course_id", "event_id"]))
    raw = _raw({**event, field: "MARK"}).replace(b"MARK", b"a" + bad + b"b")
    return _key(event), raw


def _control_characters(draw: st.DrawFn, event: dict, kind: str) -> Message:
    field = draw(st.sampled_from(["user_id", "course_id", "event_id"]))
    return _set(event, field, "a" + draw(st.characters(max_codepoint=0x1F)) + "b")


def _wrong_key(draw: st.DrawFn, event: dict, kind: str) -> Message:
    key = draw(st.one_of(st.none(), st.binary(max_size=50).filter(lambda k: k != event["user_id"].encode())))
    return key, _raw(event)


def _empty(draw: st.DrawFn, event: dict, kind: str) -> Message:
    return _key(event), draw(st.sampled_from([None, b"", b" ", b"null", b"{}"]))


MUTATIONS: dict[str, Callable[[st.DrawFn, dict, str], Message]] = {
    "not JSON": _not_json,
    "not an object": _not_an_object,
    "missing field": _missing_field,
    "extra field": _extra_field,
    "wrong type": _wrong_type,
    "NaN or infinity": _not_finite,
    "out of range": _out_of_range,
    "bad event_time": _bad_time,
    "unknown kind": _unknown_kind,
    "huge string": _huge_string,
    "deep nesting": _deep_nesting,
    "invalid UTF-8": _invalid_utf8,
    "control characters": _control_characters,
    "key is not the user": _wrong_key,
    "empty or tombstone": _empty,
}


def draw_many(strategy: st.SearchStrategy, count: int) -> list:
    """``count`` examples of ``strategy``, the same on every run: bulk traffic for a broker test."""
    drawn: list = []
    for round_seed in range(1000):
        @seed(round_seed)
        @settings(max_examples=count - len(drawn), database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def collect(example: Any) -> None:
            drawn.append(example)

        collect()
        if len(drawn) >= count:
            break
    return drawn[:count]
