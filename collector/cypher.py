"""Cypher parameters, serialised fast.

FalkorDB takes query parameters as a ``CYPHER name=value ...`` header in front of the query text.
The Python client builds that header with a general recursive serialiser, which cost as much time
as the database itself in ``bench/bench_ingest.py``. This one does the same job for the types we
send (None, bool, int, float, str, list, tuple, dict with identifier keys) with less overhead.
Values are still parameters: they are never spliced into the query itself. A NUL character, which
FalkorDB cannot take in a string, becomes U+FFFD.
"""

from __future__ import annotations

import math
from typing import Any


def literal(value: Any) -> str:
    """The Cypher literal of ``value``, escaped exactly like the FalkorDB client does."""
    t = type(value)
    if t is str:
        text: str = value
        if "\x00" in text:  # FalkorDB's parser rejects NUL in a string: keep the rest visible
            text = text.replace("\x00", "\ufffd")
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if t is int:
        return str(value)
    if t is float:
        return repr(value) if math.isfinite(value) else "null"
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is list or t is tuple:
        return "[" + ",".join([literal(v) for v in value]) + "]"
    if t is dict:
        parts = []
        for k, v in value.items():
            if not isinstance(k, str) or not k or "`" in k:
                raise ValueError(f"parameter map key {k!r} cannot be a Cypher identifier")
            parts.append(f"`{k}`:{literal(v)}")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, str | int | float):  # subclasses (e.g. IntEnum)
        return literal(t.__mro__[1](value) if t is not bool else bool(value))
    raise TypeError(f"cannot pass a {t.__name__} as a Cypher parameter")


def with_params(query: str, params: dict[str, Any], literals: dict[str, str] | None = None) -> str:
    """``CYPHER k=v ... query``: the parameter header FalkorDB reads, then the query.
    ``literals`` are parameters already serialised with :func:`literal`."""
    if not params and not literals:
        return query
    for name in [*params, *(literals or ())]:
        if not name.isidentifier():
            raise ValueError(f"parameter name {name!r} is not an identifier")
    header = [f"{k}={literal(v)}" for k, v in params.items()]
    header += [f"{k}={text}" for k, text in (literals or {}).items()]
    return "CYPHER " + " ".join(header) + " " + query
