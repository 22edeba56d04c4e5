"""A/B experiments end to end: real OULAD events replayed through a real worker running both
policies (real broker, real models); take-ups attributed to the lists that showed them, the
experiment report against a count made here from the topics, and dismissals.

The count here is independent of ``online.attribution``: it places each list after the message
it answers by the trigger's partition offset (the report goes by event id), and finds each
take-up's list by scanning the learner's earlier lists.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from online.attribution import RECENT_LISTS, WINDOW_DAYS
from online.dismissals import DISMISS_DAYS
from online.events import Feedback, RankRequest, parse_learner_message
from online.recommender import POLICIES
from streams.cli import cli
from streams.tools.demo import sample_events
from tests.kafka_io import read_to_end
from tests.test_pipeline import Pipeline, catalogue, running  # noqa: F401  (module fixtures: one worker, both policies)
from tests.test_worker_api import samples, total

pytestmark = [pytest.mark.broker, pytest.mark.model]

#: Real learner events replayed (OULAD AAA 2013J, the package's sample).
EVENTS = 1500


def read_topics(pipeline: Pipeline) -> tuple[list, list[bytes]]:
    """Every learner-topic message ``(partition, offset, value)`` and every recommendation (bytes),
    once the topics are read to their end (the worker has answered everything sent)."""
    s = pipeline.settings
    messages = read_to_end(s.kafka_bootstrap_servers, s.topic_learner_events,
                           decode=lambda m: (m.partition, m.offset, m.value))
    recommendations = read_to_end(s.kafka_bootstrap_servers, s.topic_recommendations, decode=lambda m: m.value)
    return messages, recommendations


def report(pipeline: Pipeline, path: Path, *options: str) -> tuple[dict, str]:
    """``coursestream experiment report`` with the worker's settings: its JSON and its text."""
    result = CliRunner().invoke(cli, ["experiment", "report", "--resamples", "999", "--json", str(path), *options],
                                env=pipeline.env)
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text()), result.output


def independent_count(messages: list, recommendations: list[dict]) -> dict[str, dict]:
    """Per policy: lists, items, lists taken up, take-ups (by rank, exploring), learners, counted
    straight from the topics (see the module)."""
    messages = [(partition, offset, parse_learner_message(value)) for partition, offset, value in messages]
    recommendations = [json.loads(value) for value in recommendations]
    answers = defaultdict(list)  # (partition, offset) -> lists answering it
    for rec in recommendations:
        answers[rec["trigger"]["partition"], rec["trigger"]["offset"]].append(rec)
    counts: dict[str, dict] = defaultdict(lambda: {"lists": 0, "items": 0, "lists_taken_up": 0, "take_ups": 0,
                                                   "by_rank": Counter(), "exploring": 0, "learners": set()})
    for rec in recommendations:
        policy = counts[rec["policy"]]
        policy["lists"] += 1
        policy["items"] += len(rec["items"])
        policy["learners"].add(rec["user_id"])
    shown: dict[str, list[dict]] = defaultdict(list)  # learner -> their lists so far, oldest first
    taken: dict[str, set[str]] = defaultdict(set)
    taken_up_lists: set[tuple[int, int]] = set()
    for partition, offset, message in sorted(messages, key=lambda m: m[:2]):
        user = message.user_id
        if message.kind in ("click", "video", "quiz") and message.course_id not in taken[user]:
            taken[user].add(message.course_id)
            candidates = [rec for rec in shown[user][-RECENT_LISTS:]
                          if message.course_id in [item["course_id"] for item in rec["items"]]]
            if candidates:
                rec = candidates[-1]
                age = message.event_time - datetime.fromisoformat(rec["trigger"]["event_time"])
                if age <= timedelta(days=WINDOW_DAYS):
                    policy = counts[rec["policy"]]
                    (item,) = [item for item in rec["items"] if item["course_id"] == message.course_id]
                    policy["take_ups"] += 1
                    policy["by_rank"][item["rank"]] += 1
                    policy["exploring"] += item["explore"]
                    key = (rec["trigger"]["partition"], rec["trigger"]["offset"])
                    if key not in taken_up_lists:
                        taken_up_lists.add(key)
                        policy["lists_taken_up"] += 1
        shown[user].extend(answers[partition, offset])
    return counts


def worker_series(pipeline: Pipeline) -> dict[tuple[str, tuple], float]:
    return samples(f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}")


