"""The log readers against the real OULAD and EdNet files, the tabular round trips, and the sample.

Expected counts are computed here from the raw files with csv/gzip, not with the readers.
"""

from __future__ import annotations

import csv
import filecmp
import gzip
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from online.events import ClickEvent, QuizEvent, VideoEvent
from online.sources import (
    InvalidRow,
    ReadResult,
    detect_format,
    ednet_catalogue,
    open_log,
    oulad_catalogue,
    presentation_start,
    read_ednet_kt1,
    read_ednet_kt4,
    read_oulad,
    write_log,
)
from online.sources.oulad_sample import build_oulad_sample
from online.sources.tabular import PARQUET_SCHEMA

SAMPLE = Path(__file__).resolve().parents[1] / "streams" / "sample" / "oulad"
AAA_2013J = ("AAA", "2013J")


def split(results: list[ReadResult]) -> tuple[list[ClickEvent | VideoEvent | QuizEvent], list[InvalidRow]]:
    events = [r for r in results if not isinstance(r, InvalidRow)]
    return events, [r for r in results if isinstance(r, InvalidRow)]


def assert_ordered_with_unique_ids(events: list) -> None:
    assert all(a.event_time <= b.event_time for a, b in zip(events, events[1:]))
    assert len({e.event_id for e in events}) == len(events)


