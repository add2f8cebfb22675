"""The sensor's Debian package, built by `make deb` and installed with apt into a fresh
Debian 12 root (debootstrap, cached by tests/debroot.py), under `unshare --net` and with a
policy-rc.d that starts nothing. Inside the root: the files, the user, the unit; the installed
command runs; a replay with exactly the unit's user and capabilities (setpriv) reaches a collector
on this host through a Unix socket; an upgrade keeps an edited conffile and enables the unit once
it names a collector; purge leaves the root as it was.

The tests of this module share one build and one root, in file order (each step needs the one
before); a failure in one makes the later ones fail too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, ROOT, connects, expected, tool
from debroot import fresh_root

from net_gazer.collector.auth import token_digest

# The first test builds the package (a venv from PyPI, pypcap compiled): minutes on 2 CPUs.
pytestmark = [pytest.mark.root, pytest.mark.timeout(1800)]

UNIT = "net-gazer-sensor.service"
TOKEN = "deb-sensor-token-0123456789abcdef"
# What changes in a Debian root whatever package comes and goes: the package manager's own
# state, caches, logs and the shadow tools' backup files.
SYSTEM_STATE = re.compile(
    r"^(var/lib/dpkg|var/lib/apt|var/cache|var/log|tmp|run)(/|$)|^etc/(passwd|group|shadow|gshadow)-$"
)
ACCOUNT_FILES = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")


def in_root(root: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run cmd in the root, with no network and a /proc of its own."""
    result = subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--fork", f"--mount-proc={root}/proc",
         "chroot", str(root), *cmd],
        capture_output=True, text=True, timeout=600, check=False, cwd="/",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
             "DEBIAN_FRONTEND": "noninteractive"},
    )  # fmt: skip
    if check:
        assert result.returncode == 0, (
            f"{cmd}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def apt_install(root: Path, deb: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(deb, root / "tmp" / deb.name)
    # apt-get as `apt install ./x.deb` would, without apt's interactive front-end.
    return in_root(
        root, "sh", "-c",
        f"cd /tmp && apt-get install -y -q -o Dpkg::Options::=--force-confdef "
        f"-o Dpkg::Options::=--force-confold ./{deb.name}",
    )  # fmt: skip


def tree(root: Path) -> dict[str, str]:
    """Every path under root (relative) with its kind and, for links, the target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir in ("proc", "dev", "sys"):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if SYSTEM_STATE.search(rel):
                continue
            out[rel] = (
                f"-> {os.readlink(path)}"
                if path.is_symlink()
                else ("dir" if path.is_dir() else "file")
            )
    return out


def unit_settings(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make deb`, into a directory of the test's (NG_TEST_DEB: a .deb built
    already, to iterate on the tests)."""
    if os.environ.get("NG_TEST_DEB"):
        return Path(os.environ["NG_TEST_DEB"])
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run(
        ["make", "-C", str(ROOT), "deb", f"DEB_DIR={out}"],
        capture_output=True, text=True, timeout=1200, check=False, cwd=ROOT,
        env={**os.environ, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = out.glob("net-gazer-sensor_*.deb")
    return built


@pytest.fixture(scope="module")
def debian_root() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="ng-debroot-", dir="/var/tmp"))
    root = fresh_root(parent / "root")
    # Maintainer scripts may not start services here: exit 101 is policy-rc.d's "forbidden".
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(parent)


@pytest.fixture(scope="module")
def pristine(debian_root: Path) -> dict[str, Any]:
    return {
        "tree": tree(debian_root),
        "accounts": {f: (debian_root / f).read_bytes() for f in ACCOUNT_FILES},
    }


def test_lintian_reports_nothing(deb: Path) -> None:
    result = subprocess.run(
        ["lintian", "--pedantic", "--fail-on", "error,warning,info,pedantic", str(deb)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
    assert result.returncode == 0 and not tags, result.stdout + result.stderr


def test_the_package_leaves_the_collector_out(deb: Path) -> None:
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout
    files = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    for collector_only in ("falkordb", "flask", "geoip2", "geolite2", "waitress", "redis"):
        assert f"site-packages/{collector_only}" not in files.lower(), collector_only
    assert "/opt/net-gazer/bin/net-gazer-collector" not in files
    assert "libpcap0.8" in fields and "python3.11" in fields
    pins = (ROOT / "deploy" / "debian" / "requirements.txt").read_text()
    # Every dependency of the distribution (not its extras) is pinned, and the pin is installed.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sensor_deps = [re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in project["dependencies"]]  # type: ignore[union-attr]
    assert {"grpcio", "protobuf", "pypcap"} <= set(sensor_deps)
    for dist in sensor_deps:
        assert re.search(rf"^{dist}==", pins, re.M), dist
        version = re.search(rf"^{dist}==(\S+)", pins, re.M).group(1)  # type: ignore[union-attr]
        installed = re.sub(r"[-_.]+", "_", dist)  # a .dist-info directory's spelling (PEP 427)
        assert f"site-packages/{installed}-{version}.".lower() in files.lower(), (dist, version)


def test_install_into_a_clean_debian_12(
    deb: Path, debian_root: Path, pristine: dict[str, Any]
) -> None:
    result = apt_install(debian_root, deb)
    # No collector named yet: not enabled, not started, and the operator is told how to finish.
    assert "names no collector" in result.stdout, result.stdout
    assert "systemctl enable --now net-gazer-sensor" in result.stdout
    root = debian_root
    for path in (
        "opt/net-gazer/bin/python3", "opt/net-gazer/bin/net-gazer-sensor",
        "etc/net-gazer/net-gazer.toml", f"lib/systemd/system/{UNIT}",
        "usr/share/man/man8/net-gazer-sensor.8.gz", "usr/share/doc/net-gazer-sensor/copyright",
    ):  # fmt: skip
        assert (root / path).exists(), path
    assert os.readlink(root / "usr/bin/net-gazer-sensor") == "/opt/net-gazer/bin/net-gazer-sensor"
    # The venv runs Debian's python3.11, in the root, not this machine's interpreter.
    assert os.readlink(root / "opt/net-gazer/bin/python3.11") == "/usr/bin/python3.11"
    conffiles = in_root(root, "dpkg-query", "-W", "-f=${Conffiles}", "net-gazer-sensor").stdout
    assert "/etc/net-gazer/net-gazer.toml" in conffiles
    passwd = in_root(root, "getent", "passwd", "net-gazer").stdout.split(":")
    assert int(passwd[2]) < 1000 and passwd[6].strip() in ("/usr/sbin/nologin", "/bin/false")
    assert not (root / "etc/systemd/system/multi-user.target.wants" / UNIT).exists()
    unit = unit_settings((root / "lib/systemd/system" / UNIT).read_text())
    assert (
        unit["User"] == "net-gazer" and unit["AmbientCapabilities"] == "CAP_NET_RAW CAP_NET_ADMIN"
    )
    assert unit["CapabilityBoundingSet"] == "CAP_NET_RAW CAP_NET_ADMIN"
    assert unit["ExecStart"].startswith("/usr/bin/net-gazer-sensor ")
    helped = in_root(root, "net-gazer-sensor", "--help")
    assert "--collector" in helped.stdout
    plugins = in_root(root, "net-gazer-sensor", "--list-plugins").stdout
    for name in ("handshake", "quality", "dpi"):
        assert re.search(rf"^{name}\b", plugins, re.M), plugins
    # Nothing of the collector's comes in with it.
    for module in ("falkordb", "flask", "geoip2"):
        probe = in_root(root, "/opt/net-gazer/bin/python3", "-c", f"import {module}", check=False)
        assert probe.returncode != 0, module


def test_systemd_analyze_verifies_both_units(debian_root: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd is installed on Debian 12"
    # Against the Debian root: the unit's ExecStart is the package's /usr/bin/net-gazer-sensor.
    sensor = subprocess.run(
        [analyze, "verify", f"--root={debian_root}", f"/lib/systemd/system/{UNIT}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert sensor.returncode == 0, sensor.stderr
    # The collector's unit, against the same root with net-gazer-collector where the unit expects
    # it (this tree's; the check is that the unit file is sound), both taken out again after.
    added = [debian_root / "usr/bin/net-gazer-collector",
             debian_root / "lib/systemd/system/net-gazer-collector.service"]  # fmt: skip
    shutil.copy(tool("net-gazer-collector"), added[0])
    shutil.copy(ROOT / "deploy/net-gazer-collector.service", added[1])
    try:
        collector = subprocess.run(
            [analyze, "verify", f"--root={debian_root}",
             "/lib/systemd/system/net-gazer-collector.service"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        for path in added:
            path.unlink()
    assert collector.returncode == 0, collector.stderr


def test_replay_with_the_units_user_and_capabilities_reaches_a_collector(
    debian_root: Path, collector_factory: Any, falkordb_url: str, graph_name: str
) -> None:
    root = debian_root
    unit = unit_settings((root / "lib/systemd/system" / UNIT).read_text())
    caps = ",".join(
        "+" + c.removeprefix("CAP_").lower() for c in unit["AmbientCapabilities"].split()
    )
    bounding = ",".join(
        "+" + c.removeprefix("CAP_").lower() for c in unit["CapabilityBoundingSet"].split()
    )
    setpriv = [
        "setpriv", f"--reuid={unit['User']}", f"--regid={unit['Group']}", "--init-groups",
        f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}", f"--bounding-set=-all,{bounding}",
        *(["--no-new-privs"] if unit.get("NoNewPrivileges") == "yes" else []),
    ]  # fmt: skip
    status = in_root(root, *setpriv, "/opt/net-gazer/bin/python3", "-c",
                     "print(open('/proc/self/status').read())").stdout  # fmt: skip
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    want = (1 << 12) | (1 << 13)  # CAP_NET_ADMIN, CAP_NET_RAW
    assert int(fields["CapEff"], 16) == want and int(fields["CapAmb"], 16) == want, status
    assert int(fields["CapBnd"], 16) == want and fields["NoNewPrivs"].strip() == "1"
    uid = int(in_root(root, "id", "-u", "net-gazer").stdout)
    assert fields["Uid"].split()[0] == str(uid)

    sock_dir = root / "run" / "ng-test"
    sock_dir.mkdir(parents=True)
    sock_dir.chmod(0o755)
    gid = int(in_root(root, "id", "-g", "net-gazer").stdout)
    tokens = root / "tmp" / "tokens"
    tokens.write_text(f"deb-gw {token_digest(TOKEN)}\n")
    token_file = root / "etc" / "net-gazer" / "token"
    token_file.write_text(TOKEN + "\n")
    os.chown(token_file, 0, gid)
    token_file.chmod(0o640)
    shutil.copy(PCAPS / "handshakes.pcap", root / "tmp" / "handshakes.pcap")
    c = collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name,
        "--listen", f"unix:{sock_dir}/collector.sock", "--tokens", str(tokens),
    ).start()  # fmt: skip
    # The collector's socket is 0660, root's; the sensor's group may use it, as a deployment
    # sharing a socket would set it up.
    os.chown(sock_dir / "collector.sock", 0, gid)
    result = in_root(
        root, *setpriv, "net-gazer-sensor", "-c", "/etc/net-gazer/net-gazer.toml",
        "-r", "/tmp/handshakes.pcap", "--collector", "unix:/run/ng-test/collector.sock",
        "--sensor-id", "deb-gw", "--token-file", "/etc/net-gazer/token", "--ack-timeout", "60",
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + c.log_text()[-2000:]
    want_counts = {
        (e["client"], e["server"], e["dport"]): e["count"]
        for e in expected("handshakes.expected.json")
    }
    got = {key: edge["count"] for key, edge in connects(falkordb_url, graph_name).items()}
    assert got == want_counts
    c.stop()
    shutil.rmtree(sock_dir)


def test_upgrade_keeps_the_edited_conffile_and_enables_the_unit(
    deb: Path, debian_root: Path, tmp_path: Path
) -> None:
    root = debian_root
    conf = root / "etc" / "net-gazer" / "net-gazer.toml"
    edited = conf.read_text().replace(
        '#collector = "collector.example.net:50051"', 'collector = "192.0.2.10:50051"'
    )
    assert edited != conf.read_text()
    conf.write_text(edited)
    # A newer version of the same package: repacked with only its version raised.
    tree_dir = tmp_path / "pkg"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree_dir)], check=True)
    control = tree_dir / "DEBIAN" / "control"
    version = re.search(r"^Version: (\S+)$", control.read_text(), re.M).group(1)  # type: ignore[union-attr]
    control.write_text(control.read_text().replace(f"Version: {version}", f"Version: {version}+1"))
    newer = tmp_path / deb.name.replace(f"_{version}_", f"_{version}+1_")
    subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "-b", str(tree_dir), str(newer)],
                   check=True, capture_output=True)  # fmt: skip
    result = apt_install(root, newer)
    assert conf.read_text() == edited
    installed = in_root(root, "dpkg-query", "-W", "-f=${Version}", "net-gazer-sensor").stdout
    assert installed == f"{version}+1"
    # The configuration names a collector now: the package enables the unit (and would start
    # it, but policy-rc.d forbids that here).
    link = root / "etc/systemd/system/multi-user.target.wants" / UNIT
    assert link.is_symlink() and os.readlink(link) == f"/lib/systemd/system/{UNIT}", result.stdout
    assert "names no collector" not in result.stdout
    assert tomllib.loads(conf.read_text())["collector"] == "192.0.2.10:50051"


def test_purge_leaves_the_root_as_it_was(debian_root: Path, pristine: dict[str, Any]) -> None:
    root = debian_root
    (root / "var/lib/net-gazer/spool").mkdir(parents=True)  # as the service would have made it
    (root / "etc" / "net-gazer" / "token").unlink()  # the operator's own file, removed by them
    in_root(root, "apt-get", "purge", "-y", "-q", "net-gazer-sensor")
    assert in_root(root, "getent", "passwd", "net-gazer", check=False).returncode == 2
    assert in_root(root, "getent", "group", "net-gazer", check=False).returncode == 2
    after = tree(root)
    before = pristine["tree"]
    assert {p: k for p, k in after.items() if before.get(p) != k} == {}
    assert {p: k for p, k in before.items() if p not in after} == {}
    for f in ACCOUNT_FILES:
        assert (root / f).read_bytes() == pristine["accounts"][f], f