def test_the_report_s_figures_equal_a_count_from_the_topics_and_the_worker_s_series(running, tmp_path) -> None:
    pipeline, worker = running
    events = list(sample_events(EVENTS))
    pipeline.send_events(events)
    pipeline.recommendations(lambda r: {x.trigger.event_id for x in r} >= {e.event_id for e in events}, worker)

    found, text = report(pipeline, tmp_path / "topics.json")
    assert "take-ups by rank shown" in text

    messages, recommendations = read_topics(pipeline)
    counted = independent_count(messages, recommendations)
    assert set(found["variants"]) == set(POLICIES) == set(counted)
    assert found["control"] == POLICIES[0]
    series = worker_series(pipeline)
    for policy, variant in found["variants"].items():
        expected = counted[policy]
        assert variant["lists"] == expected["lists"] > 100, policy
        assert variant["items"] == expected["items"]
        assert variant["learners"] == len(expected["learners"])
        assert variant["lists_taken_up"] == expected["lists_taken_up"] > 0, policy
        assert variant["take_ups"] == expected["take_ups"]
        assert variant["exploring_take_ups"] == expected["exploring"]
        assert variant["take_ups_by_rank"] == {str(rank): n for rank, n in sorted(expected["by_rank"].items())}
        assert variant["rate"] == pytest.approx(expected["lists_taken_up"] / expected["lists"])
        low, high = variant["interval"]
        assert 0 <= low <= variant["rate"] <= high <= 1
        # the worker attributed the same take-ups live
        assert total(series, "coursestream_recommendations_total", policy=policy) == expected["lists"]
        assert total(series, "coursestream_recommended_items_total", policy=policy) == expected["items"]
        assert total(series, "coursestream_take_ups_total", policy=policy) == expected["take_ups"]
        assert total(series, "coursestream_take_ups_total", policy=policy, explore="true") == expected["exploring"]
        for rank, n in expected["by_rank"].items():
            assert total(series, "coursestream_take_ups_total", policy=policy, rank=str(rank)) == n
        assert total(series, "coursestream_lists_taken_up_total", policy=policy) == expected["lists_taken_up"]
    (comparison,) = found["comparisons"]
    assert comparison["policy"] == POLICIES[1]
    rates = {policy: variant["rate"] for policy, variant in found["variants"].items()}
    assert comparison["difference"] == pytest.approx(rates[POLICIES[1]] - rates[POLICIES[0]])
    low, high = comparison["interval"]
    assert low <= comparison["difference"] <= high and 0 < comparison["p_value"] <= 1
    assert comparison["lists_needed"] > 0 and comparison["design_effect"] >= 1

    # the same report from files of the messages, as a replay sends them, and of the recommendations
    events_file, recommendations_file = tmp_path / "events.jsonl", tmp_path / "recommendations.jsonl"
    events_file.write_bytes(b"\n".join(value for _, _, value in sorted(messages, key=lambda m: m[:2])) + b"\n")
    recommendations_file.write_bytes(b"\n".join(recommendations) + b"\n")
    from_files, _ = report(pipeline, tmp_path / "files.json", "--events", str(events_file),
                           "--recommendations", str(recommendations_file))
    assert from_files == found


def test_a_dismissed_course_stays_out_of_the_learner_s_lists_for_the_documented_time(running, catalogue) -> None:
    pipeline, worker = running
    learner, first = "dismissing-learner", next(sample_events(1)).user_id
    history = [e.model_copy(update={"event_id": f"dismiss-{e.event_id}", "user_id": learner})
               for e in sample_events(60) if e.user_id == first]
    pipeline.send_events(history)
    recs = pipeline.recommendations(lambda r: history[-1].event_id in {x.trigger.event_id for x in r}, worker)
    (last,) = [rec for rec in recs if rec.trigger.event_id == history[-1].event_id]
    dismissed = last.items[0].course_id
    start = history[-1].event_time
    dismissal = Feedback(event_id="dismiss-1", user_id=learner, course_id=dismissed, event_time=start,
                         action="dismiss", recommendation_id=last.trigger.event_id)
    # later clicks on what the learner already took: each asks for a fresh list
    later = [history[-1].model_copy(update={"event_id": f"dismiss-later-{day}", "event_time": start + timedelta(days=day)})
             for day in (0, 1, 7, 14, 29)]
    taken = {e.course_id for e in history}
    shelf = [dismissed, *[c.course_id for c in catalogue if c.course_id not in taken | {dismissed}][:19]]

    def ask(name: str, days: float) -> RankRequest:
        return RankRequest(event_id=name, user_id=learner, event_time=start + timedelta(days=days),
                           candidates=shelf, k=len(shelf))

    asks = [ask("dismiss-ask-before-end", DISMISS_DAYS - 0.01), ask("dismiss-ask-after-end", DISMISS_DAYS + 0.01)]
    pipeline.send_events([dismissal, *later, *asks])
    wanted = {m.event_id for m in [dismissal, *later, *asks]}
    recs = {rec.trigger.event_id: rec for rec in pipeline.recommendations(
        lambda r: wanted <= {x.trigger.event_id for x in r}, worker) if rec.trigger.event_id in wanted}
    for event_id in [dismissal.event_id, *(e.event_id for e in later)]:
        shown = [item.course_id for item in recs[event_id].items]
        assert shown and dismissed not in shown, event_id
    assert dismissed not in [item.course_id for item in recs["dismiss-ask-before-end"].items]
    assert dismissed in [item.course_id for item in recs["dismiss-ask-after-end"].items]
    assert total(worker_series(pipeline), "coursestream_feedback_total", action="dismiss") == 1
