"""`coursestream replay`: keyed, in order, validated by a dry run, resumable without duplicates.

The broker tests (marked) use a real Tansu broker process and real OULAD events: the sample
shipped in ``streams/sample/oulad`` (learners of AAA 2013J).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from online.events import parse_learner_event
from online.sources import open_log, presentation_start, write_log
from streams.tools.demo import sample_events
from streams.tools.processes import embedded_env, settings_from
from streams.replay import (
    CHECKPOINT_EVENTS,
    Checkpoint,
    CheckpointMismatch,
    _Acknowledgements,
    default_checkpoint_path,
    replay_events,
    replay_key,
    validate,
)
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.kafka_io import PROJECT_ROOT, consume

SAMPLE = PROJECT_ROOT / "streams" / "sample" / "oulad"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def broker_env(broker, tmp_path: Path) -> dict[str, str]:
    """Settings of a replay into topics of their own (2 partitions), state under ``tmp_path``."""
    return embedded_env(broker.bootstrap_servers, "http://127.0.0.1:9", tmp_path, app_id=f"r{uuid.uuid4().hex[:8]}")


def coursestream(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], cwd=PROJECT_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=180)


def start_coursestream(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "streams", *args], cwd=PROJECT_ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def consume_all(env: dict[str, str], expected: int, quiet_s: float = 1.5) -> list:
    """Every message of the learner-events topic: waits for ``expected``, then ``quiet_s`` for any more.

    (Counting by reading: Tansu's ListOffsets does not give the true end offset.)
    """
    reached: list[float] = []

    def until(records: list) -> bool:
        if len(records) < expected:
            return False
        if not reached:
            reached.append(time.monotonic())
        return time.monotonic() - reached[0] >= quiet_s

    return consume(env["COURSESTREAM_KAFKA_BOOTSTRAP_SERVERS"], env["COURSESTREAM_TOPIC_LEARNER_EVENTS"], until,
                   decode=lambda m: (m.key.decode(), m.partition, parse_learner_event(m.value)))


def assert_keyed_in_per_learner_order(received: list, events: list) -> None:
    """Each message keyed by its learner, one partition a learner, each learner's events in sent order."""
    partition_of: dict[str, int] = {}
    per_user_received = defaultdict(list)
    for key, partition, event in received:
        assert key == event.user_id
        assert partition_of.setdefault(key, partition) == partition
        per_user_received[key].append(event)
    per_user_sent = defaultdict(list)
    for event in events:
        per_user_sent[event.user_id].append(event)
    assert per_user_received == per_user_sent


def wait_for_checkpoint(process: subprocess.Popen[str], path: Path, timeout_s: float = 60) -> None:
    """Until the running replay has recorded some acknowledged events."""
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and json.loads(path.read_text())["acknowledged"] > 0):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.05)


def crafted_log(tmp_path: Path) -> tuple[Path, list, dict[int, str]]:
    """40 real events with 4 bad lines among them; returns the file, the events, bad line -> reason."""
    events = list(sample_events(40))
    assert events[0].kind == "click"
    lines = [event.model_dump_json() for event in events]
    first = events[0].model_dump(mode="json")
    bad = {
        6: "{not json",
        11: json.dumps({k: v for k, v in first.items() if k != "user_id"} | {"learner": "oulad:1"}),
        16: json.dumps(first | {"event_id": "none", "count": 0}),
        21: json.dumps(first | {"event_id": "fewer", "count": -3}),
    }
    for row in sorted(bad):
        lines.insert(row - 1, bad[row])
    path = tmp_path / "crafted.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, events, bad


# --- Dry run, without a broker ----------------------------------------------------------------


