"""The UDP flows the udp plugin follows and the rows it reports. No I/O: datagrams in, rows out.

A flow is one (client address, client port, server address, server port) seen on one captured
interface; :mod:`.rules` decides which side is the client on its first datagram. Every datagram
of a followed flow is added at once to the row of its (client, server, server port): packets and
payload bytes per direction (the UDP length less its 8-byte header, as the UDP header gives it),
the flows first seen, and the flows answered (the first datagram from the server). So the flow
table holds only identities and can forget a flow at any time without losing a count.

Copies: a datagram of a flow seen on another captured interface (the lan and wan sides of a
gateway) is ignored and counted, and so is a NAT'd copy: a new flow on another interface whose
first datagram has the same server endpoint, direction, length and payload as the latest datagram
of a known flow, within ``copy_window`` seconds.

Bounds: at most ``max_flows`` flows, the oldest going first when full (its counts are already in
its row); a flow is forgotten after ``idle_timeout`` seconds without a datagram; ``max_rows`` rows
at most before the table asks to be reported (``full``). The sensor half folds rows that nothing
answered past a per-interval budget, as the handshake plugin folds unverified attempts.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field

from .rules import LEFT_OUT, SENDER_IS_CLIENT, PortRules
from .sampling import followed


@dataclass(frozen=True, slots=True)
class TableConfig:
    sample_rate: int = 1
    max_flows: int = 65_536
    #: Seconds without a datagram before a flow is forgotten (conntrack keeps a UDP flow
    #: 30-120 s; a later datagram makes a new flow).
    idle_timeout: float = 60.0
    #: Rows gathered before the table asks to be reported within an interval.
    max_rows: int = 20_000
    #: Seconds within which a NAT'd copy on another interface is recognised.
    copy_window: float = 1.0
    rules: PortRules = field(default_factory=PortRules)


FlowKey = tuple[bytes, int, bytes, int]  # client, client port, server, server port
RowKey = tuple[str, str, int]  # client, server, server port, in text form
#: (server address, server port, from the client, payload length, payload) -> (flow, iface, ts)
CopyKey = tuple[bytes, int, bool, int, bytes]


@dataclass(slots=True)
class Flow:
    key: FlowKey
    iface: int
    row: RowKey
    last: float
    answered: bool = False
    copy_key: CopyKey | None = None


@dataclass(slots=True)
class Row:
    family: int
    first: float
    last: float
    flows: int = 0
    answered_flows: int = 0
    packets_c2s: int = 0
    packets_s2c: int = 0
    bytes_c2s: int = 0
    bytes_s2c: int = 0

    @property
    def answered(self) -> bool:
        return self.packets_s2c > 0


@dataclass(slots=True)
class TableStats:
    datagrams: int = 0
    flows: int = 0
    left_out: int = 0
    not_followed: int = 0
    copies_ignored: int = 0
    evicted_full: int = 0
    idle: int = 0


def _text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


class FlowTable:
    def __init__(self, cfg: TableConfig | None = None) -> None:
        self.cfg = cfg or TableConfig()
        self.flows: OrderedDict[FlowKey, Flow] = OrderedDict()
        #: Flows known to be copies of another interface's flow: key -> last datagram's time.
        self.copies: OrderedDict[FlowKey, float] = OrderedDict()
        self._latest: dict[CopyKey, tuple[FlowKey, int, float]] = {}
        self.rows: dict[RowKey, Row] = {}
        self.stats = TableStats()
        self.full = False

    def __len__(self) -> int:
        return len(self.flows)

    def feed(
        self, ts: float, iface: int, src: bytes, dst: bytes, sport: int, dport: int,
        length: int, payload: bytes = b"",
    ) -> None:  # fmt: skip
        """One datagram: ``length`` is its payload length from the UDP header."""
        self.stats.datagrams += 1
        flows = self.flows
        key = (src, sport, dst, dport)
        flow = flows.get(key)
        c2s, new = True, False
        if flow is None:
            flow = flows.get((dst, dport, src, sport))
            c2s = False
        if flow is None:
            if key in self.copies or (dst, dport, src, sport) in self.copies:
                self._copy_seen(key, ts)
                return
            if not followed(src, dst, sport, dport, self.cfg.sample_rate):
                self.stats.not_followed += 1
                return
            side = self.cfg.rules.orient(sport, dport)
            if side == LEFT_OUT:
                self.stats.left_out += 1
                return
            c2s = side == SENDER_IS_CLIENT
            fkey = key if c2s else (dst, dport, src, sport)
            ckey = self._copy_key(fkey, c2s, length, payload)
            seen = self._latest.get(ckey)
            window = self.cfg.copy_window
            if (
                seen is not None
                and seen[1] != iface
                and ts - seen[2] <= window
                and seen[0] in flows
            ):
                if len(self.copies) >= self.cfg.max_flows:
                    self.copies.popitem(last=False)
                self.copies[fkey] = ts
                self.stats.copies_ignored += 1
                return
            flow = self._new_flow(fkey, iface, ts)
            new = True
        elif iface != flow.iface:
            self.stats.copies_ignored += 1
            return
        else:
            flows.move_to_end(flow.key)
        flow.last = ts
        row = self.rows.get(flow.row)
        if row is None:
            row = self.rows[flow.row] = Row(4 if len(src) == 4 else 6, ts, ts)
            if len(self.rows) >= self.cfg.max_rows:
                self.full = True
        else:
            row.first = min(row.first, ts)
            row.last = max(row.last, ts)
        if new:
            row.flows += 1
        if c2s:
            row.packets_c2s += 1
            row.bytes_c2s += length
        else:
            row.packets_s2c += 1
            row.bytes_s2c += length
            if not flow.answered:
                flow.answered = True
                row.answered_flows += 1
        ckey = self._copy_key(flow.key, c2s, length, payload)
        if flow.copy_key is not None and self._latest.get(flow.copy_key, (None,))[0] == flow.key:
            del self._latest[flow.copy_key]
        self._latest[ckey] = (flow.key, iface, ts)
        flow.copy_key = ckey

    def _copy_key(self, fkey: FlowKey, c2s: bool, length: int, payload: bytes) -> CopyKey:
        return (fkey[2], fkey[3], c2s, length, payload[:64])

    def _copy_seen(self, key: FlowKey, ts: float) -> None:
        k = key if key in self.copies else (key[2], key[3], key[0], key[1])
        self.copies[k] = ts
        self.copies.move_to_end(k)
        self.stats.copies_ignored += 1

    def _new_flow(self, key: FlowKey, iface: int, ts: float) -> Flow:
        if len(self.flows) >= self.cfg.max_flows:
            self.stats.evicted_full += 1
            self._forget(self.flows.popitem(last=False)[1])
        flow = Flow(key, iface, (_text(key[0]), _text(key[2]), key[3]), ts)
        self.flows[key] = flow
        self.stats.flows += 1
        return flow

    def _forget(self, flow: Flow) -> None:
        if flow.copy_key is not None and self._latest.get(flow.copy_key, (None,))[0] == flow.key:
            del self._latest[flow.copy_key]

    def expire(self, now: float) -> None:
        """Forget flows idle for ``idle_timeout`` seconds, and copies as old."""
        before = now - self.cfg.idle_timeout
        flows = self.flows
        while flows:
            flow = next(iter(flows.values()))
            if flow.last >= before:
                break
            flows.popitem(last=False)
            self._forget(flow)
            self.stats.idle += 1
        copies = self.copies
        while copies and next(iter(copies.values())) < before:
            copies.popitem(last=False)

    def report(self) -> dict[RowKey, Row]:
        """The rows gathered since the last report; the table starts new ones."""
        rows, self.rows = self.rows, {}
        self.full = False
        return rows
