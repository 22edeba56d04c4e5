"""Which courses a learner is ready for, what completing one unlocks, and how to reach a goal.

An edge ``add(course, prerequisite)`` says that ``course`` needs ``prerequisite`` first.
A completed course counts as having covered its own prerequisites (credit may come from
elsewhere), so nothing behind a completed course is asked for again.

>>> from online.prerequisites import PrerequisiteGraph
>>> graph = PrerequisiteGraph()
>>> graph.add("algorithms", "programming")
>>> graph.add("algorithms", "discrete maths")
>>> graph.add("machine learning", "algorithms")
>>> graph.add("machine learning", "probability")
>>> graph.add("probability", "discrete maths")
>>> graph.unmet("algorithms", completed={"programming"})
{'discrete maths'}
>>> graph.is_ready("algorithms", completed={"programming", "discrete maths"})
True
>>> sorted(graph.unlocked_by("discrete maths", completed={"programming"}))
['algorithms', 'probability']
>>> graph.learning_path("machine learning", completed={"programming"})
['discrete maths', 'algorithms', 'probability', 'machine learning']

A cycle makes a goal unreachable, and says where it is:

>>> graph.add("programming", "machine learning")
>>> graph.learning_path("machine learning")
Traceback (most recent call last):
...
online.prerequisites.PrerequisiteCycle: prerequisite cycle (each needs the next):
machine learning -> algorithms -> programming -> machine learning
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Container, Iterator
from pathlib import Path

__all__ = ["PrerequisiteCycle", "PrerequisiteGraph"]


class PrerequisiteCycle(ValueError):
    """Courses that, through their prerequisites, each need themselves first."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("prerequisite cycle (each needs the next): " + " -> ".join(cycle))


class PrerequisiteGraph:
    """Courses and their direct prerequisites, with readable titles where known."""

    def __init__(self) -> None:
        self.prerequisites: dict[str, set[str]] = {}
        self.dependents: dict[str, set[str]] = {}
        #: Course id -> title, for readable output; see :meth:`title`.
        self.titles: dict[str, str] = {}

    def add(self, course: str, prerequisite: str) -> None:
        """Record that ``course`` needs ``prerequisite`` first.

        Adding an edge twice changes nothing. A course listed as its own prerequisite is
        ignored: it could never be met, and it is a data-entry slip, not a requirement.
        Other cycles are kept, and reported by :meth:`learning_path` if a goal depends on one.
        """
        if course == prerequisite:
            return
        self.prerequisites.setdefault(course, set()).add(prerequisite)
        self.dependents.setdefault(prerequisite, set()).add(course)

    @classmethod
    def from_csv(cls, courses: Path, edges: Path) -> PrerequisiteGraph:
        """Load the CS course graph's files (Liang et al., AAAI 2017), neither with a header row.

        ``courses`` has rows ``id,"Title. Description"``; the title is the text before the
        first ". ". ``edges`` has rows ``course,prerequisite_course``. Ids are stripped of
        surrounding spaces. An edge may name a course missing from ``courses``: it is kept
        (its title is then its id), because the requirement is real even if the catalogue
        entry is not.
        """
        graph = cls()
        with open(courses, newline="", encoding="utf-8") as file:
            for course_id, text in csv.reader(file):
                graph.titles[course_id.strip()] = text.split(". ", 1)[0].strip()
        with open(edges, newline="", encoding="utf-8") as file:
            for course, prerequisite in csv.reader(file):
                graph.add(course.strip(), prerequisite.strip())
        return graph

    def title(self, course: str) -> str:
        """The course's title, or its id when the catalogue has none."""
        return self.titles.get(course, course)

    def unmet(self, course: str, completed: Container[str]) -> set[str]:
        """Direct prerequisites of ``course`` not in ``completed``; none for an unknown course."""
        return {p for p in self.prerequisites.get(course, ()) if p not in completed}

    def is_ready(self, course: str, completed: Container[str]) -> bool:
        """Whether every direct prerequisite of ``course`` is completed."""
        return not self.unmet(course, completed)

    def unlocked_by(self, course: str, completed: Collection[str]) -> set[str]:
        """Courses not yet completed that are ready once ``course`` is completed as well."""
        done = set(completed) | {course}
        return {d for d in self.dependents.get(course, ()) if d not in done and self.is_ready(d, done)}

    def learning_path(self, goal: str, completed: Container[str] = ()) -> list[str]:
        """Courses to take to reach ``goal``, each after all its prerequisites, ending with ``goal``.

        Every prerequisite still to take, direct or not, appears exactly once; completed
        courses (and what lies behind them) do not. The order is deterministic: depth first,
        prerequisites in sorted order, so a chain of prerequisites stays together. An already
        completed goal gives an empty path. Raises :class:`PrerequisiteCycle` if the goal
        depends on a cycle. ``completed`` need only answer ``in`` (a learner's Bloom filter does).
        """
        done = completed
        if goal in done:
            return []
        path: list[str] = []
        placed: set[str] = set()
        # Depth-first search with an explicit stack (long chains must not hit Python's
        # recursion limit); the courses on the stack are the ones being expanded.
        stack: list[tuple[str, Iterator[str]]] = [(goal, self._to_take(goal, done))]
        expanding = {goal}
        while stack:
            course, pending = stack[-1]
            for prerequisite in pending:
                if prerequisite in expanding:
                    chain = [c for c, _ in stack]
                    raise PrerequisiteCycle(chain[chain.index(prerequisite) :] + [prerequisite])
                if prerequisite not in placed:
                    stack.append((prerequisite, self._to_take(prerequisite, done)))
                    expanding.add(prerequisite)
                    break
            else:
                stack.pop()
                expanding.discard(course)
                placed.add(course)
                path.append(course)
        return path

    def _to_take(self, course: str, done: Container[str]) -> Iterator[str]:
        return iter(sorted(self.unmet(course, done)))
