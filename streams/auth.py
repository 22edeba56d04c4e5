"""Who may read a learner's data from the worker's HTTP API.

Two kinds of bearer token are accepted on the learner endpoints (``/profiles``,
``/recommendations``, ``/paths``):

- the operator token (``COURSESTREAM_WEB_TOKEN``), compared in constant time: any learner, and
  what concerns every learner (the lists the worker published lately);
- a learner token: a JWT the platform signs (``COURSESTREAM_WEB_JWT_PUBLIC_KEY``), verified with
  PyJWT (signature, ``exp``, ``aud``, ``iss`` when set); its user claim (``sub``) must name the
  learner asked about.

No credentials: 401. A valid learner token for another learner, or for every learner: 403. A worker bound to any other
address than loopback refuses to start without a token or a key; on loopback with neither (local
runs, the demo) the API answers anyone who can reach it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import HTTPException

from encoders.credentials import require_token_off_loopback
from streams.settings import Settings

#: The signature algorithms each kind of public key can verify: a token cannot pick another.
KEY_ALGORITHMS = {
    rsa.RSAPublicKey: {"RS256", "RS384", "RS512", "PS256"},
    ec.EllipticCurvePublicKey: {"ES256", "ES384"},
    ed25519.Ed25519PublicKey: {"EdDSA"},
}
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
LEEWAY_S = 30


@dataclass(frozen=True)
class LearnerTokens:
    """How learner tokens are verified."""

    key: object
    algorithms: list[str]
    audience: str
    issuer: str | None
    user_claim: str

    @classmethod
    def load(cls, key_file: Path, algorithms: list[str], audience: str, issuer: str | None,
             user_claim: str) -> LearnerTokens:
        key = load_pem_public_key(key_file.read_bytes())
        usable = next((names for kind, names in KEY_ALGORITHMS.items() if isinstance(key, kind)), set())
        allowed = [name for name in algorithms if name in usable]
        if not allowed:
            raise SystemExit(f"{key_file}: a {type(key).__name__} verifies none of {algorithms}")
        return cls(key, allowed, audience, issuer, user_claim)

    def learner(self, token: str) -> str | None:
        """The learner a valid token names; None if it is not a valid learner token."""
        try:
            claims = jwt.decode(
                token, self.key, algorithms=self.algorithms, audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_S, options={"require": ["exp", "aud", self.user_claim]},
            )
        except jwt.PyJWTError:
            return None
        user = claims.get(self.user_claim)
        return user if isinstance(user, str) else None


class Authenticator:
    """Decides whether a request may read a learner's data (see the module's docstring)."""

    def __init__(self, token: str | None = None, learner_tokens: LearnerTokens | None = None) -> None:
        self._token = token.encode() if token is not None else None
        self.learner_tokens = learner_tokens
        self.open = token is None and learner_tokens is None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """The settings' credentials; refuses (SystemExit) to serve off loopback without any."""
        credential = settings.web_token or settings.web_jwt_public_key
        require_token_off_loopback("the worker's API", settings.web_host, credential, "COURSESTREAM_WEB_TOKEN")
        learner_tokens = None
        if settings.web_jwt_public_key is not None:
            learner_tokens = LearnerTokens.load(
                settings.web_jwt_public_key, list(settings.web_jwt_algorithms), settings.web_jwt_audience,
                settings.web_jwt_issuer, settings.web_jwt_user_claim,
            )
        token = settings.web_token.get_secret_value() if settings.web_token else None
        return cls(token, learner_tokens)

    def authorize(self, authorization: str | None, user_id: str | None) -> None:
        """Return if the ``Authorization`` header may read ``user_id``'s data (None: every learner's,
        which only the operator token may); HTTPException 401 or 403 if not."""
        if self.open:
            return
        scheme, _, credentials = (authorization or "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            raise _unauthorized("a bearer token is required")
        if self._token is not None and secrets.compare_digest(credentials.encode(), self._token):
            return
        learner = self.learner_tokens.learner(credentials) if self.learner_tokens is not None else None
        if learner is None:
            raise _unauthorized("the bearer token is not valid", error="invalid_token")
        if user_id is None:
            raise HTTPException(403, "only the operator token reads every learner's data")
        if learner != user_id:
            raise HTTPException(403, "the token is for another learner")


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})
