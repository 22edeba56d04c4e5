"""Kafka SASL/SSL settings reach every client the same way: Faust's (aiokafka), and the plain
aiokafka and kafka-python clients of the tools. No broker: the clients are only built."""

from __future__ import annotations

import asyncio
import ssl

import certifi
import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaConsumer

from streams.settings import Settings

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
