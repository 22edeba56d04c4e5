"""One learning and ranking core per partition of learners, its state in the ``learned`` table.

Each partition's shared models (popularity, transitions, factors, re-ranker, bandit, question
difficulty) learn from that partition's learners only, so their state recovers exactly with
the partition's changelog. In memory while the partition is assigned; dropped on revoke.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

import faust

from online.catalogue import MODALITIES
from online.recommender import Recommender
from streams import metrics
from streams.worker.app import app, learned, learner_events, settings

#: A row the ``learned`` table does not have.
_ABSENT = object()


class PartitionTable(MutableMapping[str, object]):
    """One model's state of one partition, in the ``learned`` table, held in memory.

    A row is read from the table once; writes stay in memory until :meth:`flush`, which sends
    each changed row once however often the models changed it (re-ranking one event learns up to
    ``k + 1`` examples into one row). Only the worker that owns the partition writes its rows, so
    memory stays true to the table until the partition is revoked; then it is dropped.
    """

    def __init__(self, partition: int, model: str) -> None:
        self.prefix = f"{partition}:{model}:"
        self._rows: dict[str, object] = {}
        self._changed: set[str] = set()

    def __getitem__(self, key: str) -> object:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: str, default: object = None) -> object:
        """The row, or ``default``; without raising and catching KeyError as ``Mapping.get`` does
        (most candidates have no row in most models)."""
        if key not in self._rows:
            self._rows[key] = learned.get(self.prefix + key, _ABSENT)
        value = self._rows[key]
        return default if value is _ABSENT else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _ABSENT) is not _ABSENT

    def __setitem__(self, key: str, value: object) -> None:
        self._rows[key] = value
        self._changed.add(key)

    def __delitem__(self, key: str) -> None:
        self.flush()
        del learned[self.prefix + key]
        self._rows[key] = _ABSENT

    def __iter__(self) -> Iterator[str]:
        self.flush()
        return (key.removeprefix(self.prefix) for key in learned if key.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> None:
        """Write the changed rows to the table (its changelog)."""
        for key in self._changed:
            learned[self.prefix + key] = self._rows[key]
        self._changed.clear()


#: partition -> its learning and ranking core, and the tables that hold its models' state
_recommenders: dict[int, tuple[Recommender, list[PartitionTable]]] = {}


def recommender(partition: int) -> Recommender:
    """The learning and ranking core of one partition of learners, its state in ``learned``."""
    if partition not in _recommenders:
        tables: list[PartitionTable] = []

        def table(model: str) -> PartitionTable:
            tables.append(PartitionTable(partition, model))
            return tables[-1]

        engine = Recommender.over(table, settings.explore_share, settings.reranker_learning_rate,
                                  settings.fusion_learning_rate)
        _recommenders[partition] = (engine, tables)
    return _recommenders[partition][0]


def fusion_weights() -> dict[str, object]:
    """The learned fusion of each partition this worker ranks for (``Recommender.fusion_weights``)
    and their mean; the prior's when it holds none."""
    by_partition = {str(partition): engine.fusion_weights() for partition, (engine, _) in sorted(_recommenders.items())}
    held = list(by_partition.values()) or [Recommender().fusion_weights()]
    mean = {part: {modality: sum(w[part][modality] for w in held) / len(held) for modality in held[0][part]}
            for part in held[0]}
    return {"mean": mean, "partitions": by_partition}


for _modality in ("text", *MODALITIES):
    metrics.fusion_weight.labels(_modality).set_function(
        lambda modality=_modality: fusion_weights()["mean"]["weights"][modality])


def save_learned(partition: int) -> None:
    """Send what a partition's models learned to the ``learned`` table."""
    for table in _recommenders[partition][1]:
        table.flush()


@app.on_partitions_revoked.connect
async def drop_revoked_models(sender: faust.App, revoked: set, **kwargs: object) -> None:
    """Drop the in-memory state of revoked partitions: another worker may change it meanwhile."""
    for tp in revoked:
        if tp.topic == learner_events.get_topic_name():
            _recommenders.pop(tp.partition, None)
