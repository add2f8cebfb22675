"""Serving the web side: waitress for HTTP; cheroot with its built-in TLS adapter for HTTPS
(``--http-tls-cert``/``--http-tls-key``), since waitress speaks no TLS."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from net_gazer.errors import UserError


def check_tls(cert: Path, key: Path) -> None:
    """Load the HTTPS pair once, so that a bad one stops the collector before it does anything
    else (migrations, listeners), in one sentence."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise UserError(
            f"cannot use --http-tls-cert {cert} with --http-tls-key {key}: {exc}"
        ) from None


def start(
    app: Any, host: str, port: int, *, cert: Path | None = None, key: Path | None = None
) -> tuple[int, Callable[[], None]]:
    """Serve ``app`` in a thread; return (bound port, stop)."""
    if cert is None or key is None:
        from waitress.server import create_server

        try:
            web = create_server(app, host=host, port=port, threads=4, ident="net-gazer")
        except OSError as exc:
            raise UserError(f"cannot serve the viewer on {host}:{port}: {exc.strerror}") from None
        threading.Thread(target=web.run, name="waitress", daemon=True).start()
        return int(web.effective_port), web.close

    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    try:
        adapter = BuiltinSSLAdapter(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise UserError(
            f"cannot use --http-tls-cert {cert} with --http-tls-key {key}: {exc}"
        ) from None
    adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
    server = wsgi.Server((host, port), app, numthreads=4, server_name="net-gazer")
    server.ssl_adapter = adapter
    try:
        server.prepare()
    except OSError as exc:
        raise UserError(f"cannot serve the viewer on {host}:{port}: {exc.strerror}") from None
    threading.Thread(target=server.serve, name="cheroot", daemon=True).start()
    return int(server.bind_addr[1]), server.stop
