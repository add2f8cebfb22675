"""``net-gazer-query``: run a Cypher query against the collector's graph and print the result.

The embedded FalkorDB listens only on a Unix socket in the collector's data directory and no
``redis-cli`` is installed with it, so this is the way to look at the graph by hand::

    net-gazer-query --data-dir .run/data \\
        "MATCH (c:Host)-[e:CONNECTS]->(s:Host) RETURN c.ip, s.ip, e.dport, e.count LIMIT 10"

Queries are read-only unless ``--write`` is given. Parameters (``-p name=value``, the value read as
JSON when it parses, else as a string) go through FalkorDB's parameter mechanism, never into the
query text.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from net_gazer import __version__
from net_gazer.errors import ConfigError, UserError


def parser() -> argparse.ArgumentParser:
    from net_gazer.collector.config import default_data_dir

    p = argparse.ArgumentParser(
        prog="net-gazer-query",
        description="Run a Cypher query against the net-gazer graph in FalkorDB and print the rows.",
        epilog="example: net-gazer-query --data-dir .run/data "
        '"MATCH (s:Sensor) RETURN s.id, s.last_seen, s.batches"',
    )
    p.add_argument("cypher", metavar="CYPHER", help="the query (read-only unless --write)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"the collector's --data-dir, whose embedded FalkorDB socket to use (default {default_data_dir()})",
    )
    where.add_argument(
        "--graph-url", metavar="URL", help="an external FalkorDB, redis://HOST:PORT or unix:///path"
    )
    p.add_argument("--graph", default="net_gazer", help="graph name (default net_gazer)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a query parameter ($NAME); VALUE is JSON if it parses, else a string",
    )
    p.add_argument("--json", action="store_true", help="print one JSON array per row")
    p.add_argument("--write", action="store_true", help="allow a query that changes the graph")
    p.add_argument("--version", action="version", version=f"net-gazer {__version__}")
    return p


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ConfigError(f"parameter {item!r} is not NAME=VALUE")
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


def _url(args: argparse.Namespace) -> str:
    if args.graph_url:
        return str(args.graph_url)
    from net_gazer.collector.config import default_data_dir
    from net_gazer.collector.embedded import EmbeddedFalkorDB

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    server = EmbeddedFalkorDB(data_dir)
    if not server.socket.exists():
        raise UserError(
            f"no embedded FalkorDB is running in {data_dir} (no {server.socket}); start the "
            "collector (make run), or give --data-dir or --graph-url"
        )
    return server.url


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _print_table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header, *[[_text(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import redis.exceptions
        from falkordb import FalkorDB

        url = _url(args)
        params = _params(args.param)
        db = (
            FalkorDB(unix_socket_path=url.removeprefix("unix://"))
            if url.startswith("unix://")
            else FalkorDB.from_url(url)
        )
        graph = db.select_graph(args.graph)
        try:
            run = graph.query if args.write else graph.ro_query
            result = run(args.cypher, params)
        except redis.exceptions.ResponseError as exc:
            text = str(exc)
            if "empty key" in text:
                raise UserError(f"the graph {args.graph!r} does not exist yet") from None
            if not args.write and "read-only" in text.lower():
                raise UserError(
                    f"FalkorDB refused the query: {text}; add --write to change the graph"
                ) from None
            raise UserError(f"FalkorDB refused the query: {text}") from None
        except (redis.exceptions.ConnectionError, OSError) as exc:
            raise UserError(f"cannot reach FalkorDB at {url}: {exc}") from None
        finally:
            db.connection.close()
    except UserError as exc:
        print(f"net-gazer-query: {exc}", file=sys.stderr)
        return exc.exit_code
    header = [str(h[1]) if isinstance(h, list | tuple) else str(h) for h in result.header]
    rows = [list(r) for r in result.result_set]
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
    elif header:
        _print_table(header, rows)
    else:
        stats = {
            "nodes created": result.nodes_created,
            "relationships created": result.relationships_created,
            "properties set": result.properties_set,
            "nodes deleted": result.nodes_deleted,
            "relationships deleted": result.relationships_deleted,
        }
        print(", ".join(f"{v} {k}" for k, v in stats.items() if v) or "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
