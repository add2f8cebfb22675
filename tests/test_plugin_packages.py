"""Third-party plugin packages, as a plugin author meets them: the example package
(examples/net-gazer-plugin-mss) and the output of ``net-gazer-plugin new`` are installed with pip
into one fresh venv, found through their entry points, and run against a real collector and
FalkorDB; each also passes its own tests there.

The venv is made once per session, without pip and without downloads: a ``.pth`` file adds this
venv's site-packages (net-gazer and its dependencies) behind the fresh one's, so ``pip install
--no-deps --no-index`` installs only the plugin, and the project's own venv never sees it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from conftest import ROOT

from net_gazer.testing import RunningCollector, replay, start_collector

EXAMPLE = ROOT / "examples" / "net-gazer-plugin-mss"


@dataclass
class Venv:
    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> str:
        out = subprocess.run(
            [self.python, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert out.returncode == 0, f"{args} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def install(self, package: Path) -> None:
        self.run("-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                 str(package))  # fmt: skip

    def entry_points(self, group: str) -> dict[str, str]:
        code = (
            "import json, sys; from importlib import metadata; "
            "print(json.dumps({e.name: e.value for e in metadata.entry_points(group=sys.argv[1])}))"
        )
        result: dict[str, str] = json.loads(self.run("-c", code, group))
        return result


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """One fresh venv for the session, with the example plugin installed from a copy of it."""
    root = tmp_path_factory.mktemp("plugin-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    v = Venv(root / "venv")
    purelib = v.run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    ours = sysconfig.get_paths()["purelib"]
    # addsitedir, not a bare path: it also runs the .pth files there (net-gazer's editable
    # install is one).
    (Path(purelib) / "net-gazer-parent.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    copy = root / "net-gazer-plugin-mss"
    shutil.copytree(
        EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    v.install(copy)
    yield v


def tshark_mss(pcap: Path) -> dict[str, list[int]]:
    """The MSS values each host advertised in SYN-flagged segments, as tshark reads them."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "tcp.flags.syn == 1 && tcp.options.mss_val",
         "-T", "fields", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.options.mss_val"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    seen: dict[str, list[int]] = {}
    for line in out.splitlines():
        v4, v6, mss = line.split("\t")
        seen.setdefault(v4 or v6, []).append(int(mss))
    return seen


def test_the_example_is_found_through_its_entry_points(venv: Venv) -> None:
    assert venv.entry_points("net_gazer.sensor")["mss"] == "net_gazer_plugin_mss.sensor"
    assert venv.entry_points("net_gazer.collector")["mss"] == "net_gazer_plugin_mss.collector"
    assert (
        venv.entry_points("net_gazer.sensor")["handshake"] == "net_gazer.plugins.handshake.sensor"
    )
    listed = subprocess.run(
        [venv.python, "-m", "net_gazer.sensor.cli", "--list-plugins"],
        capture_output=True, text=True, check=True, cwd=venv.path,
    ).stdout  # fmt: skip
    assert any(line.startswith("mss 0.1.0") for line in listed.splitlines()), listed
    # The project's own venv does not see it: the other tests run without it.
    from importlib import metadata

    assert "mss" not in {e.name for e in metadata.entry_points(group="net_gazer.sensor")}


