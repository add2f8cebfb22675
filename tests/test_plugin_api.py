"""The public plugin API is the boundary: built-in plugins use nothing else, and neither process
loads the other's code.

- Every ``net_gazer`` import in ``plugins/`` names the public API (``net_gazer.sensor``,
  ``net_gazer.collector``, the wire ``net_gazer.v1``) or the plugin's own package; a name taken
  from a host's API is one that host exports (``__all__``).
- A plugin's sensor half never reaches the collector API, and its collector half never reaches the
  sensor API, directly or through the plugin's own modules.
- A real sensor, built with every installed plugin, has imported no collector module; a real
  collector (plugins, store, web app) has imported no sensor module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PCAPS, ROOT

import net_gazer.collector
import net_gazer.sensor

PLUGINS = ROOT / "plugins"
HOST_APIS = {"net_gazer.sensor": net_gazer.sensor, "net_gazer.collector": net_gazer.collector}
WIRE = ("net_gazer.v1", "net_gazer.v1.wire_pb2")


def module_name(path: Path) -> str:
    rel = path.relative_to(PLUGINS).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["net_gazer", "plugins", *parts])


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: list[tuple[str, list[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def plugin_files() -> list[Path]:
    files = sorted(PLUGINS.rglob("*.py"))
    assert files, "no built-in plugins found"
    return files


@pytest.mark.parametrize("path", plugin_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_built_in_plugins_import_only_the_public_api(path: Path) -> None:
    own = module_name(path).split(".")[:3]  # net_gazer.plugins.<plugin>
    for module, names, line in imports(path):
        if module != "net_gazer" and not module.startswith("net_gazer."):
            continue  # the standard library and third-party packages
        where = f"{path.relative_to(ROOT)}:{line}"
        if module in HOST_APIS:
            exported = set(HOST_APIS[module].__all__)
            assert set(names) <= exported, f"{where}: {sorted(set(names) - exported)} from {module}"
        elif module in WIRE:
            continue
        elif module.split(".")[:3] == own and len(own) == 3:
            continue  # the plugin's own modules
        else:
            pytest.fail(f"{where} imports {module}, which is not the public plugin API")


def reaches(path: Path, seen: set[Path] | None = None) -> set[str]:
    """The host APIs that ``path`` imports, directly or through its own plugin's modules."""
    seen = seen if seen is not None else set()
    seen.add(path)
    hosts: set[str] = set()
    for module, names, _ in imports(path):
        if module in HOST_APIS:
            hosts.add(module)
        candidates = [module, *(f"{module}.{n}" for n in names)]
        for name in candidates:
            if not name.startswith("net_gazer.plugins."):
                continue
            rel = Path(*name.split(".")[2:])
            for target in (PLUGINS / rel.with_suffix(".py"), PLUGINS / rel / "__init__.py"):
                if target.is_file() and target not in seen:
                    hosts |= reaches(target, seen)
    return hosts


def entry_points(group: str) -> dict[str, str]:
    from importlib import metadata

    return {
        ep.name: ep.value
        for ep in metadata.entry_points(group=group)
        if ep.value.startswith("net_gazer.plugins.")
    }


@pytest.mark.parametrize(
    ("group", "forbidden"),
    [("net_gazer.sensor", "net_gazer.collector"), ("net_gazer.collector", "net_gazer.sensor")],
)
def test_each_half_reaches_only_its_own_host(group: str, forbidden: str) -> None:
    halves = entry_points(group)
    assert "handshake" in halves
    for name, value in halves.items():
        path = PLUGINS / Path(*value.split(".")[2:]).with_suffix(".py")
        assert path.is_file(), value
        assert forbidden not in reaches(path), f"plugin {name}'s {group} half reaches {forbidden}"
        other = entry_points(forbidden).get(name)
        assert other != value, f"plugin {name} uses one module for both hosts"


SENSOR_PROCESS = """
import json, sys
from pathlib import Path
from net_gazer.sensor.build import build
from net_gazer.sensor.config import SensorConfig
sensor = build(SensorConfig(read=Path(sys.argv[1]), sensor_id="t", site="t"))
print(json.dumps({"plugins": sorted(sensor.host.infos), "modules": sorted(sys.modules)}))
"""

COLLECTOR_PROCESS = """
import json, sys
from net_gazer.collector import plugins
from net_gazer.collector.ingest import IngestService
from net_gazer.collector.store import GraphStore
from net_gazer.collector.web import WebConfig, create_app
from net_gazer.collector.cli import serve
loaded = plugins.load("g")
create_app(WebConfig(graph_url="unix:///nonexistent.sock"))
print(json.dumps({"plugins": sorted(loaded.host.infos), "modules": sorted(sys.modules)}))
"""


def _modules(program: str, *args: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", program, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, list[str]] = json.loads(out.stdout)
    return result


def test_the_sensor_process_loads_no_collector_code() -> None:
    seen = _modules(SENSOR_PROCESS, str(PCAPS / "handshakes.pcap"))
    assert "handshake" in seen["plugins"]
    assert "net_gazer.plugins.handshake.sensor" in seen["modules"]
    leaked = [m for m in seen["modules"] if m.startswith("net_gazer.collector")]
    assert leaked == [], f"the sensor imported collector modules: {leaked}"


def test_the_collector_process_loads_no_sensor_code() -> None:
    seen = _modules(COLLECTOR_PROCESS)
    assert "handshake" in seen["plugins"]
    assert "net_gazer.plugins.handshake.collector" in seen["modules"]
    leaked = [m for m in seen["modules"] if m.startswith("net_gazer.sensor")]
    assert leaked == [], f"the collector imported sensor modules: {leaked}"
