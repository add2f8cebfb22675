"""GeoIP/ASN enrichment: small City and ASN databases built here with mmdb-writer, the shipped
GeoLite2 City database for a well-known public address (a lookup only, no traffic), overrides
from --locations, the private-range rule, hot reload by replacing the file, and a real collector
process that enriches what its sensors report. Expected values are the ones written into the
test databases, or a direct geoip2 lookup."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import geoip2.database
import grpc.aio
import pytest
from api_fixture import Conn
from conftest import Collector, graph_query
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from net_gazer.collector.geoip import GeoEnricher, default_city_database, load_locations
from net_gazer.errors import ConfigError
from net_gazer.v1 import wire_pb2, wire_pb2_grpc


def city_db(path: Path, entries: dict[str, tuple[str, str, str, float, float]]) -> Path:
    """A GeoIP2-City-shaped database: CIDR -> (iso code, country, city, lat, lon)."""
    w = MMDBWriter(ip_version=6, database_type="Test-GeoIP2-City", ipv4_compatible=True)
    for cidr, (iso, country, city, lat, lon) in entries.items():
        w.insert_network(
            IPSet([cidr]),
            {"country": {"iso_code": iso, "names": {"en": country}},
             "city": {"names": {"en": city}},
             "location": {"latitude": lat, "longitude": lon}},
        )  # fmt: skip
    tmp = path.with_suffix(".tmp")
    w.to_db_file(str(tmp))
    os.replace(tmp, path)  # as an updater replaces it: atomically
    return path


def asn_db(path: Path, entries: dict[str, tuple[int, str]]) -> Path:
    w = MMDBWriter(ip_version=6, database_type="Test-GeoLite2-ASN", ipv4_compatible=True)
    for cidr, (asn, org) in entries.items():
        w.insert_network(
            IPSet([cidr]),
            {"autonomous_system_number": asn, "autonomous_system_organization": org},
        )
    w.to_db_file(str(path))
    return path


CITY = {
    "1.1.1.0/24": ("AU", "Australia", "Sydney", -33.86, 151.2),
    "2a00:1450::/32": ("IE", "Ireland", "Dublin", 53.33, -6.25),
}
ASN = {"1.1.1.0/24": (13335, "Cloudflare"), "2a00:1450::/32": (15169, "Google")}


@pytest.fixture
def dbs(tmp_path: Path) -> tuple[Path, Path, Path]:
    loc = tmp_path / "locations.toml"
    loc.write_text(
        '[[location]]\nprefix = "10.77.0.0/16"\nsite = "lab-edge"\ncity = "Frankfurt"\n'
        'country_code = "DE"\nlat = 50.11\nlon = 8.68\n'
        '[[location]]\nprefix = "1.1.1.128/25"\nsite = "anycast-override"\ncountry_code = "NL"\n'
    )
    return city_db(tmp_path / "city.mmdb", CITY), asn_db(tmp_path / "asn.mmdb", ASN), loc


def test_lookup_city_asn_locations_private(dbs: tuple[Path, Path, Path]) -> None:
    city, asn, loc = dbs
    geo = GeoEnricher.from_paths(city, asn, loc, default_city=True)
    one = geo.lookup("1.1.1.1")
    assert (one["country_code"], one["country"], one["city"]) == ("AU", "Australia", "Sydney")
    assert (one["lat"], one["lon"]) == (-33.86, 151.2)
    assert (one["asn"], one["as_org"], one["geo_source"]) == (13335, "Cloudflare", "geoip")
    v6 = geo.lookup("2a00:1450:4001::5")
    assert (v6["country_code"], v6["asn"]) == ("IE", 15169)
    # The longest prefix of --locations wins over GeoIP, and over the private rule.
    over = geo.lookup("1.1.1.200")
    assert (over["site"], over["country_code"], over["geo_source"]) == (
        "anycast-override", "NL", "locations",
    )  # fmt: skip
    assert over["asn"] is None
    lab = geo.lookup("10.77.3.4")
    assert (lab["site"], lab["city"], lab["lat"], lab["geo_source"]) == (
        "lab-edge", "Frankfurt", 50.11, "locations",
    )  # fmt: skip
    for private in ("10.1.2.3", "192.168.1.1", "127.0.0.1", "169.254.1.1", "100.64.0.1",
                    "fd00::1", "fe80::1", "192.0.2.1", "2001:db8::1"):  # fmt: skip
        p = geo.lookup(private)
        assert p["geo_source"] == "private" and p["country_code"] is None, private
    assert geo.lookup("8.8.8.8")["geo_source"] == "none"  # in neither test database


def test_no_asn_database_leaves_asn_empty(dbs: tuple[Path, Path, Path]) -> None:
    geo = GeoEnricher.from_paths(dbs[0], None, None, default_city=True)
    assert geo.lookup("1.1.1.1")["asn"] is None and geo.describe()["asn"] is None


def test_shipped_geolite2_city_matches_a_direct_lookup() -> None:
    path = default_city_database()
    assert path is not None
    geo = GeoEnricher.from_paths(None, None, None, default_city=True)
    info = geo.describe()["city"]
    assert info["default"] is True and "MaxMind" in info["attribution"]
    assert info["build_date"].startswith("2018-")
    reader = geoip2.database.Reader(str(path))
    try:
        want = reader.city("8.8.8.8")
    finally:
        reader.close()
    got = geo.lookup("8.8.8.8")
    assert got["country_code"] == want.country.iso_code == "US"
    assert (got["lat"], got["lon"]) == (want.location.latitude, want.location.longitude)


def test_hot_reload_by_replacing_the_file(dbs: tuple[Path, Path, Path]) -> None:
    city, asn, loc = dbs
    geo = GeoEnricher.from_paths(city, asn, loc, default_city=True)
    before = geo.revision
    assert geo.reload_if_changed() is False
    city_db(city, {"1.1.1.0/24": ("JP", "Japan", "Tokyo", 35.68, 139.69)})
    assert geo.reload_if_changed() is True and geo.revision != before
    assert geo.lookup("1.1.1.1")["city"] == "Tokyo"
    # A broken replacement keeps the working database in service.
    broken = city.with_suffix(".broken")
    broken.write_bytes(b"not a database")
    os.replace(broken, city)
    assert geo.reload_if_changed() is False
    assert geo.lookup("1.1.1.1")["city"] == "Tokyo"


@pytest.mark.parametrize(
    ("text", "needle"),
    [('[[location]]\nprefix = "10.0.0.0/33"\n', "not a CIDR"),
     ('[[location]]\nprefix = "10.0.0.0/8"\nlat = 91\n', "lat must be between"),
     ('[[location]]\nprefix = "10.0.0.0/8"\ncolour = "red"\n', "unknown key"),
     ('[[location]]\nprefix = "10.0.0.0/8"\ncountry_code = "DEU"\n', "two letters"),
     ("[[location]\n", "not valid TOML")],
)  # fmt: skip
def test_bad_locations_are_one_sentence(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "l.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_locations(p)


def test_bad_database_is_one_sentence(tmp_path: Path, dbs: tuple[Path, Path, Path]) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(ConfigError, match="not a MaxMind database"):
        GeoEnricher.from_paths(bad, None, None, default_city=True)
    with pytest.raises(ConfigError, match="needs an ASN database"):
        GeoEnricher.from_paths(None, dbs[0], None, default_city=False)


def _wait(what: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_collector_enriches_and_reenriches_on_change(
    collector_factory: Any, falkordb_url: str, graph_name: str, dbs: tuple[Path, Path, Path]
) -> None:
    city, asn, loc = dbs
    conf = city.parent / "collector.toml"
    conf.write_text("geoip_reload_s = 0.3\n")
    c: Collector = collector_factory(
        "-c", str(conf), "--graph-url", falkordb_url, "--graph", graph_name, "--geoip-city", str(city),
        "--geoip-asn", str(asn), "--locations", str(loc),
    ).start()  # fmt: skip
    # A host written before the collector knew it (another writer): the sweep enriches it.
    graph_query(falkordb_url, graph_name, "CREATE (:Host {scope: 'global', ip: '1.1.1.9'})")

    # Through a real sensor stream into the real collector's gRPC port.
    async def send() -> None:
        async with grpc.aio.insecure_channel(c.address) as ch:
            call = wire_pb2_grpc.IngestStub(ch).Stream()
            env = wire_pb2.Envelope(sensor_id="gw", epoch="e", seq=0)
            env.hello.CopyFrom(wire_pb2.Hello(hostname="gw", protocol_minor=1))
            await call.write(env)
            await call.read()
            env = wire_pb2.Envelope(sensor_id="gw", epoch="e", seq=1)
            env.batch.handshakes.extend(
                [Conn("10.77.0.5", "1.1.1.1").row(), Conn("10.1.0.5", "2a00:1450::1").row()]
            )
            await call.write(env)
            await call.read()
            await call.done_writing()

    asyncio.run(send())

    def host(ip: str) -> dict[str, Any]:
        rows = graph_query(falkordb_url, graph_name,
                           "MATCH (h:Host {ip: $ip}) RETURN properties(h)", {"ip": ip})  # fmt: skip
        return rows[0][0] if rows else {}

    assert host("1.1.1.1")["city"] == "Sydney" and host("1.1.1.1")["asn"] == 13335
    assert host("2a00:1450::1")["country_code"] == "IE"
    assert host("10.77.0.5")["site"] == "lab-edge"
    assert host("10.1.0.5")["geo_source"] == "private"
    assert _wait(lambda: host("1.1.1.9").get("city") == "Sydney")
    api = f"http://127.0.0.1:{c.http_port}"
    with urllib.request.urlopen(f"{api}/api/geoip") as r:
        info = json.load(r)
    assert info["city"]["type"] == "Test-GeoIP2-City" and info["asn"]["path"] == str(asn)
    # Replace the city database: every host is enriched again, without a restart.
    city_db(city, {"1.1.1.0/24": ("JP", "Japan", "Tokyo", 35.68, 139.69)})
    os.utime(city, (time.time() + 5, time.time() + 5))
    assert _wait(
        lambda: host("1.1.1.1").get("city") == "Tokyo" and host("1.1.1.9").get("city") == "Tokyo"
    )
    with urllib.request.urlopen(f"{api}/api/hosts/1.1.1.1") as r:
        assert json.load(r)["host"]["country_code"] == "JP"
