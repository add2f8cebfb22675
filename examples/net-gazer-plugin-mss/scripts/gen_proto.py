#!/usr/bin/env python3
"""Regenerate the committed protobuf code (``mss_pb2.py`` and its ``.pyi`` stub) from
``src/net_gazer_plugin_mss/mss.proto``. Usage: ``python scripts/gen_proto.py [OUTDIR]`` (default:
``src``, in place); the tests run it into a temporary directory and compare.

Needs ``grpcio-tools`` and ``mypy-protobuf`` (``pip install -e '.[test]'``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SRC = HERE / "src"
PROTO = "net_gazer_plugin_mss/mss.proto"


def mypy_plugin() -> str:
    """The protoc-gen-mypy script of mypy-protobuf: on PATH, next to this interpreter, or where
    its distribution put it."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("protoc-gen-mypy", path=path)
    if found:
        return found
    for f in metadata.distribution("mypy-protobuf").files or []:
        if f.name == "protoc-gen-mypy":
            return str(f.locate())
    raise SystemExit("protoc-gen-mypy not found: pip install mypy-protobuf")


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{SRC}", f"--python_out={out}",
         f"--plugin=protoc-gen-mypy={mypy_plugin()}", f"--mypy_out={out}", str(SRC / PROTO)],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)
