"""The Faust app every worker of ours runs on, configured from :class:`~streams.settings.Settings`.

The recommender's worker (``streams.worker``) and the benchmark's Faust floor (``streams.tools.floor``)
share it, so the floor measures the very framework set-up the worker pays for. The embedded
broker's work-arounds are not applied here: ``coursestream worker`` applies them at start-up
when the settings name the embedded broker.
"""

from __future__ import annotations

import faust

from streams.faust_fixes import apply_faust_fixes
from streams.settings import Settings

def create_app(settings: Settings) -> faust.App:
    """A Faust app on the configured cluster, with our fixes to Faust."""
    apply_faust_fixes()
    return faust.App(
        settings.app_id,
        broker=settings.broker_urls(),
        broker_credentials=settings.broker_credentials(),
        store="rocksdb://" if settings.table_store == "rocksdb" else "memory://",
        datadir=settings.data_dir / "faust",
        tabledir=settings.data_dir / "tables",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_enabled,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.canonical_url(),
        producer_max_batch_size=settings.kafka_producer_batch_bytes,
    )


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic of undecoded bytes (keys and values): parsing is ours, so a bad record can be dead-lettered."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=partitions)
