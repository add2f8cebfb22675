"""HTTP Basic auth for the web side, from an htpasswd file (``--authfile``).

Entries may use bcrypt (``htpasswd -B``), Apache MD5 (``$apr1$``, htpasswd's default), SHA-256
and SHA-512 crypt, ``{SHA}``, or DES crypt, as the ``htpasswd`` tool writes them; ``libpass``
(imported as ``passlib``) checks them. The file is read again when it changes, so adding a user
needs no restart. Every path needs a login, ``/metrics`` and ``/healthz`` included; a failed
login gets 401 with a ``WWW-Authenticate`` challenge (JSON under ``/api/``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from net_gazer.errors import ConfigError

log = logging.getLogger(__name__)

REALM = "net-gazer"


class Htpasswd:
    def __init__(self, path: Path) -> None:
        from passlib.apache import HtpasswdFile

        self.path = path
        self._lock = threading.Lock()
        try:
            self.file = HtpasswdFile(str(path))
        except OSError as exc:
            raise ConfigError(f"cannot read the --authfile {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"--authfile {path} is not an htpasswd file: {exc}") from None
        if not self.file.users():
            raise ConfigError(f"--authfile {path} lists no user; add one with htpasswd -B")
        # A hash to check against when the user is unknown, so that both take as long.
        self._dummy = next(iter(self.file.users()))

    def check(self, user: str, password: str) -> bool:
        with self._lock:
            try:
                self.file.load_if_changed()
            except (OSError, ValueError) as exc:
                log.error("--authfile %s not reloaded, the previous users stay: %s", self.path, exc)
            known = user in self.file.users()
            try:
                ok = self.file.check_password(user if known else self._dummy, password)
            except ValueError:  # an entry in a scheme this host cannot check
                log.error(
                    "the --authfile entry of %r uses a hash scheme that cannot be checked", user
                )
                return False
        return bool(ok) and known


def install(app: Flask, path: Path) -> Htpasswd:
    """Require a login for every request to ``app``."""
    users = Htpasswd(path)

    @app.before_request
    def _login() -> Any:
        auth = request.authorization
        if (
            auth is not None
            and auth.type == "basic"
            and users.check(auth.username or "", auth.password or "")
        ):
            return None
        if request.path.startswith("/api/"):
            response = jsonify(error="log in with HTTP Basic auth", status=401)
        else:
            response = Response("Log in to see net-gazer.\n", mimetype="text/plain")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        return response

    return users
