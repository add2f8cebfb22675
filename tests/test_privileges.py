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
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import connects
from netns import Lab
from test_live import start_collector, wait_for

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
