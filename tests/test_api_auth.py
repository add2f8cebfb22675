"""HTTPS and HTTP Basic auth on the real collector's web server. Certificates come from
scripts/make-certs.sh (openssl); htpasswd entries are made with openssl, bcrypt and hashlib,
not with the library the collector checks them with."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from conftest import ROOT, Collector, tool

USERS = {"bee": "b-secret", "apr": "a-secret", "sha": "s-secret", "old": "o-secret"}


def _openssl(*args: str) -> str:
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def htpasswd(path: Path) -> Path:
    lines = [
        "bee:" + bcrypt.hashpw(USERS["bee"].encode(), bcrypt.gensalt(rounds=5)).decode(),
        "apr:" + _openssl("passwd", "-apr1", USERS["apr"]),
        "sha:" + _openssl("passwd", "-6", USERS["sha"]),
        "old:{SHA}" + base64.b64encode(hashlib.sha1(USERS["old"].encode()).digest()).decode(),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    out = tmp_path / "certs"
    subprocess.run([str(ROOT / "scripts/make-certs.sh"), str(out)], check=True, capture_output=True)
    return out


def _get(
    url: str, ctx: ssl.SSLContext, user: str | None = None, pw: str = ""
) -> tuple[int, Any, Any]:
    req = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{pw}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_https_with_basic_auth(
    collector_factory: Any, falkordb_url: str, graph_name: str, certs: Path, tmp_path: Path
) -> None:
    auth = htpasswd(tmp_path / "htpasswd")
    c: Collector = collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--authfile", str(auth),
        "--http-tls-cert", str(certs / "collector.pem"), "--http-tls-key", str(certs / "collector.key"),
    ).start()  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.check_hostname = False  # the certificate names the collector, the test dials 127.0.0.1
    base = f"https://127.0.0.1:{c.http_port}"
    status, headers, body = _get(f"{base}/api/sensors", ctx)
    assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="net-gazer"')
    assert json.loads(body)["status"] == 401
    assert _get(f"{base}/metrics", ctx)[0] == 401
    assert _get(f"{base}/api/sensors", ctx, "bee", "wrong")[0] == 401
    assert _get(f"{base}/api/sensors", ctx, "nobody", "b-secret")[0] == 401
    for user, pw in USERS.items():
        status, _, body = _get(f"{base}/api/sensors", ctx, user, pw)
        assert status == 200, user
        assert json.loads(body)["sensors"] == []
    # A user added to the file logs in without a restart.
    with auth.open("a") as f:
        f.write("new:" + _openssl("passwd", "-apr1", "n-secret") + "\n")
    assert _get(f"{base}/api/graph", ctx, "new", "n-secret")[0] == 200
    # Plain HTTP to the HTTPS port gets no answer a client could take for the API's.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{c.http_port}/api/sensors", timeout=5).read()


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--authfile", "/nonexistent/htpasswd"], "does not exist"),
     (["--http-tls-cert", "/etc/hostname"], "give both --http-tls-cert and --http-tls-key"),
     (["--http-tls-cert", "/etc/hostname", "--http-tls-key", "/etc/hostname"], "cannot use --http-tls-cert")],
)  # fmt: skip
def test_bad_web_security_flags_are_one_sentence(
    falkordb_url: str, graph_name: str, args: list[str], needle: str
) -> None:
    result = subprocess.run(
        [tool("net-gazer-collector"), "--graph-url", falkordb_url, "--graph", graph_name,
         "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_empty_authfile_is_refused(falkordb_url: str, graph_name: str, tmp_path: Path) -> None:
    empty = tmp_path / "htpasswd"
    empty.write_text("")
    result = subprocess.run(
        [tool("net-gazer-collector"), "--graph-url", falkordb_url, "--graph", graph_name,
         "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--authfile", str(empty)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "lists no user" in result.stderr