def test_the_example_replayed_into_a_real_collector(
    venv: Venv, falkordb_url: str, tmp_path: Path
) -> None:
    pcap = EXAMPLE / "tests" / "mss.pcap"
    collector: RunningCollector = start_collector(falkordb_url, tmp_path, python=venv.python)
    try:
        replay(pcap, collector, sensor_id="gw-example", python=venv.python)
        rows = collector.query(
            "MATCH (s:Sensor)-[m:ADVERTISED_MSS]->(h:Host) "
            "RETURN s.id, h.ip, m.samples, m.min, m.max, m.sum, m.small"
        )
        status, served = collector.get("/api/mss")
        connects = collector.query("MATCH ()-[e:CONNECTS]->() RETURN sum(e.count)")
        ((counters,),) = collector.query("MATCH (s:Sensor {id: 'gw-example'}) RETURN s.counters")
        _, health = collector.get("/healthz")
        _, api_plugins = collector.get("/api/plugins")
    finally:
        collector.stop()
    reference = tshark_mss(pcap)
    assert len(reference) >= 8, reference
    got = {ip: (sid, n, lo, hi, total, small) for sid, ip, n, lo, hi, total, small in rows}
    assert len(got) == len(rows)
    for ip, values in reference.items():
        small_below = 1440 if ":" in ip else 1460
        small = sum(1 for v in values if v < small_below)
        assert got[ip] == ("gw-example", len(values), min(values), max(values), sum(values), small)
    assert set(got) == set(reference)
    assert status == 200
    assert {h["ip"]: h["samples"] for h in served["hosts"]} == {
        ip: len(v) for ip, v in reference.items()
    }
    # The built-in plugin wrote its edges beside it: one completed handshake per connection.
    handshakes = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 1"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert connects == [[len(handshakes)]]
    plugins = {p["name"]: p for p in health["plugins"]}
    assert plugins["mss"]["version"] == "0.1.0"
    assert plugins["mss"]["errors"] == 0
    # The sensor half's counters landed on the Sensor node; the collector half took every row.
    sensor_counters = dict(c.split("=", 1) for c in counters)
    sent = int(sensor_counters["plugin_mss_hosts_sent"])
    assert sent >= len(reference)
    assert plugins["mss"]["counters"]["rows"] == sent
    assert int(sensor_counters["plugin_mss_errors"]) == 0
    # /api/plugins: both halves, as each host runs them.
    (mine,) = [p for p in api_plugins["collector"]["plugins"] if p["name"] == "mss"]
    assert (mine["loaded"], mine["version"], mine["disabled"]) == (True, "0.1.0", "")
    assert mine["hooks"] == ["ng_handle_extension", "ng_web_routes"]
    (sensor,) = api_plugins["sensors"]
    assert sensor["id"] == "gw-example" and sensor["unhandled_extensions"] == 0
    halves = {p["name"]: p for p in sensor["plugins"]}
    builtins = {ep.name for ep in metadata.entry_points(group="net_gazer.sensor")}
    assert set(halves) == builtins | {"mss"}
    assert halves["mss"]["errors"] == 0 and halves["mss"]["disabled"] is False
    assert halves["mss"]["counters"]["hosts_sent"] == sent


def test_the_example_passes_its_own_tests(venv: Venv, tmp_path: Path) -> None:
    copy = tmp_path / "net-gazer-plugin-mss"
    shutil.copytree(
        EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    out = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=copy)
    assert " passed" in out and "failed" not in out and "skipped" not in out, out


def test_the_scaffold_output_installs_and_passes_its_own_tests(venv: Venv, tmp_path: Path) -> None:
    out = venv.run("-m", "net_gazer.scaffold", "new", "tls_ports", "--dir", str(tmp_path))
    package = tmp_path / "net-gazer-plugin-tls-ports"
    assert f"wrote {package}" in out
    files = {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()}
    src = "src/net_gazer_plugin_tls_ports"
    for name in ("pyproject.toml", f"{src}/sensor.py", f"{src}/collector.py", f"{src}/tls_ports.proto",
                 f"{src}/tls_ports_pb2.py", f"{src}/tls_ports_pb2.pyi", "scripts/gen_proto.py",
                 "tests/test_sensor.py", "tests/test_collector.py", "tests/capture.pcap"):  # fmt: skip
        assert name in files, sorted(files)
    venv.install(package)
    assert venv.entry_points("net_gazer.sensor")["tls_ports"] == "net_gazer_plugin_tls_ports.sensor"
    assert venv.entry_points("net_gazer.collector")["tls_ports"] == (
        "net_gazer_plugin_tls_ports.collector"
    )
    result = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", cwd=package)
    passed = [line for line in result.splitlines() if line.startswith("PASSED")]
    assert any("test_collector.py::test_replay_writes_edges_and_serves_them" in p for p in passed)
    assert "failed" not in result and "skipped" not in result, result
    # The generated code is as clean as ours.
    ruff = Path(sys.executable).parent / "ruff"
    for args in (["check", "."], ["format", "--check", "."]):
        lint = subprocess.run(
            [str(ruff), *args], cwd=package, capture_output=True, text=True, check=False
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Bad-Name", "must be a lower-case identifier"),
        ("handshake", "built-in plugin"),
        ("a__b", "must be a lower-case identifier"),
    ],
)
def test_the_scaffold_refuses_a_bad_name_in_one_sentence(
    name: str, message: str, tmp_path: Path
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "net_gazer.scaffold", "new", name, "--dir", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_scaffold_does_not_overwrite(tmp_path: Path) -> None:
    (tmp_path / "net-gazer-plugin-mine").mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "net_gazer.scaffold", "new", "mine", "--dir", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "exists already" in out.stderr
