"""The ``dpi`` plugin, sensor half: host names from TLS SNI, HTTP Host headers and DNS answers.

It reads only what its kernel filter fragment lets through (:mod:`.bpf`): segments that start a
ClientHello or an HTTP request, and DNS from port 53. A ClientHello spread over several segments
is put back together (:mod:`.assemble`) when its continuations reach the sensor. Each name is
checked (:mod:`.names`) and sent once per flush interval per (address, name) as a ``NameReport``;
the collector half sets ``Host.name`` and ``Host.names``. ``--no-dpi`` keeps this plugin from
loading at all.
"""

from __future__ import annotations

import ipaddress
import math

from net_gazer.sensor import PluginContext, TcpSegment, UdpDatagram, hookimpl
from net_gazer.v1 import quality_pb2

from . import dns, http, tls
from .assemble import Assembler
from .bpf import bpf_fragment
from .names import hostname

DNS_PORT = 53  # RFC 1035 section 4.2
TLS_HANDSHAKE = tls.CONTENT_HANDSHAKE
#: Distinct (address, name) pairs gathered before an early send within an interval.
MAX_NAMES = 10_000
SNI = quality_pb2.NAME_SOURCE_TLS_SNI
HTTP_HOST = quality_pb2.NAME_SOURCE_HTTP_HOST
DNS = quality_pb2.NAME_SOURCE_DNS

Names = dict[tuple[str, str], tuple[int, float]]


def _state(ctx: PluginContext) -> tuple[Assembler, Names]:
    asm: Assembler | None = ctx.state.get("assembler")
    if asm is None:
        asm = ctx.state["assembler"] = Assembler()
        ctx.state["names"] = {}
    names: Names = ctx.state["names"]
    return asm, names


@hookimpl
def ng_bpf_filter(ctx: PluginContext) -> str | None:
    return bpf_fragment()


def _name(ctx: PluginContext, addr: bytes, raw: bytes, source: int, ts: float) -> None:
    name = hostname(raw)
    if name is None:
        ctx.count("names_rejected")
        return
    names: Names = ctx.state["names"]
    key = (str(ipaddress.ip_address(addr)), name)
    seen = names.get(key)
    if seen is None or ts > seen[1]:
        names[key] = (source, ts)
    if len(names) >= MAX_NAMES:
        _send(ctx)


def _hello(ctx: PluginContext, seg: TcpSegment, hello: tls.Hello) -> None:
    if hello.ech:
        ctx.count("ech_hellos")
    if hello.outcome == tls.INVALID:
        ctx.count("hellos_invalid")
    elif hello.sni:
        _name(ctx, seg.dst, hello.sni, SNI, seg.ts)
    elif hello.outcome == tls.DONE:
        ctx.count("hellos_without_sni")


@hookimpl
def ng_packet(ctx: PluginContext, segment: TcpSegment) -> None:
    n = segment.payload_len
    if not n:
        return
    asm, _ = _state(ctx)
    if asm.pending:
        key = (segment.src, segment.dst, segment.sport, segment.dport)
        if key in asm.pending:
            hello = asm.more(key, segment.ts, segment.seq, segment.payload, n)
            if hello is not None:
                _hello(ctx, segment, hello)
            return
    frame, off = segment.frame, segment.payload_off
    if off >= len(frame):
        return  # the snaplen cut the payload off entirely
    first = frame[off]
    if first == TLS_HANDSHAKE:
        payload = segment.payload
        if len(payload) >= 6 and payload[5] == tls.HANDSHAKE_CLIENT_HELLO:
            key = (segment.src, segment.dst, segment.sport, segment.dport)
            _hello(ctx, segment, asm.start(key, segment.ts, segment.seq, payload, n))
    elif first in http.FIRST_BYTES:
        host = http.host(segment.payload)
        if host is not None:
            ctx.count("http_requests")
            _name(ctx, segment.dst, host, HTTP_HOST, segment.ts)
    elif segment.sport == DNS_PORT and n >= 2:
        payload = segment.payload
        size = payload[0] << 8 | payload[1] if len(payload) >= 2 else 0
        if size and len(payload) >= size + 2:  # the whole answer in this segment (RFC 1035 4.2.2)
            _dns(ctx, payload[2 : 2 + size], segment.ts)


@hookimpl
def ng_datagram(ctx: PluginContext, datagram: UdpDatagram) -> None:
    if datagram.sport == DNS_PORT and datagram.payload:
        _state(ctx)
        _dns(ctx, datagram.payload, datagram.ts)


def _dns(ctx: PluginContext, message: bytes, ts: float) -> None:
    found = dns.answer(message)
    if found is None:
        return
    ctx.count("dns_answers")
    for addr in found.addresses:
        _name(ctx, addr, found.name, DNS, ts)


@hookimpl
def ng_tick(ctx: PluginContext, now: float, final: bool) -> None:
    asm, _ = _state(ctx)
    asm.expire(math.inf if final else now)  # stopping: what still waits stays incomplete
    s = asm.stats
    ctx.counters.update(
        hellos=s.hellos,
        hellos_reassembled=s.reassembled,
        hellos_incomplete=s.incomplete,
        hellos_waiting=len(asm.pending),
    )
    _send(ctx)


def _send(ctx: PluginContext) -> None:
    names: Names = ctx.state["names"]
    if not names:
        return
    report = quality_pb2.NameReport()
    for (ip, name), (source, ts) in sorted(names.items(), key=lambda kv: kv[1][1]):
        report.names.add(ip=ip, name=name, source=source, seen=ts)
    ctx.emit(report)
    ctx.count("names_sent", len(names))
    names.clear()