def test_dry_run_report_groups_invalid_rows_by_reason(tmp_path: Path) -> None:
    path, events, bad = crafted_log(tmp_path)
    report = validate(open_log(path), str(path), "jsonl")
    assert report.events == 40 and report.by_kind == dict(Counter(e.kind for e in events))
    assert (report.learners, report.courses) == (len({e.user_id for e in events}), len({e.course_id for e in events}))
    assert (report.earliest, report.latest) == (events[0].event_time, events[-1].event_time)
    assert report.in_time_order
    assert report.invalid_rows == 4
    grouped = {reason.pattern: [row.row for row in reason.examples] for reason in report.invalid_reasons}
    assert grouped["click.count: Input should be greater than or equal to *"] == [16, 21]
    assert [rows for pattern, rows in grouped.items() if "Invalid JSON" in pattern] == [[6]]
    assert [rows for pattern, rows in grouped.items() if "user_id: Field required" in pattern] == [[11]]
    assert report.invalid_reasons[0].rows == 2  # most frequent first

    text = report.text()
    assert "invalid rows  4" in text and "in time order" in text
    assert f"{path} row 21: click.count: Input should be greater than or equal to 1" in text
    assert json.loads(report.to_json())["invalid_reasons"][0]["examples"][1] == {
        "source": str(path), "row": 21, "reason": "click.count: Input should be greater than or equal to 1",
        "raw": bad[21],
    }


def test_dry_run_report_tells_a_log_out_of_time_order() -> None:
    events = list(sample_events(3000))  # 17 days
    report = validate(reversed(events), "reversed", "jsonl")
    assert report.out_of_order == len({e.event_time for e in events}) - 1 and not report.in_time_order
    assert (report.earliest, report.latest) == (events[0].event_time, events[-1].event_time)
    assert "NOT in time order" in report.text()


def test_dry_run_report_of_the_real_oulad_folder(shared_data: Path) -> None:
    """The whole OULAD copy: every click row and every score row accounted for, in time order."""
    oulad = shared_data / "oulad"
    report = validate(open_log(oulad), str(oulad), "oulad")

    # Learners, courses and days (since 1970) of the raw rows, computed here with csv.
    start = {code: (presentation_start(code) - EPOCH).days for code in ("2013B", "2013J", "2014B", "2014J")}
    learners, courses, days, clicks = set(), set(), set(), 0
    with gzip.open(oulad / "studentVle_partial.tsv.gz", "rt", newline="") as file:
        rows = csv.reader(file, delimiter="\t")
        next(rows)
        for module, code, learner, site, date, _ in rows:
            clicks += 1
            learners.add(learner)
            courses.add(f"{module}-{code}:vle:{site}")
            days.add(start[code] + int(date))
    with (oulad / "assessments.csv").open(newline="") as file:
        presentation = {r["id_assessment"]: (r["code_module"], r["code_presentation"]) for r in csv.DictReader(file)}
    with (oulad / "studentAssessment_partial.csv").open(newline="") as file:
        score_rows = list(csv.DictReader(file))
    scores = [r for r in score_rows if r["score"] != ""]
    for r in scores:
        module, code = presentation[r["id_assessment"]]
        learners.add(r["id_student"])
        courses.add(f"{module}-{code}:assessment:{r['id_assessment']}")
        days.add(start[code] + int(r["date_submitted"]))
    missing = [row for row, r in enumerate(score_rows, start=1) if r["score"] == ""]

    assert report.by_kind == {"click": clicks, "quiz": len(scores)} == {"click": 1_048_575, "quiz": 36_166}
    assert (report.learners, report.courses) == (len(learners), len(courses))
    assert (report.earliest, report.latest) == (EPOCH + timedelta(days=min(days)), EPOCH + timedelta(days=max(days)))
    assert report.in_time_order
    (reason,) = report.invalid_reasons
    assert (reason.pattern, reason.rows, report.invalid_rows) == ("score is missing", len(missing), 18)
    assert len(reason.examples) == 3 and {row.row for row in reason.examples} <= set(missing)