def raw_rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    """All rows of a CSV/TSV file, optionally gzipped, as dicts."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as file:
        return list(csv.DictReader(file, delimiter=delimiter))


# --- OULAD ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oulad(shared_data: Path) -> Path:
    return shared_data / "oulad"


@pytest.fixture(scope="module")
def raw_clicks(oulad: Path) -> tuple[list[dict[str, str]], set[tuple[str, str]]]:
    """The raw click rows of AAA 2013J, and every presentation that has clicks."""
    with gzip.open(oulad / "studentVle_partial.tsv.gz", "rt", newline="") as file:
        rows = csv.reader(file, delimiter="\t")
        header = next(rows)
        aaa, presentations = [], set()
        for row in rows:
            presentations.add((row[0], row[1]))
            if (row[0], row[1]) == AAA_2013J:
                aaa.append(dict(zip(header, row)))
    return aaa, presentations


@pytest.fixture(scope="module")
def aaa_2013j(oulad: Path) -> list[ReadResult]:
    return list(read_oulad(oulad, presentations=[AAA_2013J]))


def test_oulad_clicks_match_the_raw_file(aaa_2013j, raw_clicks, oulad):
    raw, _ = raw_clicks
    events, invalid = split(aaa_2013j)
    clicks = [e for e in events if e.kind == "click"]
    assert invalid == []
    assert len(clicks) == len(raw) == 180_982
    assert sum(e.count for e in clicks) == sum(int(r["sum_click"]) for r in raw)
    assert {e.user_id for e in clicks} == {f"oulad:{r['id_student']}" for r in raw}
    assert_ordered_with_unique_ids(events)

    # The file's first rows: learner 28400 on resource 546652, day -10, three rows (4, 1, 1 clicks).
    activity = {r["id_site"]: r["activity_type"] for r in raw_rows(oulad / "vle.csv")}
    first = raw[0]
    assert (first["id_student"], first["id_site"], first["date"], first["sum_click"]) == (
        "28400",
        "546652",
        "-10",
        "4",
    )
    by_id = {e.event_id: e for e in clicks}
    key = "oulad:AAA-2013J:vle:546652:28400:-10"
    assert [by_id[k].count for k in (key, f"{key}#2", f"{key}#3")] == [4, 1, 1]
    event = by_id[key]
    assert event.course_id == "oulad:AAA-2013J:vle:546652" and event.action == activity["546652"]
    assert event.event_time == datetime(2013, 10, 1, tzinfo=timezone.utc) - timedelta(days=10)


def test_oulad_rows_map_to_events_as_documented(aaa_2013j, raw_clicks, oulad):
    """Every field of every click and score, from the raw rows; and the documented order within a day."""
    raw, _ = raw_clicks
    start = presentation_start("2013J")
    activity = {r["id_site"]: r["activity_type"] for r in raw_rows(oulad / "vle.csv")}
    events = split(aaa_2013j)[0]
    clicks = Counter(
        (e.user_id, e.course_id, e.action, e.event_time, e.count, e.item_id) for e in events if e.kind == "click"
    )
    assert clicks == Counter(
        (
            f"oulad:{r['id_student']}",
            f"oulad:AAA-2013J:vle:{r['id_site']}",
            activity[r["id_site"]],
            start + timedelta(days=int(r["date"])),
            int(r["sum_click"]),
            None,
        )
        for r in raw
    )
    submitted = {
        (f"oulad:{r['id_student']}", r["id_assessment"]): start + timedelta(days=int(r["date_submitted"]))
        for r in raw_rows(oulad / "studentAssessment_partial.csv")
    }
    scores = [e for e in events if e.kind == "quiz"]
    assert all(e.event_time == submitted[e.user_id, e.quiz_id] for e in scores)

    # Day, then learner, clicks before scores, then resource or assessment id, then repeat.
    def documented_order(event):
        repeat = int(event.event_id.split("#")[1]) if "#" in event.event_id else 1
        item = event.course_id.rsplit(":", 1)[1]
        return (event.event_time, int(event.user_id.removeprefix("oulad:")), event.kind == "quiz", int(item), repeat)

    assert all(documented_order(a) < documented_order(b) for a, b in zip(events, events[1:]))


def test_oulad_scores_match_the_raw_file(aaa_2013j, oulad):
    presentation_of = {
        r["id_assessment"]: (r["code_module"], r["code_presentation"])
        for r in raw_rows(oulad / "assessments.csv")
    }
    raw = [
        r
        for r in raw_rows(oulad / "studentAssessment_partial.csv")
        if presentation_of[r["id_assessment"]] == AAA_2013J
    ]
    scores = [e for e in split(aaa_2013j)[0] if e.kind == "quiz"]
    assert len(scores) == len(raw) == 940
    expected = {
        f"oulad:AAA-2013J:assessment:{r['id_assessment']}:{r['id_student']}": int(r["score"]) / 100
        for r in raw
    }
    assert {e.event_id: e.score for e in scores} == expected
    assert {e.quiz_id for e in scores} == {r["id_assessment"] for r in raw}
    assert all(e.skill_tags == ["oulad:AAA"] and e.course_id == e.event_id.rsplit(":", 1)[0] for e in scores)


def test_oulad_missing_scores_are_reported(oulad, raw_clicks):
    # The presentations with no clicks in the partial file: their scores read fast.
    _, with_clicks = raw_clicks
    others = [
        p
        for p in ((r["code_module"], r["code_presentation"]) for r in raw_rows(oulad / "courses.csv"))
        if p not in with_clicks
    ]
    presentation_of = {
        r["id_assessment"]: (r["code_module"], r["code_presentation"])
        for r in raw_rows(oulad / "assessments.csv")
    }
    raw = [
        r
        for r in raw_rows(oulad / "studentAssessment_partial.csv")
        if presentation_of[r["id_assessment"]] in others
    ]

    events, invalid = split(list(read_oulad(oulad, presentations=others)))
    assert len(events) + len(invalid) == len(raw)
    assert len(invalid) == sum(r["score"] == "" for r in raw) > 0
    assert {r.reason for r in invalid} == {"score is missing"}
    assert all(r.raw.endswith(",") for r in invalid)  # the empty score cell
    assert_ordered_with_unique_ids(events)


def test_oulad_catalogue_covers_the_events(aaa_2013j, oulad):
    catalogue = list(oulad_catalogue(oulad, presentations=[AAA_2013J]))
    resources = [
        r for r in raw_rows(oulad / "vle.csv") if (r["code_module"], r["code_presentation"]) == AAA_2013J
    ]
    assessments = [
        r
        for r in raw_rows(oulad / "assessments.csv")
        if (r["code_module"], r["code_presentation"]) == AAA_2013J
    ]
    assert len(catalogue) == len(resources) + len(assessments) == 211 + 6
    assert {c.part_of for c in catalogue} == {"oulad:AAA-2013J"}
    assert all("Social Sciences" in c.description and c.skills == ["oulad:AAA"] for c in catalogue)
    ids = {c.course_id for c in catalogue}
    assert {e.course_id for e in split(aaa_2013j)[0]} <= ids


def test_oulad_max_learners_keeps_the_lowest_ids():
    clicks = raw_rows(SAMPLE / "studentVle.tsv.gz", "\t")
    scores = raw_rows(SAMPLE / "studentAssessment.csv")
    learners = sorted({int(r["id_student"]) for r in clicks + scores})
    events, _ = split(list(read_oulad(SAMPLE, max_learners=3)))
    assert sorted({int(e.user_id.removeprefix("oulad:")) for e in events}) == learners[:3]


# --- EdNet ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ednet(shared_data: Path) -> Path:
    return shared_data / "ednet"


@pytest.fixture(scope="module")
def kt4(ednet: Path) -> list[ReadResult]:
    return list(read_ednet_kt4(ednet / "KT4"))


def kt4_expectations(ednet: Path) -> Counter[str]:
    """Counts by the documented KT4 mapping, straight from the raw files."""
    questions = {r["question_id"]: r for r in raw_rows(ednet / "contents" / "questions.csv")}
    lectures = {r["lecture_id"]: r for r in raw_rows(ednet / "contents" / "lectures.csv")}
    expected: Counter[str] = Counter()
    for path in sorted((ednet / "KT4").glob("u*.csv")):
        answered: dict[str, set[str]] = {}
        playing: set[str] = set()
        for row in raw_rows(path):
            action, item = row["action_type"], row["item_id"]
            expected["rows"] += 1
            if action == "enter":
                if item.startswith("l") and lectures[item]["part"] == "-1":
                    expected["enter on a lecture without part"] += 1
                else:
                    expected[f"open_{ {'b': 'bundle', 'e': 'explanation', 'l': 'lecture'}[item[0]]}"] += 1
                if item.startswith("b"):
                    answered[item] = set()
            elif action == "respond":
                answered.setdefault(questions[item]["bundle_id"], set()).add(item)
            elif action == "submit":
                expected["quiz"] += len(answered.pop(item, set()))
            elif action == "play_video":
                playing.add(item)
            elif action in ("pause_video", "quit") and item in playing:
                playing.remove(item)
                lecture = lectures[item]
                ok = lecture["part"] != "-1" and int(lecture["video_length"]) > 0
                expected["video" if ok else "stretch without part or length"] += 1
    return expected


def test_ednet_kt4_maps_as_documented(kt4, ednet):
    expected = kt4_expectations(ednet)
    assert expected["rows"] == 18_256
    events, invalid = split(kt4)
    counts = Counter(e.action if e.kind == "click" else e.kind for e in events)
    assert counts == {
        k: expected[k] for k in ("open_bundle", "open_explanation", "open_lecture", "quiz", "video")
    }
    assert (
        len(invalid)
        == expected["enter on a lecture without part"] + expected["stretch without part or length"]
    )
    assert all("has no TOEIC part" in r.reason or "has no video length" in r.reason for r in invalid)
    assert_ordered_with_unique_ids(events)
    assert {e.user_id for e in events} == {f"ednet:{p.stem}" for p in (ednet / "KT4").glob("u*.csv")}

    videos = [e for e in events if e.kind == "video"]
    lengths = {
        r["lecture_id"]: int(r["video_length"]) / 1000 for r in raw_rows(ednet / "contents" / "lectures.csv")
    }
    assert all(
        v.video_length_seconds == lengths[v.video_id] and v.position_seconds <= v.video_length_seconds
        for v in videos
    )

    # u1's first bundle: enter b3544, respond q5012 with "b", submit.
    question = next(r for r in raw_rows(ednet / "contents" / "questions.csv") if r["question_id"] == "q5012")
    quiz = next(e for e in events if e.event_id == "ednet:kt4:u1:1565096194904:submit:b3544:q5012")
    assert (quiz.quiz_id, quiz.question_id, quiz.course_id) == (
        "b3544",
        "q5012",
        f"ednet:part-{question['part']}",
    )
    assert quiz.correct == (question["correct_answer"] == "b")
    assert quiz.skill_tags == [f"ednet:tag:{t}" for t in question["tags"].split(";")]


def test_ednet_kt4_videos_and_answers_as_documented(kt4, ednet):
    """Video stretches from play to pause/quit, and attempts counted per learner and question."""
    events = split(kt4)[0]
    lectures = {r["lecture_id"]: r for r in raw_rows(ednet / "contents" / "lectures.csv")}
    expected_watched = {}
    for path in sorted((ednet / "KT4").glob("u*.csv")):
        playing: dict[str, int] = {}
        for row in raw_rows(path):  # the files are in time order
            action, item, timestamp = row["action_type"], row["item_id"], int(row["timestamp"])
            if action == "play_video":
                playing.setdefault(item, timestamp)
            elif action in ("pause_video", "quit") and item in playing:
                started = playing.pop(item)
                if lectures[item]["part"] != "-1" and int(lectures[item]["video_length"]) > 0:
                    event_id = f"ednet:kt4:{path.stem}:{timestamp}:{action}:{item}"
                    expected_watched[event_id] = (timestamp - started) / 1000
    videos = {e.event_id: e for e in events if e.kind == "video"}
    assert {key: e.watched_seconds for key, e in videos.items()} == expected_watched
    assert all(e.playback_rate == 1 and 0 <= e.position_seconds <= e.video_length_seconds for e in videos.values())

    timestamp_of = {e.event_id: int(e.event_id.split(":")[3]) for e in events}
    assert all(e.event_time == datetime.fromtimestamp(timestamp_of[e.event_id] / 1000, timezone.utc) for e in events)
    attempts: dict[tuple[str, str], list[int]] = {}
    for quiz in (e for e in events if e.kind == "quiz"):
        attempts.setdefault((quiz.user_id, quiz.question_id), []).append(quiz.attempt)
    assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in attempts.values())
    assert max(len(numbers) for numbers in attempts.values()) > 1


def test_ednet_kt4_is_deterministic(kt4, ednet):
    assert list(read_ednet_kt4(ednet / "KT4")) == kt4


@pytest.mark.parametrize("source", ["oulad sample", "ednet-kt1"])
def test_reading_twice_gives_identical_ids(source, shared_data):
    """Event ids come from the rows: two reads give the same ids in the same order (KT4: above)."""
    def read() -> list[str]:
        if source == "oulad sample":
            results = read_oulad(SAMPLE)
        else:
            results = read_ednet_kt1(shared_data / "ednet" / "KT1", max_learners=4)
        return [r.event_id for r in results if not isinstance(r, InvalidRow)]

    first = read()
    assert len(first) > 5_000 and len(set(first)) == len(first)
    assert read() == first


def test_ednet_kt1_answers(ednet):
    paths = sorted((ednet / "KT1").iterdir())[:6]
    raw = [row for path in paths for row in raw_rows(path)]
    events, invalid = split(list(read_ednet_kt1(ednet / "KT1", max_learners=6)))
    assert invalid == []
    assert len(events) == len(raw)
    assert sum(e.correct for e in events) == sum(r["correct"] == "1" for r in raw)
    assert Counter(e.course_id for e in events) == Counter(f"ednet:part-{r['part']}" for r in raw)
    assert_ordered_with_unique_ids(events)
    assert any(e.event_id.endswith("#2") for e in events)  # KT1 repeats some rows exactly
    assert max(e.attempt for e in events) > 1


def test_ednet_catalogue_has_the_parts(ednet):
    catalogue = {c.course_id: c for c in ednet_catalogue(ednet / "contents")}
    assert list(catalogue) == [f"ednet:part-{n}" for n in range(8)]
    assert catalogue["ednet:part-5"].title == "TOEIC Part 5: Incomplete Sentences"
    assert "5,703 questions" in catalogue["ednet:part-5"].description
    assert catalogue["ednet:part-5"].part_of == "ednet:toeic-reading"


# --- Tabular logs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_events(kt4) -> list:
    """Real events of all three kinds: EdNet-KT4's, then the shipped OULAD sample's scores."""
    events, _ = split(kt4)
    scores = [e for e in split(list(read_oulad(SAMPLE)))[0] if e.kind == "quiz"]
    return sorted(events + scores, key=lambda e: e.event_time)


@pytest.mark.parametrize("name", ["log.jsonl", "log.jsonl.gz", "log.csv", "log.csv.gz", "log.parquet"])
def test_tabular_round_trip(real_events, tmp_path, name):
    assert {e.kind for e in real_events} == {"click", "video", "quiz"}
    path = tmp_path / name
    assert write_log(real_events, path) == len(real_events)
    assert list(open_log(path)) == real_events


@pytest.mark.parametrize("name", ["log.jsonl", "log.csv", "log.parquet"])
def test_tabular_logs_come_out_in_time_order(real_events, tmp_path, name):
    path = tmp_path / name
    write_log(reversed(real_events), path)
    read = list(open_log(path))
    assert all(a.event_time <= b.event_time for a, b in zip(read, read[1:]))
    assert sorted(e.event_id for e in read) == sorted(e.event_id for e in real_events)


def sample_events() -> list:
    return split(list(read_oulad(SAMPLE)))[0][:3]


def test_invalid_jsonl_rows_are_reported(tmp_path):
    events = sample_events()
    lines = [
        events[0].model_dump_json(),
        "{not json",
        events[1].model_dump_json().replace('"user_id"', '"learner"'),
        events[2].model_dump_json(),
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    results = list(open_log(path))
    assert [r for r in results if not isinstance(r, InvalidRow)] == [events[0], events[2]]
    invalid = {r.row: r for r in results if isinstance(r, InvalidRow)}
    assert sorted(invalid) == [2, 3]
    assert invalid[2].raw == "{not json" and "JSON" in invalid[2].reason
    assert (
        "user_id: Field required" in invalid[3].reason
        and "learner: Extra inputs are not permitted" in invalid[3].reason
    )


def test_invalid_csv_rows_are_reported(tmp_path):
    events = sample_events()
    path = tmp_path / "log.csv"
    write_log(events, path)
    header, first, second, third = path.read_text().splitlines()
    broken_count = second.replace(f",{events[1].count},", ",many,")
    path.write_text("\n".join([header, first, broken_count, third + ",extra"]) + "\n")
    results = list(open_log(path))
    assert [r for r in results if not isinstance(r, InvalidRow)] == [events[0]]
    invalid = {r.row: r.reason for r in results if isinstance(r, InvalidRow)}
    assert invalid[2].startswith("click.count: Input should be a valid integer")
    assert invalid[3] == f"{len(header.split(',')) + 1} cells, the header has {len(header.split(','))}"


def test_invalid_parquet_rows_are_reported(tmp_path):
    quiz = next(e for e in split(list(read_oulad(SAMPLE)))[0] if e.kind == "quiz")
    too_high = quiz.model_dump() | {"event_id": "too-high", "score": 1.5}
    path = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pylist([quiz.model_dump(), too_high], schema=PARQUET_SCHEMA), path)
    results = list(open_log(path))
    assert results[0] == quiz
    assert isinstance(results[1], InvalidRow) and results[1].row == 2
    assert results[1].reason == "quiz.score: Input should be less than or equal to 1"
    assert json.loads(results[1].raw)["event_id"] == "too-high"


def test_open_log_picks_the_reader(tmp_path):
    assert detect_format(SAMPLE) == "oulad"
    assert detect_format(tmp_path / "x.parquet") == "parquet"
    assert list(open_log(SAMPLE)) == list(read_oulad(SAMPLE))
    with pytest.raises(ValueError, match="cannot tell the format"):
        open_log(tmp_path)
    with pytest.raises(ValueError, match="unknown format"):
        open_log(SAMPLE, format="xml")


def test_open_log_recognises_the_ednet_folders(ednet):
    assert detect_format(ednet / "KT4") == "ednet-kt4"
    assert detect_format(ednet / "KT1") == "ednet-kt1"


# --- The shipped sample -----------------------------------------------------------------------


def test_shipped_sample_reads_with_the_oulad_reader():
    events, invalid = split(list(open_log(SAMPLE)))
    assert invalid == []
    assert_ordered_with_unique_ids(events)
    assert Counter(e.kind for e in events) == {"click": 10_580, "quiz": 88}
    assert len({e.user_id for e in events}) == 60
    assert max(e.event_time for e in events) < presentation_start("2013J") + timedelta(days=60)
    catalogue = {c.course_id for c in oulad_catalogue(SAMPLE)}
    assert len(catalogue) == 211 + 6 and {e.course_id for e in events} <= catalogue
    assert sum(f.stat().st_size for f in SAMPLE.iterdir()) < 100_000
    assert "CC BY 4.0" in (SAMPLE / "ATTRIBUTION.md").read_text()


def test_shipped_sample_events_are_those_of_the_full_data(aaa_2013j):
    full = {e.event_id: e for e in split(aaa_2013j)[0]}
    assert all(full[e.event_id] == e for e in split(list(read_oulad(SAMPLE)))[0])


def test_shipped_sample_rebuilds_byte_for_byte(oulad, tmp_path):
    counts = build_oulad_sample(oulad, tmp_path)
    assert counts == {
        "courses.csv": 1,
        "vle.csv": 211,
        "assessments.csv": 6,
        "studentVle.tsv.gz": 10_580,
        "studentAssessment.csv": 88,
    }
    names = sorted(p.name for p in SAMPLE.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(SAMPLE, tmp_path, names, shallow=False)
    assert (mismatch, errors) == ([], [])
