"""Transport security with real TLS: mutual TLS, per-sensor tokens, and the rule that a sensor
writes only as its own id. Certificates come from scripts/make-certs.sh (real openssl)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from conftest import PCAPS, ROOT, Collector, expected, graph_query, run_sensor
from test_e2e import assert_graph_matches
from test_ingest import batch, hello, row

from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.auth import Authenticator, load_tokens, token_digest
from net_gazer.collector.ingest import IngestService, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.v1 import wire_pb2_grpc

TOKEN_GW1 = "gw1-secret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    good = tmp_path_factory.mktemp("ca")
    rogue = tmp_path_factory.mktemp("rogue")
    subprocess.run(
        [str(ROOT / "scripts" / "make-certs.sh"), str(good), "gw1", "gw2"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(ROOT / "scripts" / "make-certs.sh"), str(rogue), "gw1"],
        check=True,
        capture_output=True,
    )
    return {"good": good, "rogue": rogue}


def client_creds(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


Server = tuple[int, IngestService]


@pytest.fixture
async def secure_server(
    falkordb_url: str, graph_name: str, certs: dict[str, Path]
) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[grpc.aio.Server] = []
    stores: list[GraphStore] = []

    async def start(*, mtls: bool, tokens: dict[str, str] | None = None) -> Server:
        good = certs["good"]
        store = GraphStore.connect(falkordb_url, graph_name)
        await store.ensure_schema()
        stores.append(store)
        service = IngestService(
            store, collector_plugins.load(graph_name), Authenticator(tokens=tokens or {}, mtls=mtls)
        )
        server = grpc.aio.server()
        add_to_server(service, server)
        creds = grpc.ssl_server_credentials(
            [((good / "collector.key").read_bytes(), (good / "collector.pem").read_bytes())],
            root_certificates=(good / "ca.pem").read_bytes() if mtls else None,
            require_client_auth=mtls and not tokens,
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        await server.start()
        servers.append(server)
        return port, service

    try:
        yield start
    finally:
        for s in servers:
            await s.stop(grace=None)
        for st in stores:
            await st.close()


async def secure_exchange(
    port: int,
    creds: grpc.ChannelCredentials,
    envelopes: list[Any],
    metadata: tuple[tuple[str, str], ...] = (),
) -> list[Any]:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        call = wire_pb2_grpc.IngestStub(channel).Stream(metadata=metadata)
        acks = []
        for env in envelopes:
            await call.write(env)
            acks.append(await call.read())
        await call.done_writing()
        return acks


def edge_count(url: str, graph: str) -> int:
    [[n]] = graph_query(url, graph, "MATCH ()-[e:CONNECTS]->() RETURN count(e)")
    return int(n)


async def test_mtls_sensor_with_its_certificate_writes(
    secure_server: Any, certs: dict[str, Path], falkordb_url: str, graph_name: str
) -> None:
    port, _service = await secure_server(mtls=True)
    g = certs["good"]
    acks = await secure_exchange(
        port,
        client_creds(g / "ca.pem", g / "sensor-gw1.pem", g / "sensor-gw1.key"),
        [hello("gw1"), batch(1, row(), sensor="gw1")],
    )
    assert [a.acked_seq for a in acks] == [0, 1]
    assert edge_count(falkordb_url, graph_name) == 1


async def test_wrong_certificate_is_refused_and_writes_nothing(
    secure_server: Any, certs: dict[str, Path], falkordb_url: str, graph_name: str
) -> None:
    port, service = await secure_server(mtls=True)
    g, r = certs["good"], certs["rogue"]
    # A certificate for "gw1" from another CA: the TLS handshake fails before any message.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await secure_exchange(
            port,
            client_creds(g / "ca.pem", r / "sensor-gw1.pem", r / "sensor-gw1.key"),
            [hello("gw1")],
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # No certificate at all.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await secure_exchange(port, client_creds(g / "ca.pem"), [hello("gw1")])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert edge_count(falkordb_url, graph_name) == 0
    assert service.stats.streams == 0  # never reached the service


async def test_certificate_of_one_sensor_cannot_write_as_another(
    secure_server: Any, certs: dict[str, Path], falkordb_url: str, graph_name: str
) -> None:
    port, service = await secure_server(mtls=True)
    g = certs["good"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await secure_exchange(
            port,
            client_creds(g / "ca.pem", g / "sensor-gw1.pem", g / "sensor-gw1.key"),
            [hello("gw2"), batch(1, row(), sensor="gw2")],
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert service.stats.denied == 1 and service.stats.rejected == 1
    assert edge_count(falkordb_url, graph_name) == 0
    assert graph_query(falkordb_url, graph_name, "MATCH (s:Sensor) RETURN count(s)") == [[0]]


async def test_tokens(
    secure_server: Any, certs: dict[str, Path], falkordb_url: str, graph_name: str
) -> None:
    port, service = await secure_server(mtls=False, tokens={token_digest(TOKEN_GW1): "gw1"})
    creds = client_creds(certs["good"] / "ca.pem")
    bearer = (("authorization", f"Bearer {TOKEN_GW1}"),)
    acks = await secure_exchange(port, creds, [hello("gw1"), batch(1, row(), sensor="gw1")], bearer)
    assert [a.acked_seq for a in acks] == [0, 1]
    # A wrong token, and no token: UNAUTHENTICATED.
    for metadata in ((("authorization", "Bearer not-the-token"),), ()):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await secure_exchange(
                port, creds, [hello("gw1"), batch(2, row(), sensor="gw1")], metadata
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # gw1's token claiming to be gw2: PERMISSION_DENIED.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await secure_exchange(port, creds, [hello("gw2"), batch(1, row(), sensor="gw2")], bearer)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (service.stats.unauthenticated, service.stats.denied) == (2, 1)
    [[count]] = graph_query(falkordb_url, graph_name, "MATCH ()-[e:CONNECTS]->() RETURN e.count")
    assert count == 1  # only the authenticated batch


def test_tokens_file_format(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(f"# sensors\ngw1 {token_digest('a')}\ngw2 sha256:{token_digest('b')}  # comment\n")
    assert load_tokens(f) == {token_digest("a"): "gw1", token_digest("b"): "gw2"}
    f.write_text("gw1 not-a-digest\n")
    with pytest.raises(Exception, match="line 1"):
        load_tokens(f)


def test_sensor_and_collector_over_mutual_tls(
    collector_factory: Any, certs: dict[str, Path], falkordb_url: str, graph_name: str
) -> None:
    g = certs["good"]
    c: Collector = collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name,
        "--tls-cert", str(g / "collector.pem"), "--tls-key", str(g / "collector.key"), "--tls-client-ca", str(g / "ca.pem"),
    ).start()  # fmt: skip
    ok = run_sensor(
        "-r", str(PCAPS / "handshakes.pcap"), "--collector", c.address, "--sensor-id", "gw1",
        "--tls-ca", str(g / "ca.pem"), "--tls-cert", str(g / "sensor-gw1.pem"), "--tls-key", str(g / "sensor-gw1.key"),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert_graph_matches(falkordb_url, graph_name, expected("handshakes.expected.json"))
    # The same sensor certificate claiming another id is refused; the replay fails after its ack timeout.
    bad = run_sensor(
        "-r", str(PCAPS / "handshakes.pcap"), "--collector", c.address, "--sensor-id", "gw2", "--ack-timeout", "2",
        "--tls-ca", str(g / "ca.pem"), "--tls-cert", str(g / "sensor-gw1.pem"), "--tls-key", str(g / "sensor-gw1.key"),
    )  # fmt: skip
    assert bad.returncode == 1
    assert "refused this sensor" in bad.stderr and "cannot write as sensor 'gw2'" in bad.stderr
    assert graph_query(
        falkordb_url, graph_name, "MATCH (s:Sensor {id: 'gw2'}) RETURN count(s)"
    ) == [[0]]


def test_open_listener_is_allowed_only_with_tls_and_auth(
    certs: dict[str, Path], tmp_path: Path
) -> None:
    from net_gazer.collector import config
    from net_gazer.collector.cli import parser
    from net_gazer.errors import ConfigError

    g = certs["good"]
    tls = ["--tls-cert", str(g / "collector.pem"), "--tls-key", str(g / "collector.key")]
    with pytest.raises(ConfigError, match="beyond loopback"):
        config.load(parser().parse_args(["--listen", "0.0.0.0:50051", *tls]))
    cfg = config.load(
        parser().parse_args(
            ["--listen", "0.0.0.0:50051", *tls, "--tls-client-ca", str(g / "ca.pem")]
        )
    )
    assert cfg.tls_client_ca is not None and not cfg.insecure
