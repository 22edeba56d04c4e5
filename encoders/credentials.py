"""Secrets in settings: refused when they are placeholders, read from files, required off loopback.

Both services (the encoder, the worker's read API) serve on loopback without credentials for
local runs; bound to any other address they refuse to start without a token. A secret that is
empty, too short or an example value (``change-me``, ``<token>``, ``xxxx``) is refused when the
settings load, so a copied example never becomes a deployment's credential.

>>> check_secret("change-me")
Traceback (most recent call last):
...
ValueError: is a placeholder ('change-me'): give a real secret, or leave it unset
>>> check_secret("9f2c1e7b5a3d4c6e8f0a1b2c3d4e5f60", min_length=16)
'9f2c1e7b5a3d4c6e8f0a1b2c3d4e5f60'
>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
(True, True, False)
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated

from pydantic import AfterValidator, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SecretsSettingsSource

#: Bearer tokens this project checks must be at least this long (``openssl rand -hex 32`` gives 64).
MIN_TOKEN_LENGTH = 16
#: Values that examples and templates put where a secret goes.
PLACEHOLDERS = frozenset(
    {
        "admin", "changeit", "change-me", "change_me", "changeme", "default", "example", "none", "null",
        "pass", "password", "placeholder", "replace-me", "replace_me", "replaceme", "secret", "test", "todo",
        "token", "your-token", "your-password", "your-secret",
    }
)
_TEMPLATE = re.compile(r"<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|\.\.\.|(.)\1*", re.DOTALL)
#: Names that mean this machine only.
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
#: The folder of secret files, one per setting, named like its environment variable.
SECRETS_DIR_VARIABLE = "COURSESTREAM_SECRETS_DIR"


def check_secret(value: str, min_length: int = 1) -> str:
    """``value`` if it can be a real secret; ValueError if empty, a placeholder or too short."""
    if not value.strip():
        raise ValueError("is empty: give a real secret, or leave it unset")
    if value.strip().lower() in PLACEHOLDERS or _TEMPLATE.fullmatch(value.strip()):
        raise ValueError(f"is a placeholder ({value.strip()[:20]!r}): give a real secret, or leave it unset")
    if len(value) < min_length:
        raise ValueError(f"is shorter than {min_length} characters: e.g. `openssl rand -hex 32`")
    return value


def _secret(value: SecretStr) -> SecretStr:
    check_secret(value.get_secret_value())
    return value


def _token(value: SecretStr) -> SecretStr:
    check_secret(value.get_secret_value(), MIN_TOKEN_LENGTH)
    return value


#: A password or key someone else issues (Kafka, Qdrant): not a placeholder.
Secret = Annotated[SecretStr, AfterValidator(_secret)]
#: A bearer token this project checks: not a placeholder, and long enough not to be guessed.
Token = Annotated[SecretStr, AfterValidator(_token)]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_token_off_loopback(service: str, host: str, credential: object | None, variable: str) -> None:
    """Refuse (SystemExit) to serve ``service`` on a non-loopback ``host`` without a ``credential``."""
    if credential is None and not is_loopback(host):
        raise SystemExit(
            f"refusing to serve {service} on {host} without a token: set {variable} (or a file of that name in"
            f" ${SECRETS_DIR_VARIABLE}), or bind 127.0.0.1"
        )


class SecretFileSettings(BaseSettings):
    """Settings whose values come from arguments, then the environment, then ``.env``, then secret
    files: a file in ``$COURSESTREAM_SECRETS_DIR`` named like a setting's variable
    (``COURSESTREAM_ENCODER_TOKEN``) holds its value, as Docker and Kubernetes mount secrets."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        folder = os.environ.get(SECRETS_DIR_VARIABLE) or None
        return init_settings, env_settings, dotenv_settings, SecretsSettingsSource(settings_cls, secrets_dir=folder)
