"""The committed protobuf code is what scripts/gen_proto.py makes of mss.proto."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "net_gazer_plugin_mss"


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    runpy.run_path(str(ROOT / "scripts" / "gen_proto.py"))["generate"](tmp_path)
    for name in ("mss_pb2.py", "mss_pb2.pyi"):
        fresh = (tmp_path / "net_gazer_plugin_mss" / name).read_text()
        assert fresh == (PACKAGE / name).read_text(), f"{name} is stale: run scripts/gen_proto.py"
