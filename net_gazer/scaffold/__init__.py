"""``net-gazer-plugin new NAME``: write a working plugin package to start from.

The package holds a sensor half and a collector half with their own entry points, its own
``.proto`` with the generated code (made here by ``grpcio-tools``, and again by the package's
``scripts/gen_proto.py`` after edits), and tests that pass as generated: the sensor half on a
committed capture, and that capture replayed through a real collector and FalkorDB
(:mod:`net_gazer.testing`). The templates are this package's ``templates/`` directory; names in
paths and files are written ``{{name}}``, ``{{Name}}``, ``{{REL}}``, ``{{package}}``, ``{{dist}}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from net_gazer import __version__
from net_gazer.errors import UserError

NAME = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
#: Names a new plugin may not take: the built-in plugins'.
RESERVED = frozenset({"handshake", "traceroute", "quality", "dpi", "udp", "sensor", "collector"})
TEXT = (".tmpl",)
BINARY = (".pcap", ".json")  # copied as they are


def names(name: str) -> dict[str, str]:
    """The placeholders' values for plugin ``name``."""
    if not NAME.match(name) or name.endswith("_") or "__" in name:
        raise UserError(
            f"plugin name {name!r} must be a lower-case identifier: a letter, then letters, "
            "digits or single underscores (at most 30), such as 'tls_ports'"
        )
    if name in RESERVED:
        raise UserError(f"{name!r} is the name of a built-in plugin; pick another name")
    release = ".".join(__version__.split(".")[:2])
    return {
        "name": name,
        "Name": "".join(part.capitalize() for part in name.split("_")),
        "REL": name.upper(),
        "package": f"net_gazer_plugin_{name}",
        "dist": f"net-gazer-plugin-{name.replace('_', '-')}",
        "net_gazer_version": release,
    }


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _files(
    root: Traversable, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Traversable]]:
    out = []
    for item in sorted(root.iterdir(), key=lambda t: t.name):
        if item.name == "__pycache__":
            continue
        if item.is_dir():
            out += _files(item, (*prefix, item.name))
        else:
            out.append(((*prefix, item.name), item))
    return out


def new(name: str, directory: Path) -> Path:
    """Write the package for plugin ``name`` into ``directory``; return its path."""
    values = names(name)
    target = directory / values["dist"]
    if target.exists():
        raise UserError(f"{target} exists already; pick another name or another --dir")
    if importlib.util.find_spec("grpc_tools") is None:
        raise UserError(
            "generating the plugin's protobuf code needs grpcio-tools and mypy-protobuf: "
            "pip install 'grpcio-tools==1.85.*' mypy-protobuf"
        )
    templates = resources.files(__name__) / "templates"
    for parts, item in _files(templates):
        rel = [fill(p, values) for p in parts]
        leaf = rel[-1]
        if leaf.endswith(TEXT):
            leaf = leaf.removesuffix(".tmpl")
            if leaf == "gitignore":
                leaf = ".gitignore"
            path = target.joinpath(*rel[:-1], leaf)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(fill(item.read_text(), values))
        elif leaf.endswith(BINARY):
            path = target.joinpath(*rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(item.read_bytes())
    gen = subprocess.run(
        [sys.executable, str(target / "scripts" / "gen_proto.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    if gen.returncode != 0:
        raise UserError(f"generating the protobuf code failed: {gen.stderr.strip()}")
    return target


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="net-gazer-plugin",
        description="Tools for writing net-gazer plugins.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    n = sub.add_parser(
        "new",
        help="write a working plugin package to start from",
        description="Write net-gazer-plugin-NAME/: sensor and collector halves, a .proto with "
        "its generated code, and tests that replay a capture through a real collector.",
    )
    n.add_argument("name", metavar="NAME", help="the plugin's name, such as tls_ports")
    n.add_argument("--dir", default=".", help="where to write the package (default: here)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        target = new(args.name, Path(args.dir))
    except UserError as exc:
        print(f"net-gazer-plugin: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {target}")
    print("next: pip install -e '" + str(target) + "[test]' && pytest " + str(target))
    return 0
