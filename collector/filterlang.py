"""The filter language of the API and the viewer (``?q=``), parsed and evaluated without I/O.

A filter is a list of terms; terms side by side must all hold (AND). ``or`` joins alternatives,
``not`` (or ``!``) negates the term or group after it, and parentheses group. ``and`` may be
written out. docs/filter.md is the user's reference; :data:`FIELDS` is the list of keys.

Terms:

- ``key:value`` -- ``port:443``, ``port:8000-8100``, ``src:10.0.0.0/8``, ``dst:example.com``,
  ``host:2001:db8::/32``, ``country:DE``, ``asn:13335``, ``sensor:gw1``, ``state:refused``, ...;
  everything after the first ``:`` is the value, so IPv6 addresses need no quoting
  (``[2001:db8::1]`` is accepted too). ``"..."`` quotes a value with spaces.
- ``key OP number`` -- ``rtt>50``, ``retrans>0``, ``count>=10``, ``loss<0.5``; OP is one of
  ``> >= < <= = !=``.
- a bare address, network or name matches either end (as ``host:`` does).

A malformed filter raises :class:`FilterError` with the 0-based character position of the error.

The parsed filter (:class:`Filter`) decides on a row (:meth:`Filter.matches`) and offers the
conditions that every matching row must meet (:meth:`Filter.pushdown`) so a query can narrow what
it reads from the graph first. The row decides: pushdown is only ever a superset.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from net_gazer.netaddr import IPAddress, IPNetwork


class FilterError(ValueError):
    """A malformed filter: ``message`` says what is wrong, ``position`` where (0-based)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position + 1})")
        self.message = message
        self.position = position


#: Numeric fields: name -> the CONNECTS property it compares.
NUMERIC: dict[str, str] = {
    "rtt": "rtt_ms",
    "client_rtt": "client_rtt_ms",
    "ts_rtt": "ts_rtt_ms",
    "retrans": "retransmits",
    "retransmits": "retransmits",
    "count": "count",
    "handshakes": "count",
    "attempts": "attempts",
    "refused": "refused",
    "unanswered": "unanswered",
    "abandoned": "abandoned",
    "evicted": "evicted",
    "loss": "loss_rate",
    "port": "dport",
}

#: Address fields: which end(s) of a connection they look at.
ENDS: dict[str, tuple[str, ...]] = {
    "src": ("client",),
    "client": ("client",),
    "dst": ("server",),
    "server": ("server",),
    "host": ("client", "server"),
    "ip": ("client", "server"),
}

#: Host properties matched at either end: field -> Host property.
HOST_PROPS: dict[str, str] = {
    "country": "country_code",
    "asn": "asn",
    "city": "city",
    "site": "site",
    "org": "as_org",
    "name": "name",
}

STATES = ("established", "refused", "unanswered", "abandoned", "evicted")
DIRECTIONS = ("outgoing", "incoming", "internal", "transit")
PROTOS = ("tcp", "udp")

FIELDS: tuple[str, ...] = (
    *ENDS, *HOST_PROPS, "port", "sensor", "proto", "dir", "direction", "state", "since",
    *(k for k in NUMERIC if k != "port"),
)  # fmt: skip

OPS = (">=", "<=", "!=", ">", "<", "=")
KEY = re.compile(r"[a-z_]+")
MAX_DEPTH = 50


# -- the tree ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    field: str
    op: str  # ":" or a comparison
    value: Any
    position: int
    text: str


@dataclass(frozen=True)
class Not:
    node: Node


@dataclass(frozen=True)
class All:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    nodes: tuple[Node, ...]


Node = Union[Term, Not, All, Any_]  # noqa: UP007 - a forward-referenced alias


@dataclass(frozen=True)
class HostMatch:
    """What an address term matches: a network, an address, or a name pattern."""

    network: IPNetwork | None = None
    pattern: str = ""

    def matches(self, host: Mapping[str, Any]) -> bool:
        ip = host.get("ip")
        if self.network is not None:
            if not ip:
                return False
            try:
                addr: IPAddress = ipaddress.ip_address(ip)
            except ValueError:
                return False
            return addr.version == self.network.version and addr in self.network
        names = [host.get("name") or "", *(host.get("names") or [])]
        return any(fnmatch.fnmatchcase(str(n).lower(), self.pattern) for n in names if n) or (
            ip is not None and fnmatch.fnmatchcase(str(ip), self.pattern)
        )


