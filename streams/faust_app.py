"""The Faust app every worker of ours runs on, configured from :class:`~streams.settings.Settings`.

The recommender's worker (``streams.worker``) and the benchmark's Faust floor (``streams.floor``)
share it, so the floor measures the very framework set-up the worker pays for.
"""

from __future__ import annotations

import faust

from streams.faust_fixes import apply_faust_fixes
from streams.settings import Settings

def create_app(settings: Settings) -> faust.App:
    """A Faust app on the configured cluster, with our fixes (and Tansu's workarounds on the embedded broker)."""
    apply_faust_fixes()
    if settings.kafka_embedded:
        from streams.embedded_broker import apply_tansu_workarounds

        apply_tansu_workarounds(settings.kafka_embedded_fetch_wait_ms)
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
    )


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic of undecoded bytes (keys and values): parsing is ours, so a bad record can be dead-lettered."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=partitions)
