"""Shared fixtures: the real data in ../shared/data and (in later fixtures) a real broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def require_shared_data() -> Path:
    """The real data folder: a user's clone has none, and its tests skip saying so; in CI
    (``CI=true``) they fail, since every quality claim rests on that data."""
    if not SHARED_DATA.is_dir():
        reason = f"real data not found at {SHARED_DATA} (only the project's CI and developers have it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must have it", pytrace=False)
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real learner logs and catalogues (see :func:`require_shared_data`)."""
    return require_shared_data()


@pytest.fixture(scope="session")
def broker():
    """A real Kafka-protocol broker process (Tansu) on 127.0.0.1, one per test session."""
    from streams.tools.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as embedded:
        yield embedded


@pytest.fixture(scope="session")
def encoders():
    """The real default models, loaded once for every test that serves or drives them in this process."""
    from encoders.embedder import Encoders
    from encoders.settings import EncoderSettings

    return Encoders.load(EncoderSettings())


@pytest.fixture(scope="session")
def encoder_service(encoders):
    """The encoder service with its real default models, in this process, over real HTTP."""
    from encoders.service import serve_in_background
    from encoders.settings import EncoderSettings

    with serve_in_background(EncoderSettings(), port=0, encoders=encoders) as service:
        service.wait_ready()
        yield service