def test_a_checkpoint_resumes_only_the_same_source_to_the_same_topic(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    write_log(sample_events(20), log)
    settings = Settings(data_dir=tmp_path / "state", topic_learner_events="a")
    key = replay_key(settings, log, "jsonl")
    path = default_checkpoint_path(settings, key)
    assert path.parent == tmp_path / "state" / "replay"
    assert Checkpoint.load(path, key) == Checkpoint(path, key)  # none yet: from the start
    Checkpoint(path, key, acknowledged=7, total=20).save()
    assert Checkpoint.load(path, key) == Checkpoint(path, key, 7, 20)

    elsewhere = replay_key(Settings(data_dir=tmp_path / "state", topic_learner_events="b"), log, "jsonl")
    assert default_checkpoint_path(settings, elsewhere) != path
    with pytest.raises(CheckpointMismatch, match="another topic"):
        Checkpoint.load(path, elsewhere)

    with log.open("a") as file:  # the log changes: the stream the count refers to is gone
        file.write("{}\n")
    changed = replay_key(settings, log, "jsonl")
    assert default_checkpoint_path(settings, changed) == path  # found, and refused
    with pytest.raises(CheckpointMismatch, match="files changed"):
        Checkpoint.load(path, changed)


def test_a_checkpoint_counts_only_sends_acknowledged_without_a_gap(tmp_path: Path) -> None:
    """Sends resolve out of order across partitions, and one may fail: only the unbroken prefix counts."""
    path, key = tmp_path / "checkpoint.json", {"source": "s"}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sends = [loop.create_future() for _ in range(4)]
        acknowledgements = _Acknowledgements(Checkpoint(path, key, acknowledged=10))
        for send in sends[:3]:
            acknowledgements.add(send)
        sends[2].set_result(None)
        sends[0].set_result(None)
        sends[1].set_exception(RuntimeError("broker gone"))
        sends[3].set_result(None)
        with pytest.raises(RuntimeError, match="broker gone"):
            acknowledgements.add(sends[3])
        with pytest.raises(RuntimeError, match="broker gone"):
            await acknowledgements.wait()

    asyncio.run(scenario())
    assert Checkpoint.load(path, key).acknowledged == 11  # the 10 before, and the first send


def test_a_checkpoint_of_ednet_kt4_covers_its_contents(shared_data: Path) -> None:
    files = [name for name, _, _ in replay_key(Settings(), shared_data / "ednet" / "KT4", "ednet-kt4")["files"]]
    assert {Path(name).name for name in files} >= {"u1.csv", "questions.csv", "lectures.csv"}


# --- Against a broker -------------------------------------------------------------------------


@pytest.mark.broker
def test_replay_sends_every_valid_event_keyed_by_user_in_per_learner_order(broker, tmp_path: Path) -> None:
    events = list(sample_events(500))
    log = tmp_path / "history.jsonl"
    write_log(events, log)
    with log.open("a") as extra:
        extra.write('{"kind": "click", "event_id": "broken"}\n')

    env = broker_env(broker, tmp_path)
    done = coursestream(env, "replay", str(log))
    assert done.returncode == 0, done.stderr
    assert "sent 500 learner events; skipped 1 invalid rows" in done.stdout
    assert_keyed_in_per_learner_order(consume_all(env, len(events)), events)


@pytest.mark.broker
def test_replay_of_real_oulad_events_then_consume_gives_them_back(broker, tmp_path: Path) -> None:
    """The shipped OULAD folder as it is (10,668 real events), then a re-run that sends nothing."""
    events = list(sample_events(None))
    env = broker_env(broker, tmp_path)
    done = coursestream(env, "replay", str(SAMPLE))
    assert done.returncode == 0, done.stderr
    assert f"events        {len(events):,} (click 10,580, quiz 88)" in done.stdout
    assert f"sent {len(events)} learner events; skipped 0 invalid rows" in done.stdout

    again = coursestream(env, "replay", str(SAMPLE))
    assert again.returncode == 0, again.stderr
    assert f"all {len(events):,} events of {SAMPLE} were already sent" in again.stdout
    assert_keyed_in_per_learner_order(consume_all(env, len(events)), events)


class Interrupted(Exception):
    pass


@pytest.mark.broker
def test_an_interrupted_replay_resumes_without_duplicates(broker, tmp_path: Path) -> None:
    """Interrupted twice by an error from the event source, deterministically; then finished."""
    env = broker_env(broker, tmp_path)
    settings = settings_from(env)
    ensure_topics(settings)
    events = list(sample_events(3000))
    path, key = tmp_path / "checkpoint.json", {"source": "the first 3,000 events of the OULAD sample"}

    def failing_after(count: int):
        yield from events[:count]
        raise Interrupted

    for count in (1234, 2500):
        with pytest.raises(Interrupted):
            asyncio.run(replay_events(settings, failing_after(count), progress=False,
                                      checkpoint=Checkpoint.load(path, key)))
        saved = Checkpoint.load(path, key)
        assert (saved.acknowledged, saved.total) == (count, None)  # all it sent, acknowledged

    sent = asyncio.run(replay_events(settings, events, progress=False, checkpoint=saved))
    assert sent == 500 and Checkpoint.load(path, key) == Checkpoint(path, key, 3000, 3000)
    received = consume_all(env, len(events))
    assert len(received) == len(events) and len({event.event_id for _, _, event in received}) == len(events)
    assert_keyed_in_per_learner_order(received, events)


def replay_under_way(broker, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A CLI replay of 3,000 real events at 1,000/s that has written its first checkpoint."""
    env = broker_env(broker, tmp_path)
    events = list(sample_events(3000))
    log, checkpoint = tmp_path / "slice.jsonl", tmp_path / "replay.json"
    write_log(events, log)
    command = ["replay", str(log), "--rate", "1000", "--checkpoint", str(checkpoint)]
    first = start_coursestream(env, *command)
    wait_for_checkpoint(first, checkpoint)
    return env, events, log, checkpoint, command, first


@pytest.mark.broker
def test_sigterm_stops_a_replay_that_the_same_command_resumes(broker, tmp_path: Path) -> None:
    env, events, log, checkpoint, command, first = replay_under_way(broker, tmp_path)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM, err
    acknowledged = json.loads(checkpoint.read_text())["acknowledged"]
    assert 0 < acknowledged < len(events)
    assert f"sent {acknowledged} learner events" in out and "stopped by SIGTERM" in err

    second = coursestream(env, *command)
    assert second.returncode == 0, second.stderr
    assert f"resuming after {acknowledged:,} of 3,000 events" in second.stdout
    assert f"sent {len(events) - acknowledged} learner events" in second.stdout
    received = consume_all(env, len(events))
    assert len(received) == len(events) and len({event.event_id for _, _, event in received}) == len(events)
    assert_keyed_in_per_learner_order(received, events)

    with log.open("a") as file:  # a changed log is not resumed
        file.write(events[0].model_dump_json() + "\n")
    changed = coursestream(env, *command)
    assert changed.returncode == 2 and "pass --from-start" in changed.stderr


@pytest.mark.broker
def test_after_sigkill_only_events_after_the_checkpoint_are_sent_twice(broker, tmp_path: Path) -> None:
    """The documented at-least-once edge: no event lost, the duplicates all after the checkpoint."""
    env, events, log, checkpoint, command, first = replay_under_way(broker, tmp_path)
    first.kill()
    first.communicate(timeout=60)
    acknowledged = json.loads(checkpoint.read_text())["acknowledged"]
    second = coursestream(env, *command)
    assert second.returncode == 0, second.stderr
    assert f"resuming after {acknowledged:,} of 3,000 events" in second.stdout

    received = consume_all(env, len(events))
    copies = Counter(event.event_id for _, _, event in received)
    assert set(copies) == {event.event_id for event in events} and max(copies.values()) <= 2
    position = {event.event_id: i for i, event in enumerate(events)}
    twice = sorted(position[event_id] for event_id, count in copies.items() if count == 2)
    assert all(acknowledged <= i < acknowledged + CHECKPOINT_EVENTS + 500 for i in twice)  # + in flight
    first_copies, seen = [], set()
    for key, partition, event in received:  # what a consumer dropping repeated ids sees
        if event.event_id not in seen:
            seen.add(event.event_id)
            first_copies.append((key, partition, event))
    assert_keyed_in_per_learner_order(first_copies, events)


@pytest.mark.broker
def test_dry_run_sends_nothing_and_reports_invalid_rows(broker, tmp_path: Path) -> None:
    env = broker_env(broker, tmp_path)
    ensure_topics(settings_from(env))
    path, events, bad = crafted_log(tmp_path)
    done = coursestream(env, "replay", str(path), "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["events"], report["invalid_rows"], report["in_time_order"]) == (40, 4, True)
    examples = [example for reason in report["invalid_reasons"] for example in reason["examples"]]
    assert sorted((e["row"], e["raw"]) for e in examples) == sorted((row, raw[:200]) for row, raw in bad.items())
    assert all(e["source"] == str(path) and e["reason"] for e in examples)

    assert consume_all(env, 0) == []  # the topic stays empty
    assert not (tmp_path / "replay").exists()  # and no checkpoint is written


def test_replay_refuses_json_without_dry_run(tmp_path: Path) -> None:
    done = coursestream({}, "replay", str(SAMPLE), "--json")
    assert done.returncode == 2 and "--json goes with --dry-run" in done.stderr
