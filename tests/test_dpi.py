"""Host names by DPI: the parsers from byte literals (OpenSSL's own ClientHellos, hand-made DNS
answers, hostile bytes), the reassembly of ClientHellos over several segments, and the lab
capture tests/pcaps/lab/names.pcap replayed through a real collector into FalkorDB, with the
names its scenario definition (tests/pcaps/lab/names.py) says, ``--no-dpi``, and the dpi plugin's
kernel filter alone.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, Collector, graph_query, run_sensor
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bpf_fragments import dpi_reads, read

from net_gazer.plugins.dpi import dns, http, tls
from net_gazer.plugins.dpi.assemble import MAX_SEGMENTS, Assembler
from net_gazer.plugins.dpi.names import hostname

_spec = importlib.util.spec_from_file_location("lab_names", PCAPS / "lab" / "names.py")
assert _spec is not None and _spec.loader is not None
lab = importlib.util.module_from_spec(_spec)
sys.modules["lab_names"] = lab
_spec.loader.exec_module(lab)

NAMES_PCAP = PCAPS / "lab" / "names.pcap"
KEY = (b"\xc0\x00\x02\x02", b"\xc6\x33\x64\x02", 40000, 443)


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"www.example.test", "www.example.test"),
        (b"WWW.Example.TEST.", "www.example.test"),
        (b"_sip._tcp.example.test", "_sip._tcp.example.test"),
        (b"xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("www.example.test", "www.example.test"),
        (b"", None),
        (b".", None),
        (b"a..b", None),
        (b"bad name.test", None),
        (b"bad\x00name.test", None),
        (b"bad\x01name.test", None),
        (b"'}) MATCH (n) DETACH DELETE n //", None),
        (b"x" * 64 + b".test", None),
        (b"a." * 127 + b"b", None),  # 255 characters
        ("bücher.example", None),  # not an A-label
        (b"\xc3\xa9.example", None),
        (b"198.51.100.2", None),
        (b"2001:db8::1", None),
        (b"1.2.3", None),  # an all-numeric last label
        (b"host.local", "host.local"),
    ],
)
def test_hostname(raw: bytes | str, want: str | None) -> None:
    assert hostname(raw) == want


# --- TLS ---------------------------------------------------------------------------------------


def test_openssl_client_hello_in_one_piece() -> None:
    hello = lab.openssl_hello("www.example.test")
    got = tls.client_hello(hello)
    assert (got.outcome, got.sni, got.ech) == (tls.DONE, b"www.example.test", False)


def test_every_prefix_of_a_client_hello_is_more_until_the_name_has_passed() -> None:
    hello = lab.openssl_hello("prefix.example.test")
    end_of_name = hello.index(b"prefix.example.test") + len("prefix.example.test")
    for cut in range(len(hello)):
        got = tls.client_hello(hello[:cut])
        if cut < end_of_name:
            assert got.outcome == tls.MORE and got.sni is None, cut
        else:
            assert got.outcome == tls.FOUND and got.sni == b"prefix.example.test", cut


def test_client_hello_over_two_records() -> None:
    """RFC 8446 section 5.1: a handshake message may be fragmented over records."""
    hello = lab.openssl_hello("records.example.test")
    hs = hello[5:]
    first, second = hs[:60], hs[60:]
    records = b"".join(b"\x16\x03\x01" + struct.pack("!H", len(p)) + p for p in (first, second))
    assert tls.client_hello(records).sni == b"records.example.test"
    assert tls.client_hello(records[: 5 + 60 + 3]).outcome == tls.MORE


def test_ech_is_flagged_and_reports_the_public_name() -> None:
    got = tls.client_hello(lab.crafted_hello(b"public.example.test", ech=True))
    assert (got.outcome, got.sni, got.ech) == (tls.DONE, b"public.example.test", True)


@pytest.mark.parametrize(
    "damage",
    [
        lambda h: b"\x17" + h[1:],  # application data, not a handshake
        lambda h: h[:5] + b"\x02" + h[6:],  # a ServerHello
        lambda h: h[:1] + b"\x09" + h[2:],  # record version 9.x
        lambda h: h[:43] + b"\x40" + h[44:],  # a session id longer than 32
        lambda h: h[:44] + b"\xff\xff" + h[46:],  # cipher suites past the end
    ],
)
def test_damaged_client_hellos_are_invalid_or_incomplete_never_a_name(damage: Any) -> None:
    hello = lab.crafted_hello(b"damaged.example.test", ech=False)
    got = tls.client_hello(damage(hello))
    assert got.outcome in (tls.INVALID, tls.MORE)


def test_server_name_without_a_host_name_is_no_name() -> None:
    ext = struct.pack("!HBH", 4, 7, 1) + b"x"  # a name type that is not host_name
    hello = lab.crafted_hello(b"x", ech=False)
    at = hello.index(b"\x00\x00\x00\x06\x00\x04\x00\x00\x01x")
    fixed = hello[:at] + struct.pack("!HH", 0, len(ext)) + ext + hello[at + 10 :]
    got = tls.client_hello(fixed)
    assert got.outcome == tls.DONE and not got.sni


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600), cut=st.integers(0, 600))
def test_tls_parser_never_raises(data: bytes, cut: int) -> None:
    hello = lab.crafted_hello(b"fuzz.example.test", ech=True)
    for candidate in (data, b"\x16\x03\x01" + data, hello[:cut] + data):
        got = tls.client_hello(candidate)
        assert got.outcome in (tls.DONE, tls.FOUND, tls.MORE, tls.INVALID)


# --- reassembly --------------------------------------------------------------------------------


def test_two_segments_are_put_back_together_across_a_sequence_wrap() -> None:
    hello = lab.openssl_hello("wrap.example.test")
    cut = hello.index(b"wrap.example.test") - 20
    seq = 2**32 - 30  # the second segment starts after 0
    asm = Assembler()
    assert asm.start(KEY, 1.0, seq, hello[:cut], cut).outcome == tls.MORE
    assert asm.more(KEY, 1.0, (seq - 10) % 2**32, hello[:10], 10) is None  # a retransmission
    got = asm.more(KEY, 1.1, (seq + cut) % 2**32, hello[cut:], len(hello) - cut)
    assert got is not None and got.sni == b"wrap.example.test"
    assert not asm.pending and asm.stats.reassembled == 1


def test_a_gap_or_a_snaplen_cut_ends_the_wait() -> None:
    hello = lab.openssl_hello("gap.example.test")
    asm = Assembler()
    asm.start(KEY, 1.0, 100, hello[:50], 50)
    got = asm.more(KEY, 1.1, 200, hello[150:], len(hello) - 150)  # bytes 50..150 never came
    assert got is not None and got.outcome == tls.MORE and asm.stats.incomplete == 1
    # Cut by the snaplen: the first segment had more bytes than were captured.
    assert asm.start(KEY, 2.0, 100, hello[:50], 1448).outcome == tls.MORE
    assert not asm.pending and asm.stats.incomplete == 2


def test_waiting_is_bounded_in_count_segments_and_time() -> None:
    asm = Assembler(max_pending=8, timeout=5.0)
    real = lab.openssl_hello("bounded.example.test")
    # The same ClientHello claiming to be 16,000 bytes long: every start waits for more.
    head = b"\x16\x03\x01" + struct.pack("!H", 16_000) + b"\x01" + (15_996).to_bytes(3, "big")
    start = head + real[9:60]
    for i in range(20):
        key = (*KEY[:2], 40000 + i, 443)
        assert asm.start(key, float(i), 1000, start, len(start)).outcome == tls.MORE
    assert len(asm.pending) == 8 and asm.stats.evicted == 12
    key = next(iter(asm.pending))
    seq = asm.pending[key].next_seq
    for _ in range(MAX_SEGMENTS):
        got = asm.more(key, 12.0, seq, bytes(10), 10)
        seq += 10
        if got is not None:
            break
    assert got is not None and key not in asm.pending
    asm.expire(1000.0)
    assert not asm.pending


# --- HTTP --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        (b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n", b"www.example.test"),
        (
            b"POST /x HTTP/1.0\r\nUser-Agent: a\r\nhost:  api.example.test:8080 \r\n\r\n",
            b"api.example.test",
        ),
        (b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nX-Host: no.example.test\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost : spaced.example.test\r\n\r\n", None),  # RFC 9112 5.1
        (b"GET / HTTP/2.0\r\nHost: h2.example.test\r\n\r\n", None),
        (b"GET / HTTP/1.1", None),  # no line end yet
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None),
        (b"GETX / HTTP/1.1\r\nHost: x.test\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: cut.example.test", b"cut.example.test"),  # cut by the segment
    ],
)
def test_http_host(payload: bytes, want: bytes | None) -> None:
    assert http.host(payload) == want


# --- DNS ---------------------------------------------------------------------------------------


def test_dns_answer_names_the_question_through_its_cname_chain() -> None:
    answer = dns.answer(lab.dns_response(lab.dns_query(b"shop.example.test")))
    assert answer is not None and answer.name == b"shop.example.test"
    # The A records of the chain's end; the record of another name is not taken.
    assert answer.addresses == [bytes([203, 0, 113, 11]), bytes([203, 0, 113, 12])]


def test_dns_aaaa_nxdomain_and_queries() -> None:
    v6 = dns.answer(lab.dns_response(lab.dns_query(b"v6.example.test", 28)))
    assert v6 is not None and v6.addresses == [bytes.fromhex("20010db8000200000000000000000010")]
    assert dns.answer(lab.dns_response(lab.dns_query(b"missing.example.test"))) is None
    assert dns.answer(lab.dns_query(b"www.example.test")) is None  # a query, not a response


def test_dns_compression_loops_and_forward_pointers_are_malformed() -> None:
    assert dns.answer(lab.dns_response(lab.dns_query(b"loop.example.test"))) is None
    good = lab.dns_response(lab.dns_query(b"www.example.test"))
    forward = good[:12] + b"\xc0\x20" + good[12:]  # a question name pointing ahead
    assert dns.answer(forward) is None


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=512), cut=st.integers(0, 200))
def test_dns_parser_never_raises(data: bytes, cut: int) -> None:
    good = lab.dns_response(lab.dns_query(b"shop.example.test"))
    for candidate in (data, good[:cut], good[:cut] + data, b"\x12\x34\x81\x80" + data):
        got = dns.answer(candidate)
        assert got is None or all(len(a) in (4, 16) for a in got.addresses)


# --- the lab capture ---------------------------------------------------------------------------


def host_names(url: str, graph: str) -> dict[str, tuple[Any, ...]]:
    rows = graph_query(
        url, graph, "MATCH (h:Host) RETURN h.ip, h.scope, h.name, h.names, h.name_source"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def replay(collector: Collector, sid: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = run_sensor(
        "-r", str(NAMES_PCAP), "--collector", collector.address, "--sensor-id", sid, "-v", *args,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stderr


def counters(url: str, graph: str, sid: str) -> dict[str, int]:
    [[items]] = graph_query(url, graph, "MATCH (s:Sensor {id: $id}) RETURN s.counters", {"id": sid})
    return {k: int(v) for k, v in (c.split("=", 1) for c in items)}


def test_names_of_the_lab_capture(collector: Collector, falkordb_url: str, graph_name: str) -> None:
    """SNI in one, two and three segments (OpenSSL's), ECH's public name, HTTP Host (with a port,
    never an address literal), DNS answers over UDP and TCP, private addresses scoped to the
    site; hostile names and unrelated records never stored."""
    replay(collector, "names")
    got = host_names(falkordb_url, graph_name)
    named = {ip: row for ip, row in got.items() if row[1] is not None}
    assert set(named) == set(lab.EXPECTED)
    for ip, want in lab.EXPECTED.items():
        scope, name, names, source = named[ip]
        assert names == want, ip
        assert name == want[-1], ip
        assert source == ("dns" if ip not in ("198.51.100.2", "2001:db8:2::2") else "http"), ip
        assert scope == "names", ip  # documentation and private ranges: the sensor's site
    stored = " ".join(" ".join(r[2] or []) for r in got.values())
    for bad in lab.REJECTED:
        assert bad not in stored
    c = counters(falkordb_url, graph_name, "names")
    assert c["plugin_dpi_names_rejected"] > 0 and c["plugin_dpi_ech_hellos"] == 2
    assert c["plugin_dpi_hellos_reassembled"] == 4  # split and three, on both addresses
    assert c["plugin_dpi_errors"] == 0


def test_no_dpi_stores_no_name(collector: Collector, falkordb_url: str, graph_name: str) -> None:
    log = replay(collector, "no-dpi", "--no-dpi")
    assert "udp src port 53" not in log  # the dpi fragment is not in the kernel filter
    got = host_names(falkordb_url, graph_name)
    assert got and all(row[1] is None and row[2] is None for row in got.values())
    [[plugins]] = graph_query(
        falkordb_url, graph_name, "MATCH (s:Sensor {id: 'no-dpi'}) RETURN s.plugins"
    )
    assert "dpi" not in plugins and "quality" in plugins
    assert not any(
        k.startswith("plugin_dpi_") for k in counters(falkordb_url, graph_name, "no-dpi")
    )


def test_the_dpi_filter_alone_passes_only_what_it_reads(
    collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    """With the dpi plugin alone, only ClientHello starts, requests and DNS reach the sensor;
    the continuations of split ClientHellos do not (the documented limit), so those names are
    found only when another plugin's filter passes the rest of the flow."""
    replay(collector, "dpi-alone", env={"NG_PLUGINS_ALLOW": "dpi"})
    linktype, frames = read(NAMES_PCAP)
    c = counters(falkordb_url, graph_name, "dpi-alone")
    assert c["sensor_packets"] == sum(dpi_reads(linktype, f) for f in frames) < len(frames)
    got = host_names(falkordb_url, graph_name)
    for ip, want in lab.EXPECTED.items():
        missing = {"split.example.test", "three.example.test"}
        assert got[ip][2] == [n for n in want if n not in missing], ip
    assert c["plugin_dpi_hellos_incomplete"] == 4 and c["plugin_dpi_hellos_reassembled"] == 0


# --- the ng_datagram hook ------------------------------------------------------------------------


def test_ng_datagram() -> None:
    """A plugin that implements ng_datagram gets every UDP datagram the filter passes, decoded
    (here against dpkt's reading of the same frames), and nothing else."""
    import dpkt

    from net_gazer.sensor import UdpDatagram, hookimpl
    from net_gazer.sensor.build import build
    from net_gazer.sensor.config import SensorConfig

    class Probe:
        def __init__(self) -> None:
            self.datagrams: list[UdpDatagram] = []

        @hookimpl
        def ng_bpf_filter(self, ctx: object) -> str:
            return "udp"

        @hookimpl
        def ng_datagram(self, ctx: object, datagram: UdpDatagram) -> None:
            self.datagrams.append(datagram)

    probe = Probe()
    sensor = build(
        SensorConfig(read=NAMES_PCAP, sensor_id="t", plugins_allow=["none"]),
        extra_plugins=[("probe", probe)],
    )
    try:
        handle = sensor.handles[0]
        sensor.process(handle, handle.read(10_000))
    finally:
        sensor.handles[0].close()
    _, frames = read(NAMES_PCAP)
    want = []
    for buf in frames:
        ip = dpkt.ethernet.Ethernet(buf).data
        if isinstance(ip.data, dpkt.udp.UDP):
            u = ip.data
            want.append((bytes(ip.src), bytes(ip.dst), u.sport, u.dport, bytes(u.data)))
    got = [(d.src, d.dst, d.sport, d.dport, d.payload) for d in probe.datagrams]
    assert got == want and len(want) >= 20  # the DNS queries and answers, both families
    assert all(d.length == len(d.payload) and d.family in (4, 6) for d in probe.datagrams)
    assert sensor.counters.udp == len(want) and sensor.counters.udp_malformed == 0


def test_no_dpi_flag_and_config_key_block_the_plugin(tmp_path: Path) -> None:
    from net_gazer.sensor import config as sensor_config
    from net_gazer.sensor.cli import parser

    base = ["-r", "x.pcap", "--sensor-id", "t", "-c"]
    on = tmp_path / "on.toml"
    on.write_text("")
    off = tmp_path / "off.toml"
    off.write_text("dpi = false\n")
    assert "dpi" not in sensor_config.load(parser().parse_args([*base, str(on)])).plugins_block
    for args in ([*base, str(on), "--no-dpi"], [*base, str(off)]):
        cfg = sensor_config.load(parser().parse_args(args))
        assert cfg.dpi is False and "dpi" in cfg.plugins_block
    bad = tmp_path / "bad.toml"
    bad.write_text('dpi = "no"\n')
    with pytest.raises(Exception, match="dpi must be a bool"):
        sensor_config.load(parser().parse_args([*base, str(bad)]))
