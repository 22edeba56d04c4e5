"""Kafka SASL/SSL settings reach every client the same way: Faust's (aiokafka), and the plain
aiokafka and kafka-python clients of the tools; the worker's producer batch reaches Faust's. No
broker: the clients are only built.

Secrets: placeholders and empty values are refused, files in ``COURSESTREAM_SECRETS_DIR`` are
read, and neither service starts beyond loopback without a token."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys

import certifi
import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaConsumer
from pydantic import ValidationError

from encoders.credentials import is_loopback
from encoders.settings import EncoderSettings
from streams.settings import Settings
from tests.conftest import PROJECT_ROOT

SASL_SSL = {
    "kafka_bootstrap_servers": "127.0.0.1:1",  # nothing listens
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "worker",
    "kafka_sasl_password": "s3cret",
    "kafka_ssl_cafile": certifi.where(),
}


def faust_client_options(settings: Settings) -> dict[str, object]:
    """What Faust hands aiokafka, given the app's ``broker_credentials``."""
    app = faust.App("security-test", broker=settings.broker_urls(), broker_credentials=settings.broker_credentials())
    return dict(credentials_to_aiokafka_auth(app.conf.broker_credentials))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"security_protocol": "PLAINTEXT"}),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": certifi.where()}, {"security_protocol": "SSL"}),
        ({k: v for k, v in SASL_SSL.items() if "ssl" not in k} | {"kafka_security_protocol": "SASL_PLAINTEXT"},
         {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "worker",
          "sasl_plain_password": "s3cret"}),
        (SASL_SSL, {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": "worker", "sasl_plain_password": "s3cret"}),
    ],
)
def test_faust_and_the_plain_clients_get_the_same_security_options(given: dict, expected: dict) -> None:
    settings = Settings(**given)
    for options in (faust_client_options(settings), settings.kafka_client_options()):
        assert {key: options.get(key) for key in expected} == expected
        assert isinstance(options.get("ssl_context"), ssl.SSLContext) == expected["security_protocol"].endswith("SSL")
    assert "s3cret" not in repr(settings)


def test_the_plain_clients_accept_the_options() -> None:
    options = Settings(**SASL_SSL).kafka_client_options()

    async def build() -> None:
        AIOKafkaProducer(bootstrap_servers=SASL_SSL["kafka_bootstrap_servers"], **options)

    asyncio.run(build())
    assert set(options) <= set(KafkaConsumer.DEFAULT_CONFIG)  # kafka-python (which connects when built)


# ---------------------------------------------------------------------------------------------
# Secrets: never placeholders, readable from files, required off loopback

TOKEN = "4f1d9c2ab7e6503d8c1b2a9e7f6d5c4b"


@pytest.mark.parametrize("value", ["", " ", "change-me", "CHANGEME", "<token>", "${ENCODER_TOKEN}", "xxxxxxxxxxxxxxxxxxxx",
                                   "...", "password", "short-but-real"])
def test_placeholder_empty_and_short_tokens_are_refused(value: str) -> None:
    for settings in (lambda: EncoderSettings(token=value), lambda: Settings(web_token=value)):
        with pytest.raises(ValidationError):
            settings()


@pytest.mark.parametrize("name", ["kafka_sasl_password", "qdrant_api_key"])
def test_placeholder_passwords_and_keys_are_refused(name: str) -> None:
    for value in ("change-me", "", "<password>"):
        with pytest.raises(ValidationError):
            Settings(**{name: value})
    assert Settings(**{name: "s3cret-Pa55"}).model_dump()[name] is not None


def test_secrets_are_read_from_files_in_the_secrets_dir(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("COURSESTREAM_")]:
        monkeypatch.delenv(name)
    (tmp_path / "COURSESTREAM_ENCODER_TOKEN").write_text(TOKEN + "\n")
    (tmp_path / "COURSESTREAM_WEB_TOKEN").write_text(TOKEN[::-1])
    (tmp_path / "COURSESTREAM_KAFKA_SASL_PASSWORD").write_text("kafka-Pa55word")
    monkeypatch.setenv("COURSESTREAM_SECRETS_DIR", str(tmp_path))
    settings = Settings(_env_file=None)
    assert settings.encoder.token.get_secret_value() == TOKEN
    assert settings.web_token.get_secret_value() == TOKEN[::-1]
    assert settings.kafka_sasl_password.get_secret_value() == "kafka-Pa55word"
    (tmp_path / "COURSESTREAM_ENCODER_TOKEN").write_text("change-me")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


@pytest.mark.parametrize(("command", "variable"), [("worker", "COURSESTREAM_WEB_HOST"),
                                                   ("encoder", "COURSESTREAM_ENCODER_HOST")])
def test_the_services_refuse_to_serve_beyond_loopback_without_a_token(command: str, variable: str) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("COURSESTREAM_")}
    env.update({variable: "0.0.0.0", "COURSESTREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    started = subprocess.run([sys.executable, "-m", "streams", command], env=env, capture_output=True, text=True,
                             timeout=120, cwd=PROJECT_ROOT)
    assert started.returncode != 0
    assert "refusing to serve" in started.stderr and "on 0.0.0.0 without a token" in started.stderr, started.stderr


def test_loopback_is_loopback_and_nothing_else_is() -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.0.0.5", "worker-0.svc", ""))


def test_the_worker_app_sends_batches_that_hold_many_lists() -> None:
    """A list is several KB: at Kafka's default batch (16,384 bytes) each partition's batch would
    hold two or three, and every further send would wait for the broker's answer."""
    from streams.faust_app import create_app

    app = create_app(Settings(kafka_producer_batch_bytes=300_000))
    assert app.producer._settings_default()["max_batch_size"] == 300_000
    assert create_app(Settings()).conf.producer_max_batch_size == 262_144
    with pytest.raises(ValidationError):
        Settings(kafka_producer_batch_bytes=1_000_000)  # Faust's request size: a batch must fit in one