# -- parsing -------------------------------------------------------------------------------------
@dataclass
class _Token:
    kind: str  # "(", ")", "word"
    text: str
    position: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "()":
            out.append(_Token(ch, ch, i))
            i += 1
            continue
        start = i
        buf = []
        while i < n and not text[i].isspace() and text[i] not in "()":
            if text[i] == '"':
                end = text.find('"', i + 1)
                if end < 0:
                    raise FilterError("this quote is never closed", i)
                buf.append(text[i + 1 : end])
                i = end + 1
                continue
            if text[i] == "[":  # [v6 address]
                end = text.find("]", i + 1)
                if end < 0:
                    raise FilterError("this '[' is never closed", i)
                buf.append(text[i + 1 : end])
                i = end + 1
                continue
            buf.append(text[i])
            i += 1
        out.append(_Token("word", "".join(buf), start))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def is_word(self, tok: _Token | None, *words: str) -> bool:
        return tok is not None and tok.kind == "word" and tok.text.lower() in words

    def parse(self) -> Node | None:
        if not self.toks:
            return None
        node = self.expr()
        tok = self.peek()
        if tok is not None:
            raise FilterError(f"unexpected {tok.text!r}", tok.position)
        return node

    def expr(self) -> Node:
        alts = [self.conj()]
        while self.is_word(self.peek(), "or", "||"):
            tok = self.toks[self.i]
            self.i += 1
            if self.peek() is None or self.peek().kind == ")":  # type: ignore[union-attr]
                raise FilterError("'or' needs a term after it", tok.position)
            alts.append(self.conj())
        return alts[0] if len(alts) == 1 else Any_(tuple(alts))

    def conj(self) -> Node:
        items = [self.unary()]
        while True:
            tok = self.peek()
            if tok is None or tok.kind == ")" or self.is_word(tok, "or", "||"):
                break
            if self.is_word(tok, "and", "&&"):
                self.i += 1
                nxt = self.peek()
                if nxt is None or nxt.kind == ")" or self.is_word(nxt, "or", "||", "and", "&&"):
                    raise FilterError("'and' needs a term after it", tok.position)
                continue
            items.append(self.unary())
        return items[0] if len(items) == 1 else All(tuple(items))

    def unary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise FilterError("the filter ends where a term was expected", len(self.text))
        self.depth += 1
        try:
            return self._unary(tok)
        finally:
            self.depth -= 1

    def _unary(self, tok: _Token) -> Node:
        if self.depth > MAX_DEPTH:
            raise FilterError(f"more than {MAX_DEPTH} nested groups or negations", tok.position)
        if self.is_word(tok, "not"):
            self.i += 1
            if self.peek() is None:
                raise FilterError("'not' needs a term after it", tok.position)
            return Not(self.unary())
        if tok.kind == "word" and tok.text.startswith("!") and len(tok.text) > 1:
            self.i += 1
            return Not(term(tok.text[1:], tok.position + 1))
        if tok.kind == "word" and tok.text == "!":
            self.i += 1
            if self.peek() is None:
                raise FilterError("'!' needs a term after it", tok.position)
            return Not(self.unary())
        if tok.kind == "(":
            self.i += 1
            inner = self.peek()
            if inner is None:
                raise FilterError("this '(' is never closed", tok.position)
            if inner.kind == ")":
                raise FilterError("empty parentheses", tok.position)
            node = self.expr()
            close = self.peek()
            if close is None or close.kind != ")":
                raise FilterError("this '(' is never closed", tok.position)
            self.i += 1
            return node
        if tok.kind == ")":
            raise FilterError("')' without a matching '('", tok.position)
        if self.is_word(tok, "or", "||", "and", "&&"):
            raise FilterError(f"{tok.text!r} needs a term before it", tok.position)
        self.i += 1
        return term(tok.text, tok.position)


