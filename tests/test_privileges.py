"""Least privilege, for real: a sensor started as root in a namespace becomes nobody with only
CAP_NET_RAW and CAP_NET_ADMIN, and goes on capturing and delivering.

The sensor runs on Debian's /usr/bin/python3 with the project's site-packages added, as a .deb
install would: this machine's own interpreter lives under /root, which nobody cannot enter, and
the test must show the sensor needs nothing more after the drop.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import PCAPS, Collector, connects, expected
from netns import Lab
from test_e2e import assert_graph_matches
from test_live import start_collector, wait_for
from test_spool import plant

pytestmark = pytest.mark.root

SYSTEM_PYTHON = "/usr/bin/python3"
LAUNCH = (
    "import site, sys; site.addsitedir({site!r}); from net_gazer.sensor.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)
KEEP_MASK = (1 << 12) | (1 << 13)  # CAP_NET_ADMIN, CAP_NET_RAW


def status_of(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def test_root_sensor_drops_to_nobody_with_two_capabilities(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "needs root; CI runs as root"
    assert Path(SYSTEM_PYTHON).exists(), "Debian's python3 is part of the base system"
    packages = next(p for p in site.getsitepackages() if p.startswith(sys.prefix))
    spool = Path(tempfile.mkdtemp(prefix="ng-spool-"))
    os.chmod(spool, 0o755)  # the parent is /tmp; nobody must reach its own spool
    try:
        with Lab() as lab:
            ns = lab.ns("priv")
            lab.tcp_server(ns, "127.0.0.1", 8082)
            port, url = start_collector(lab, ns, tmp_path)
            log = tmp_path / "sensor.log"
            sensor = lab.popen(
                ns, SYSTEM_PYTHON, "-c", LAUNCH.format(site=packages), "-i", "lo", "--user", "nobody",
                "--spool-dir", str(spool), "--collector", f"127.0.0.1:{port}", "--sensor-id", "priv",
                "--flush-interval", "0.2", "-v", log=log,
            )  # fmt: skip
            wait_for(log, "connected to collector", sensor)
            status = status_of(sensor.pid)
            assert status["Uid"].split() == ["65534"] * 4, status["Uid"]
            assert status["Gid"].split() == ["65534"] * 4, status["Gid"]
            assert status["Groups"] == ""
            for key in ("CapEff", "CapPrm", "CapBnd"):
                assert int(status[key], 16) == KEEP_MASK, f"{key} {status[key]}"
            assert int(status["CapInh"], 16) == 0 and int(status["CapAmb"], 16) == 0
            assert status["NoNewPrivs"] == "1"
            assert "running as nobody with only CAP_NET_RAW and CAP_NET_ADMIN" in log.read_text()
            # It still captures and delivers, and its spool belongs to nobody now.
            lab.connect(ns, "127.0.0.1", 8082, 4)
            time.sleep(0.3)
            assert lab.stop(sensor) == 0, log.read_text()
            edges = connects(url, "net_gazer")
            assert edges[("127.0.0.1", "127.0.0.1", 8082)]["count"] == 4
            spool_dir = spool / "priv"
            assert spool_dir.stat().st_uid == 65534
    finally:
        shutil.rmtree(spool, ignore_errors=True)


# -- a spool the sensor's user controls ---------------------------------------------------------

NOBODY = 65534


def root_replay(spool: Path, collector: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """A replay started as root that becomes nobody: the same start-up steps as a live root
    start (open the spool, hand it over, drop), on Debian's python like test above."""
    packages = next(p for p in site.getsitepackages() if p.startswith(sys.prefix))
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", LAUNCH.format(site=packages), "-r", str(PCAPS / "handshakes.pcap"),
         "--user", "nobody", "--spool-dir", str(spool), "--sensor-id", "planted",
         "--collector", collector, "--ack-timeout", "60", *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_root_start_follows_no_link_planted_in_the_spool(
    tmp_path: Path, collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    """The spool belongs to nobody (as after an earlier root start), and nobody has planted links
    from every name the spool uses to root's files. A root start reads, writes and hands over the
    spool: every target keeps its owner (root) and its content, and the sensor still delivers."""
    assert os.geteuid() == 0, "needs root; CI runs as root"
    base = Path(tempfile.mkdtemp(prefix="ng-spool-"))
    try:
        os.chmod(base, 0o755)
        directory = base / "planted"
        planted = plant(directory, tmp_path / "root-files")
        for entry in [directory, *directory.iterdir()]:
            os.lchown(entry, NOBODY, NOBODY)  # nobody made them
        os.chmod(directory, 0o750)
        result = root_replay(base, collector.address, "-v")
        assert result.returncode == 0, result.stderr
        assert "running as nobody with only CAP_NET_RAW and CAP_NET_ADMIN" in result.stderr
        for target, content in planted.items():
            st = target.stat()
            assert (st.st_uid, st.st_gid) == (0, 0), f"{target} was handed to uid {st.st_uid}"
            assert target.read_bytes() == content, f"{target} was written through a link"
        assert directory.stat().st_uid == NOBODY
        assert (directory / "lock").stat().st_uid == NOBODY, "the spool's own files are handed over"
        assert_graph_matches(falkordb_url, graph_name, expected("handshakes.expected.json"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("other-owner", "belongs to uid 12345, neither root nor nobody"),
        ("world-writable", "is writable by other users (mode 0777); run chmod go-w on it"),
        ("linked-parent", "goes through the symbolic link"),
    ],
)
def test_root_start_refuses_a_spool_with_the_wrong_owner_mode_or_path(
    tmp_path: Path, setup: str, message: str
) -> None:
    assert os.geteuid() == 0, "needs root; CI runs as root"
    base = Path(tempfile.mkdtemp(prefix="ng-spool-"))
    try:
        os.chmod(base, 0o755)
        spool = base
        victim = tmp_path / "victim"
        victim.mkdir()
        (victim / "keep").write_text("root's\n")
        if setup == "other-owner":
            (base / "planted").mkdir(mode=0o750)
            os.chown(base / "planted", 12345, 12345)
        elif setup == "world-writable":
            (base / "planted").mkdir()
            os.chmod(base / "planted", 0o777)
        else:  # nobody owns the state directory and swaps the spool for a link to root's files
            state = base / "state"
            state.mkdir(mode=0o750)
            (state / "spool").symlink_to(victim)
            os.lchown(state / "spool", NOBODY, NOBODY)
            os.chown(state, NOBODY, NOBODY)
            (victim / "planted").mkdir(mode=0o750)
            spool = state / "spool"
        result = root_replay(spool, "127.0.0.1:1", "--ack-timeout", "1")
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if "net-gazer-sensor: " in line]
        assert len(errors) == 1 and errors[0].startswith("net-gazer-sensor: "), result.stderr
        assert message in errors[0] and "Traceback" not in result.stderr, result.stderr
        for path in [victim, *victim.rglob("*")]:
            assert path.stat().st_uid == 0, path
    finally:
        shutil.rmtree(base, ignore_errors=True)


CAPSET_CHILD = """
import collections, os
Uname = collections.namedtuple("Uname", "sysname nodename release version machine")
os.uname = lambda: Uname("Linux", "arm", "6.1", "#1", "armv7l")
from net_gazer.sensor import privileges
privileges._capset(privileges.KEEP_MASK)
print(privileges.capabilities()["CapEff"], privileges.capabilities()["CapPrm"])
"""


def test_capset_does_not_depend_on_the_machine_name_with_a_faked_uname() -> None:
    """The capability drop must not pick a syscall number by machine name (91 is capset on
    aarch64 but fchmod on x86_64 and munmap on 32-bit ARM). The child process claims to be an
    ARM machine through a faked os.uname (this one is x86_64; no ARM machine runs here): the
    drop must still leave exactly the two capabilities."""
    assert os.geteuid() == 0, "needs root; CI runs as root"
    child = subprocess.run(
        [sys.executable, "-c", CAPSET_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [str(KEEP_MASK)] * 2
