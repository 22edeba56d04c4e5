"""``coursestream evaluate`` on a small real slice (OULAD AAA 2013J, 30 learners, days up to 2):
deterministic under a seed, and the same metrics in-process and through the broker and a worker;
and its prerequisite-violation rate over the real CS prerequisite graph.

The catalogue is embedded once for the module by the test session's encoder service.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from encoders.settings import EncoderSettings
from online.events import ClickEvent, CourseContent
from online.prerequisites import PrerequisiteGraph
from streams.cli import cli
from streams.tools.evaluation import POLICY_NAMES, PROJECT_POLICY, catalogue_contents, catalogue_store, evaluate_log

pytestmark = pytest.mark.model

SLICE = {"presentations": [("AAA", "2013J")], "last_day": 2, "max_learners": 30}


@pytest.fixture(scope="module")
def cache(shared_data, encoder_service, tmp_path_factory) -> Path:
    """The slice's catalogue, embedded into the cache the command reads."""
    folder = tmp_path_factory.mktemp("catalogues")
    contents = catalogue_contents(shared_data / "oulad", "oulad", SLICE["presentations"], None)
    catalogue_store(contents, folder, EncoderSettings(), encoder_service.url)
    return folder


def test_evaluation_is_deterministic_under_a_seed(shared_data, cache, tmp_path) -> None:
    runner = CliRunner()

    def run(name: str, seed: int, *options: str) -> dict:
        result = runner.invoke(cli, [
            "evaluate", str(shared_data / "oulad"), "--presentation", "AAA-2013J", "--last-day", "2",
            "--max-learners", "30", "--window", "20", "--seed", str(seed), "--cache", str(cache),
            "--json", str(tmp_path / f"{name}.json"), "--plot", str(tmp_path / f"{name}.png"), *options,
        ])
        assert result.exit_code == 0, result.output
        assert "recall@10" in result.output  # the table
        return json.loads((tmp_path / f"{name}.json").read_text())

    first, again = run("first", 7), run("again", 7)
    assert first == again
    assert set(first["overall"]) == set(POLICY_NAMES) >= {"coursestream", "coursestream-diverse"}
    assert first["steps"] > 50
    # the metrics the field reports, per learner stage (first 5 events against the rest)
    steps = first["by_stage"]["steps"]
    assert steps["new"] > 0 and steps["established"] > 0 and steps["new"] + steps["established"] == first["steps"]
    for scores in [first["overall"], first["by_stage"]["new"], first["by_stage"]["established"]]:
        for name, values in scores.items():
            assert 0 < values["precision"] <= values["hit_rate"] <= 1, name
            assert values["recall"] <= values["hit_rate"] and 0 < values["f1"] <= 1, name
    assert first["overall"]["coursestream-diverse"] != first["overall"]["coursestream"]
    assert (tmp_path / "first.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the seed reaches the baselines that draw random numbers
    other = run("other", 8, "--policies", "river-mf")
    assert other["overall"]["river-mf"] != first["overall"]["river-mf"]


@pytest.mark.broker
def test_in_process_and_through_kafka_give_identical_metrics(shared_data, cache, broker, encoder_service) -> None:
    common = {"policies": [PROJECT_POLICY], "k": 10, "window": 10, "cache": cache,
              "encoder_url": encoder_service.url, **SLICE}
    in_process = evaluate_log(shared_data / "oulad", "oulad", **common)
    through = evaluate_log(shared_data / "oulad", "oulad", through_kafka=True,
                           bootstrap_servers=broker.bootstrap_servers, **common)
    assert through.steps == in_process.steps > 50
    assert through.overall == in_process.overall
    assert through.series == in_process.series  # window by window, every 5 steps
    assert 0.0 < in_process.overall[PROJECT_POLICY]["ndcg"] < 1.0


def test_evaluation_of_a_quiz_log_scores_the_knowledge_model_against_its_baselines(shared_data, tmp_path) -> None:
    """EdNet-KT4 (9 real learners): the course metrics, and the knowledge model's next answers. BKT
    fitted on 4 or 5 learners' 1,200 answers predicts the others no better than chance, so it is
    only held to sane probabilities."""
    from online.evaluation.knowledge import BKT, MODELS, knowledge_report
    from online.sources import read_ednet_kt4

    result = CliRunner().invoke(cli, ["evaluate", str(shared_data / "ednet" / "KT4"), "--policies",
                                      "recent-popularity,user-knn", "--k", "3", "--json", str(tmp_path / "kt4.json")])
    assert result.exit_code == 0, result.output
    assert "knowledge model, next answer of" in result.output
    report = json.loads((tmp_path / "kt4.json").read_text())
    knowledge = report["knowledge"]
    assert knowledge == knowledge_report(read_ednet_kt4(shared_data / "ednet" / "KT4"))
    assert knowledge["answers"] > 1000 and knowledge["learners"] == 9 and set(knowledge["models"]) == set(MODELS)
    for name, values in knowledge["models"].items():
        assert (0.4 if name == BKT else 0.5) < values["auc"] < 1, name
        assert 0 < values["rmse"] < 0.5 and 0 < values["log_loss"] < 0.7, name
    assert {"precision", "f1", "hit_rate"} <= set(report["overall"]["user-knn"])


def test_prerequisite_violations_are_counted_against_the_catalogue_s_graph(shared_data, encoder_service, tmp_path
                                                                           ) -> None:
    """Over the real CS prerequisite graph (learners who each follow one course's learning path, a
    course a day), the violation rate is measured, not assumed: recent popularity recommends what
    others reached, before its prerequisites, and the project's policy never does."""
    prereqs = shared_data / "prereqs"
    graph = PrerequisiteGraph.from_csv(prereqs / "cs_courses.csv", prereqs / "cs_edges.csv")
    goals = sorted(graph.titles, key=lambda c: (-len(graph.learning_path(c)), c))[:40]
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    events = [ClickEvent(event_id=f"{n}-{course}", user_id=f"learner-{n}", course_id=course, action="complete",
                         event_time=start + timedelta(days=day, minutes=n))
              for n, goal in enumerate(goals) for day, course in enumerate(graph.learning_path(goal))]
    events.sort(key=lambda e: e.event_time)
    log, courses = tmp_path / "events.jsonl", tmp_path / "courses.jsonl"
    log.write_text("".join(e.model_dump_json() + "\n" for e in events))
    courses.write_text("".join(CourseContent(course_id=c, title=graph.title(c),
                                             prerequisites=sorted(graph.prerequisites.get(c, ()))).model_dump_json() + "\n"
                               for c in sorted({e.course_id for e in events})))
    report = evaluate_log(log, "jsonl", [PROJECT_POLICY, "recent-popularity"], courses=courses,
                          cache=tmp_path / "cache", encoder_url=encoder_service.url)
    print(report.table())
    assert report.steps == len(events)
    assert report.overall["recent-popularity"]["prerequisite_violations"] > 0.05
    assert report.overall[PROJECT_POLICY]["prerequisite_violations"] == 0.0


def test_vector_ablations_on_a_text_only_catalogue_rank_as_text(shared_data, cache, tmp_path) -> None:
    """OULAD has no images: every ablation with text ranks as text alone; an unknown one is refused."""
    runner = CliRunner()

    def run(vectors: str) -> dict:
        result = runner.invoke(cli, [
            "evaluate", str(shared_data / "oulad"), "--presentation", "AAA-2013J", "--last-day", "2",
            "--max-learners", "30", "--policies", PROJECT_POLICY, "--cache", str(cache), "--vectors", vectors,
            "--json", str(tmp_path / f"{vectors}.json"),
        ])
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / f"{vectors}.json").read_text())["overall"][PROJECT_POLICY]

    text, fused, learned = run("text"), run("fused"), run("learned")
    assert text == fused == learned and text["ndcg"] > 0
    refused = runner.invoke(cli, ["evaluate", str(shared_data / "oulad"), "--vectors", "audio"])
    assert refused.exit_code != 0 and "--vectors" in refused.output