def _number(text: str, position: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FilterError(f"{what} needs a number, not {text!r}", position) from None
    if not math.isfinite(value):
        raise FilterError(f"{what} needs a finite number", position)
    return value


def _host_match(value: str, position: int) -> HostMatch:
    if not value:
        raise FilterError("an address, network or name is missing", position)
    try:
        if "/" in value:
            return HostMatch(network=ipaddress.ip_network(value, strict=False))
        addr = ipaddress.ip_address(value)
        return HostMatch(network=ipaddress.ip_network(addr))
    except ValueError:
        if "/" in value or value.count(":") >= 2 or re.fullmatch(r"[\d.]+", value):
            raise FilterError(f"{value!r} is not an IP address or network", position) from None
    if not re.fullmatch(r"[A-Za-z0-9_.*?\-]+", value):
        raise FilterError(f"{value!r} is not an address, network or host name", position)
    return HostMatch(pattern=value.lower())


def _since(value: str, position: int) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", value)
    if m:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return time.time() - float(m.group(1)) * scale
    try:
        return float(value)
    except ValueError:
        pass
    import datetime

    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(
            f"since needs an age (30m, 2h, 7d), a Unix time or an ISO date, not {value!r}",
            position,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def term(text: str, position: int) -> Term:
    """One term (see the module docstring)."""
    m = KEY.match(text)
    key = m.group(0).lower() if m else ""
    rest = text[len(key) :]
    op = next((o for o in OPS if rest.startswith(o)), "") if key else ""
    if key and rest.startswith(":"):
        op = ":"
    if not key or not op:
        # A bare address, network or name: either end.
        return Term("host", ":", _host_match(text, position), position, text)
    if key not in FIELDS:
        # An IPv6 address such as abcd::1 reads like a key at first.
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise FilterError(
                f"unknown filter key {key!r}; known keys: {', '.join(sorted(set(FIELDS)))}",
                position,
            ) from None
        return Term("host", ":", _host_match(text, position), position, text)
    vpos = position + len(key) + len(op)
    value = rest[len(op) :]
    if op != ":":
        if key not in NUMERIC:
            raise FilterError(f"{key} takes key:value, not a comparison", position + len(key))
        if value == "":
            raise FilterError(f"{key}{op} needs a number after it", vpos)
        return Term(key, op, _number(value, vpos, key), position, text)
    if value == "":
        raise FilterError(f"{key}: needs a value", vpos)
    if key == "port":
        m2 = re.fullmatch(r"(\d+)(?:-(\d+))?", value)
        if not m2:
            raise FilterError(f"port needs a number or a range like 8000-8100, not {value!r}", vpos)
        lo, hi = int(m2.group(1)), int(m2.group(2) or m2.group(1))
        if not 0 <= lo <= hi <= 65535:
            raise FilterError("ports run from 0 to 65535, low to high", vpos)
        return Term(key, ":", (lo, hi), position, text)
    if key in ENDS:
        return Term(key, ":", _host_match(value, vpos), position, text)
    if key == "asn":
        digits = value.upper().removeprefix("AS")
        if not digits.isdigit():
            raise FilterError(f"asn needs a number like 13335 or AS13335, not {value!r}", vpos)
        return Term(key, ":", int(digits), position, text)
    if key == "country":
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise FilterError(f"country needs a two-letter code like DE, not {value!r}", vpos)
        return Term(key, ":", value.upper(), position, text)
    if key == "state":
        if value.lower() not in STATES:
            raise FilterError(f"state is one of {', '.join(STATES)}, not {value!r}", vpos)
        return Term(key, ":", value.lower(), position, text)
    if key in ("dir", "direction"):
        if value.lower() not in DIRECTIONS:
            raise FilterError(f"dir is one of {', '.join(DIRECTIONS)}, not {value!r}", vpos)
        return Term("dir", ":", value.lower(), position, text)
    if key == "proto":
        if value.lower() not in PROTOS:
            raise FilterError(f"proto is one of {', '.join(PROTOS)}, not {value!r}", vpos)
        return Term(key, ":", value.lower(), position, text)
    if key == "since":
        return Term(key, ":", _since(value, vpos), position, text)
    if key in NUMERIC:
        return Term(key, "=", _number(value, vpos, key), position, text)
    # sensor, city, site, org, name: case-insensitive, * and ? as wildcards
    return Term(key, ":", value.lower(), position, text)


# -- evaluation ------------------------------------------------------------------------------------
def _compare(value: Any, op: str, bound: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return {
        ">": value > bound,
        ">=": value >= bound,
        "<": value < bound,
        "<=": value <= bound,
        "=": value == bound,
        "!=": value != bound,
    }[op]


def _text_match(pattern: str, value: Any) -> bool:
    if value is None or value == "":
        return False
    return fnmatch.fnmatchcase(str(value).lower(), pattern)


def _state(edge: Mapping[str, Any], state: str) -> bool:
    key = "count" if state == "established" else state
    return bool((edge.get(key) or 0) > 0)


def evaluate(node: Node, row: Mapping[str, Any]) -> bool:
    """Whether ``row`` (``{"client": host, "server": host, "edge": props}``) matches."""
    if isinstance(node, All):
        return all(evaluate(n, row) for n in node.nodes)
    if isinstance(node, Any_):
        return any(evaluate(n, row) for n in node.nodes)
    if isinstance(node, Not):
        return not evaluate(node.node, row)
    edge: Mapping[str, Any] = row.get("edge") or {}
    hosts = [row.get("client") or {}, row.get("server") or {}]
    f, v = node.field, node.value
    if f in ENDS:
        return any(v.matches(row.get(end) or {}) for end in ENDS[f])
    if f == "port" and node.op == ":":
        dport = edge.get("dport")
        return isinstance(dport, int) and v[0] <= dport <= v[1]
    if f in NUMERIC:
        return _compare(edge.get(NUMERIC[f]), node.op, v)
    if f == "asn":
        return any(h.get("asn") == v for h in hosts)
    if f == "country":
        return any(str(h.get("country_code") or "").upper() == v for h in hosts)
    if f in HOST_PROPS:
        return any(_text_match(v, h.get(HOST_PROPS[f])) for h in hosts)
    if f == "sensor":
        return _text_match(v, edge.get("sensor"))
    if f == "proto":
        return bool(str(edge.get("proto") or "tcp").lower() == v)
    if f == "dir":
        return bool(edge.get("direction") == v)
    if f == "state":
        return _state(edge, v)
    if f == "since":
        last = edge.get("last_seen")
        return isinstance(last, int | float) and last >= v
    raise AssertionError(f"unhandled filter field {f}")  # pragma: no cover - FIELDS is closed


def _v4_prefix(net: IPNetwork) -> str | None:
    """The text every address of an IPv4 ``net`` starts with (octet-aligned, so a superset)."""
    if net.version != 4:
        return None
    octets = net.prefixlen // 8
    if octets == 4:
        return str(net.network_address)
    parts = str(net.network_address).split(".")[:octets]
    return ".".join(parts) + "." if parts else ""


@dataclass
class Pushdown:
    """Cypher conditions (on ``c``, ``e``, ``s``) that every matching row meets, and their
    parameters."""

    where: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def add(self, condition: str, **params: Any) -> None:
        base = len(self.params)
        names = {}
        for i, (k, val) in enumerate(params.items()):
            names[k] = f"fq{base + i}"
            self.params[names[k]] = val
        self.where.append(condition.format(**{k: "$" + n for k, n in names.items()}))


def _push_term(t: Term, out: Pushdown) -> None:
    f, v = t.field, t.value
    if f in ENDS:
        hm: HostMatch = v
        if hm.network is None:
            return
        ends = [{"client": "c", "server": "s"}[e] for e in ENDS[f]]
        conds = []
        params: dict[str, Any] = {"fam": hm.network.version}
        prefix = _v4_prefix(hm.network)
        for i, var in enumerate(ends):
            if hm.network.num_addresses == 1:
                params[f"ip{i}"] = str(hm.network.network_address)
                conds.append(f"{var}.ip = {{ip{i}}}")
            elif prefix:
                params[f"pre{i}"] = prefix
                conds.append(f"({var}.family = {{fam}} AND {var}.ip STARTS WITH {{pre{i}}})")
            else:
                conds.append(f"{var}.family = {{fam}}")
        out.add("(" + " OR ".join(conds) + ")", **params)
    elif f == "port" and t.op == ":":
        lo, hi = v
        if lo == hi:
            out.add("e.dport = {p}", p=lo)
        else:
            out.add("e.dport >= {lo} AND e.dport <= {hi}", lo=lo, hi=hi)
    elif f in NUMERIC and t.op in (">", ">=", "<", "<=", "="):
        out.add(f"e.{NUMERIC[f]} {t.op} {{b}}", b=v)
    elif f == "country":
        out.add("(c.country_code = {v} OR s.country_code = {v})", v=v)
    elif f == "asn":
        out.add("(c.asn = {v} OR s.asn = {v})", v=v)
    elif f == "sensor" and not any(ch in v for ch in "*?["):
        out.add("toLower(e.sensor) = {v}", v=v)
    elif f == "dir":
        out.add("e.direction = {v}", v=v)
    elif f == "state":
        out.add(f"e.{'count' if v == 'established' else v} > 0")
    elif f == "since":
        out.add("e.last_seen >= {v}", v=v)


@dataclass(frozen=True)
class Filter:
    """A parsed filter; the empty filter matches everything."""

    root: Node | None
    text: str = ""

    def matches(self, row: Mapping[str, Any]) -> bool:
        return self.root is None or evaluate(self.root, row)

    @property
    def empty(self) -> bool:
        return self.root is None

    def pushdown(self) -> Pushdown:
        """Conditions for the terms every match must meet (the top-level AND)."""
        out = Pushdown()
        if self.root is None:
            return out
        terms = self.root.nodes if isinstance(self.root, All) else (self.root,)
        for t in terms:
            if isinstance(t, Term):
                _push_term(t, out)
        return out

    def and_(self, other: Filter) -> Filter:
        if other.root is None:
            return self
        if self.root is None:
            return other
        return Filter(All((self.root, other.root)), f"({self.text}) ({other.text})")


def parse(text: str | None) -> Filter:
    """Parse a filter; FilterError (with a position) when it is malformed."""
    text = text or ""
    if len(text) > 4000:
        raise FilterError("the filter is longer than 4000 characters", 4000)
    return Filter(_Parser(text).parse(), text)


Predicate = Callable[[Mapping[str, Any]], bool]
