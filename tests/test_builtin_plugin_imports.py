"""The quality and dpi plugins are built on the public plugin API only: each sensor half imports
``net_gazer.sensor``, each collector half ``net_gazer.collector``, both ``net_gazer.v1`` and their
own package's modules; the pure modules (the analysis, the parsers) import nothing of net-gazer
at all. And neither process loads the other's host through them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
HALVES = {"sensor.py": "net_gazer.sensor", "collector.py": "net_gazer.collector"}
THIRD_PARTY = {"google"}  # protobuf's Any and DecodeError, in the collector halves


def imports(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level))
    return out


@pytest.mark.parametrize(
    "path", sorted(p for name in ("quality", "dpi", "udp") for p in (PLUGINS / name).glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)  # fmt: skip
def test_plugin_modules_import_only_the_public_api(path: Path) -> None:
    host = HALVES.get(path.name)
    for module, level in imports(path):
        if level:  # the plugin's own modules
            assert level == 1, f"{path.name} reaches outside its package: {'.' * level}{module}"
            continue
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or module == "__future__":
            continue
        if host is not None:
            allowed = module in (host, "net_gazer.v1") or top in THIRD_PARTY
            assert allowed, f"{path.parent.name}/{path.name} imports {module}"
        else:
            typed_only = path.name == "flows.py" and module == "net_gazer.sensor"  # TYPE_CHECKING
            assert top != "net_gazer" or typed_only, (
                f"the pure module {path.parent.name}/{path.name} imports {module}"
            )


def test_each_process_loads_only_its_own_halves() -> None:
    check = """
import sys
import net_gazer.plugins.quality.{half}, net_gazer.plugins.dpi.{half}, net_gazer.plugins.udp.{half}
other = "net_gazer.{other}"
loaded = sorted(m for m in sys.modules if m == other or m.startswith(other + "."))
assert not loaded, loaded
"""
    for half, other in (("sensor", "collector"), ("collector", "sensor")):
        code = check.format(half=half, other=other)
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
