"""The filter language on plain rows: every key, IPv6, precedence, error positions. The expected
answers come from ``ipaddress`` and the rows' own values, written out by hand."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from net_gazer.collector.filterlang import FIELDS, FilterError, parse


def row(client: str = "10.1.2.3", server: str = "2001:db8:1::9", **edge: Any) -> dict[str, Any]:
    base = {"sensor": "gw1", "dport": 443, "proto": "tcp", "direction": "outgoing",
            "count": 1, "refused": 0, "unanswered": 0, "rtt_ms": 20.0, "retransmits": 0,
            "last_seen": 1000.0}  # fmt: skip
    return {
        "client": {"ip": client, "country_code": None},
        "server": {"ip": server, "name": "www.example.com", "country_code": "DE",
                   "asn": 13335, "city": "Frankfurt"},
        "edge": {**base, **edge},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("q", "hit"),
    [
        ("port:443", True), ("port:80", False), ("port:400-500", True),
        ("src:10.0.0.0/8", True), ("src:10.1.2.3", True), ("src:10.1.2.4", False),
        ("dst:2001:db8::/32", True), ("dst:2001:db8:2::/48", False), ("dst:[2001:db8:1::9]", True),
        ("dst:2001:0db8:0001:0000:0000:0000:0000:0009", True), ("2001:db8:1::9", True),
        ("src:2001:db8::/32", False), ("host:10.0.0.0/8", True), ("dst:10.0.0.0/8", False),
        ("dst:www.example.com", True), ("dst:*.example.com", True), ("dst:example.org", False),
        ("country:de", True), ("country:US", False), ("asn:13335", True), ("asn:AS13335", True),
        ("asn:1", False), ("sensor:gw1", True), ("sensor:GW*", True), ("sensor:gw2", False),
        ("rtt>10", True), ("rtt>20", False), ("rtt>=20", True), ("rtt!=20", False),
        ("retrans>0", False), ("retrans=0", True), ("state:established", True),
        ("state:refused", False), ("proto:tcp", True), ("proto:udp", False),
        ("dir:outgoing", True), ("dir:incoming", False), ("city:frank*", True),
        ("since:999", True), ("since:1001", False),
        ("port:80 or port:443", True), ("not port:443", False), ("!port:443", False),
        ("port:443 and not (rtt>5 or country:US)", False), ("port:80 or rtt>5 country:DE", True),
        ("(port:80 or rtt>5) country:US", False), ("not not port:443", True),
        ("www.example.com", True), ("10.1.2.0/24", True),
    ],
)  # fmt: skip
def test_terms(q: str, hit: bool) -> None:
    assert parse(q).matches(row()) is hit


def test_missing_values_do_not_match() -> None:
    r = row(rtt_ms=None)
    assert parse("rtt>0").matches(r) is False
    assert parse("not rtt>0").matches(r) is True


@pytest.mark.parametrize(
    ("q", "position"),
    [("port:", 5), ("port:99999", 5), ("rtt>abc", 4), ("rtt:", 4), ("country:DEU", 8),
     ("asn:x", 4), ("src:10.0.0.0/33", 4), ("dst:2001:db8:::1", 4), ("dst:1.2.3", 4),
     ("(", 0), (")", 0), ("port:1 (", 7), ("or port:1", 0), ("port:1 and", 7), ("not", 0),
     ("state:open", 6), ("dir:up", 4), ("since:yesterday", 6), ("nokey:1", 0),
     ("port>x", 5), ('"x', 0), ("[::1", 0), ("sensor>3", 6)],
)  # fmt: skip
def test_errors_point_at_the_problem(q: str, position: int) -> None:
    with pytest.raises(FilterError) as info:
        parse(q)
    assert info.value.position == position, str(info.value)


def test_every_key_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs/filter.md").read_text()
    for key in set(FIELDS):
        assert f"`{key}" in doc, key


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_cidr_agrees_with_ipaddress(addr: Any, bits: int) -> None:
    bits = min(bits, addr.max_prefixlen)
    net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
    probe = addr + 1 if int(addr) < (2**addr.max_prefixlen - 1) else addr - 1
    flt = parse(f"dst:{net}")
    assert flt.matches(row(server=str(probe))) is (probe in net)


@given(st.text(max_size=40))
def test_anything_parses_or_fails_with_a_position(text: str) -> None:
    try:
        parse(text)
    except FilterError as exc:
        assert 0 <= exc.position <= len(text)
