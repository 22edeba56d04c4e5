"""The prerequisite graph, checked on the real CS course graph against its raw edge list.

The data (654 courses, 861 edges from 11 universities) has no self-loops, duplicate edges,
cycles or edges to courses missing from the catalogue; the graph handles each anyway (see
the small hand-made cases at the end).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from online.prerequisites import PrerequisiteCycle, PrerequisiteGraph


@pytest.fixture(scope="module")
def cs_files(shared_data: Path) -> tuple[Path, Path]:
    folder = shared_data / "prereqs"
    return folder / "cs_courses.csv", folder / "cs_edges.csv"


@pytest.fixture(scope="module")
def graph(cs_files: tuple[Path, Path]) -> PrerequisiteGraph:
    return PrerequisiteGraph.from_csv(*cs_files)


@pytest.fixture(scope="module")
def raw_prerequisites(cs_files: tuple[Path, Path]) -> dict[str, set[str]]:
    """Course -> direct prerequisites, read straight from the edge file, for independent checks."""
    needs: dict[str, set[str]] = defaultdict(set)
    with open(cs_files[1], newline="", encoding="utf-8") as file:
        for course, prerequisite in csv.reader(file):
            needs[course].add(prerequisite)
    return needs


def transitive_unmet(needs: dict[str, set[str]], goal: str, completed: set[str]) -> set[str]:
    """Everything ``goal`` needs, directly or not, without looking behind completed courses."""
    found: set[str] = set()
    frontier = [goal]
    while frontier:
        for prerequisite in needs.get(frontier.pop(), ()):
            if prerequisite not in completed and prerequisite not in found:
                found.add(prerequisite)
                frontier.append(prerequisite)
    return found


@pytest.fixture(scope="module")
def goals(raw_prerequisites: dict[str, set[str]]) -> list[str]:
    """The eight courses with the most prerequisites behind them, plus two well-known ones."""
    behind = {course: len(transitive_unmet(raw_prerequisites, course, set())) for course in raw_prerequisites}
    by_depth = sorted(behind, key=lambda course: (-behind[course], course))
    return by_depth[:8] + ["cmu_15-213", "mit_6.036"]


def test_the_catalogue_and_edges_load(graph: PrerequisiteGraph) -> None:
    assert len(graph.titles) == 654
    assert sum(len(p) for p in graph.prerequisites.values()) == 861
    assert graph.title("cmu_15-213") == "Introduction to Computer Systems"
    assert graph.title("not-a-course") == "not-a-course"


def test_every_course_has_a_learning_path(graph: PrerequisiteGraph) -> None:
    """No course depends on a cycle, so every path can be planned."""
    for course in graph.titles:
        assert graph.learning_path(course)[-1] == course


@pytest.mark.parametrize("completed_share", [0, 3])
def test_learning_paths_respect_every_edge_and_cover_every_unmet_prerequisite(
    graph: PrerequisiteGraph, raw_prerequisites: dict[str, set[str]], goals: list[str], completed_share: int
) -> None:
    for goal in goals:
        # Some learners start from scratch, others have done every third course of the way.
        completed = set(graph.learning_path(goal)[:-1][::completed_share]) if completed_share else set()
        path = graph.learning_path(goal, completed)
        print(f"\n{goal} ({graph.title(goal)}), {len(completed)} done: {' -> '.join(path)}")

        assert path[-1] == goal
        assert len(path) == len(set(path))
        assert set(path) == transitive_unmet(raw_prerequisites, goal, completed) | {goal}
        position = {course: i for i, course in enumerate(path)}
        for course in path:
            for prerequisite in raw_prerequisites.get(course, ()):
                assert prerequisite in completed or position[prerequisite] < position[course]
        assert graph.learning_path(goal, completed) == path  # deterministic


def test_completing_a_path_in_order_unlocks_exactly_the_courses_that_become_ready(
    graph: PrerequisiteGraph, raw_prerequisites: dict[str, set[str]], goals: list[str]
) -> None:
    all_courses = set(graph.titles)
    for goal in goals:
        completed: set[str] = set()
        for course in graph.learning_path(goal):
            assert graph.is_ready(course, completed)
            unlocked = graph.unlocked_by(course, completed)
            ready_before = {c for c in all_courses - completed if graph.is_ready(c, completed)}
            completed.add(course)
            ready_after = {c for c in all_courses - completed if graph.is_ready(c, completed)}

            assert unlocked == ready_after - ready_before
            for ready in ready_after:
                assert raw_prerequisites.get(ready, set()) <= completed
                assert not graph.unmet(ready, completed)


def test_a_cycle_is_reported_with_its_courses() -> None:
    graph = PrerequisiteGraph()
    graph.add("goal", "a")
    graph.add("a", "b")
    graph.add("b", "c")
    graph.add("c", "a")
    with pytest.raises(PrerequisiteCycle, match="a -> b -> c -> a") as error:
        graph.learning_path("goal")
    assert error.value.cycle == ["a", "b", "c", "a"]
    # Completing a course on the cycle breaks it for this learner.
    assert graph.learning_path("goal", completed={"c"}) == ["b", "a", "goal"]


def test_self_loops_are_ignored_and_duplicate_edges_counted_once() -> None:
    graph = PrerequisiteGraph()
    graph.add("a", "a")
    graph.add("b", "a")
    graph.add("b", "a")
    assert graph.unmet("a", completed=set()) == set()
    assert graph.learning_path("b") == ["a", "b"]


def test_an_edge_to_a_course_missing_from_the_catalogue_is_kept(tmp_path: Path) -> None:
    courses = tmp_path / "courses.csv"
    courses.write_text('x_1,"Intro. Basics."\n', encoding="utf-8")
    edges = tmp_path / "edges.csv"
    edges.write_text("x_2,x_1\nx_1, x_0 \n", encoding="utf-8")
    graph = PrerequisiteGraph.from_csv(courses, edges)
    assert graph.learning_path("x_2") == ["x_0", "x_1", "x_2"]
    assert [graph.title(c) for c in graph.learning_path("x_2")] == ["x_0", "Intro", "x_2"]


def test_unknown_and_completed_goals() -> None:
    graph = PrerequisiteGraph()
    graph.add("b", "a")
    assert graph.learning_path("unknown") == ["unknown"]
    assert graph.is_ready("unknown", completed=())
    assert graph.learning_path("b", completed={"b"}) == []
    assert graph.unlocked_by("a", completed={"b"}) == set()
