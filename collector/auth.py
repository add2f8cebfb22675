"""Who is on the other end of a sensor stream, and whether it may write as the sensor it claims.

Two ways to authenticate, usable together:

- mutual TLS: the sensor presents a certificate signed by ``--tls-client-ca``; its identity is the
  certificate's common name (``make certs`` issues them with CN = sensor id);
- per-sensor tokens: the sensor sends ``authorization: Bearer <token>``; ``--tokens FILE`` lists one
  ``SENSOR_ID SHA256_OF_TOKEN`` per line (``scripts/make-token.sh`` prints both), so the collector
  never stores a usable token.

A sensor writes only as its own id: a hello naming another id is refused with PERMISSION_DENIED,
a stream with no valid credential with UNAUTHENTICATED. Both are logged and counted, and write
nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from net_gazer.errors import ConfigError

log = logging.getLogger(__name__)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: Path) -> dict[str, str]:
    """``{sha256 hex: sensor id}`` from a tokens file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror}") from None
    tokens: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        digest = parts[1].lower().removeprefix("sha256:") if len(parts) == 2 else ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(
                f"{path} line {n}: expected 'SENSOR_ID SHA256_HEX' (see scripts/make-token.sh)"
            )
        tokens[digest] = parts[0]
    if not tokens:
        raise ConfigError(f"the tokens file {path} lists no sensor")
    return tokens


@dataclass
class Authenticator:
    tokens: dict[str, str] = field(default_factory=dict)
    mtls: bool = False

    @property
    def required(self) -> bool:
        return bool(self.tokens) or self.mtls

    def identify(self, context: Any) -> str | None:
        """The authenticated sensor id of a stream, or None."""
        if self.mtls:
            auth = context.auth_context() or {}
            names = auth.get("x509_common_name") or []
            if names:
                return bytes(names[0]).decode(errors="replace")
        if self.tokens:
            for key, value in context.invocation_metadata() or ():
                if (
                    key == "authorization"
                    and isinstance(value, str)
                    and value.startswith("Bearer ")
                ):
                    digest = token_digest(value.removeprefix("Bearer ").strip())
                    for known, sensor in self.tokens.items():
                        if hmac.compare_digest(known, digest):
                            return sensor
        return None
