"""Our Cypher parameter serialiser: same text as the FalkorDB client's for the same values, and
hostile strings come back from a real FalkorDB exactly as they went in."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import graph_query
from falkordb.helpers import stringify_param_value
from hypothesis import given, settings
from hypothesis import strategies as st

from net_gazer.collector.cypher import literal, with_params

HOSTILE = [
    "",
    "plain",
    'quote " inside',
    "single ' quote",
    "back\\slash",
    "trailing backslash \\",
    '\\"',
    "new\nline\ttab\r",
    "unicode: é ü 漢字 🚀",
    "'}) MATCH (n) DETACH DELETE n //",
    '"}) MATCH (n) DETACH DELETE n //',
    "CYPHER x=1 RETURN 1",
    "$param",
    "`backtick`",
]

# Booleans differ on purpose: the client writes Python's True/False, we write Cypher's true/false
# (both parse; test_booleans_round_trip checks ours against the database).
scalars = st.one_of(
    st.none(), st.integers(-(2**62), 2**62), st.text(max_size=40).filter(lambda t: "\x00" not in t)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), inner, max_size=5),
    ),
    max_leaves=20,
)


@given(values)
@settings(max_examples=500, deadline=None)
def test_literal_matches_the_client(value: Any) -> None:
    assert literal(value) == stringify_param_value(value)


def test_floats_and_non_finite() -> None:
    assert literal(1.5e-05) == repr(1.5e-05)
    assert literal(1700000000.123456) == "1700000000.123456"
    assert literal(float("nan")) == "null" and literal(float("inf")) == "null"


def test_keys_and_names_are_checked() -> None:
    with pytest.raises(ValueError):
        literal({"a`b": 1})
    with pytest.raises(ValueError):
        with_params("RETURN 1", {"x y": 1})
    with pytest.raises(TypeError):
        literal(object())


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_round_trip(text: str, falkordb_url: str, graph_name: str) -> None:
    graph_query(falkordb_url, graph_name, "CREATE (:Keep {k: 1})")
    query = with_params("CREATE (n:T {v: $v}) RETURN n.v, $m", {"v": text, "m": {"inner": [text]}})
    [[v, m]] = graph_query(falkordb_url, graph_name, query)
    assert v == text and m == {"inner": [text]}
    assert graph_query(falkordb_url, graph_name, "MATCH (k:Keep) RETURN count(k)") == [[1]]


def test_booleans_round_trip(falkordb_url: str, graph_name: str) -> None:
    query = with_params("RETURN $t, $f, $l", {"t": True, "f": False, "l": [True, None, 1.5]})
    assert graph_query(falkordb_url, graph_name, query) == [[True, False, [True, None, 1.5]]]


def test_nul_becomes_a_replacement_character(falkordb_url: str, graph_name: str) -> None:
    assert literal("a\x00b") == '"a\ufffdb"'
    [[value]] = graph_query(falkordb_url, graph_name, with_params("RETURN $v", {"v": "gw\x00"}))
    assert value == "gw\ufffd"
