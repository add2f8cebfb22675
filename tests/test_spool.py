"""The spool under the ways it gets hurt in the field: restored from an older copy, shared by two
sensor processes, a damaged state file, a crash in the middle of an epoch change, links planted by
the sensor's own user.

End-to-end tests run real ``net-gazer-sensor`` processes against a real collector and FalkorDB and
check the graph against the pcaps' expected edges (from tshark), exactly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import PCAPS, Collector, expected, graph_query, run_sensor, tool
from test_e2e import assert_graph_matches
from test_live import wait_for

from net_gazer.errors import UserError
from net_gazer.sensor.spool import Spool
from net_gazer.sensor.transport import Outbox
from net_gazer.v1 import wire_pb2

UNREACHABLE = "127.0.0.1:1"  # connection refused at once
HANDSHAKES = expected("handshakes.expected.json")


def spool_files(directory: Path) -> list[wire_pb2.Envelope]:
    """The envelopes in a spool directory, read independently of the Spool class."""
    out = []
    for path in sorted(directory.glob("*.env")):
        data = path.read_bytes()
        assert zlib.crc32(data[:-4]).to_bytes(4, "big") == data[-4:], path
        out.append(wire_pb2.Envelope.FromString(data[:-4]))
    return out


def replay(spool: Path, sensor_id: str, collector: str, pcap: str = "handshakes") -> str:
    """One replay of a pcap into the spool; returns stderr. An unreachable collector leaves
    everything in the spool (exit 1); a real one gets everything (exit 0)."""
    result = run_sensor(
        "-r", str(PCAPS / f"{pcap}.pcap"), "--spool-dir", str(spool), "--sensor-id", sensor_id,
        "--collector", collector, "--ack-timeout", "1" if collector == UNREACHABLE else "60", "-v",
    )  # fmt: skip
    assert result.returncode == (1 if collector == UNREACHABLE else 0), result.stderr
    return result.stderr


def sensor_node(url: str, graph: str, sensor_id: str) -> dict[str, object]:
    [[epoch, acked, gaps, lost]] = graph_query(
        url,
        graph,
        "MATCH (s:Sensor {id: $id}) RETURN s.epoch, s.acked_seq, s.gaps, s.lost_envelopes",
        {"id": sensor_id},
    )
    return {"epoch": epoch, "acked_seq": acked, "gaps": gaps, "lost_envelopes": lost}


# -- 1. a spool restored from an older copy ---------------------------------------------------------


def test_spool_restored_from_an_older_point_of_its_epoch_loses_nothing(
    tmp_path: Path, collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    """A VM snapshot of the spool is taken while it holds the first replay's batches; the
    original delivers them and a second replay in the same epoch; then the snapshot comes back
    and a third replay runs on it. Its batches reuse seqs the collector already applied: the
    sensor must notice, move to a new epoch, and deliver them. Every replay counts once."""
    spool = tmp_path / "spool"
    replay(spool, "snap", UNREACHABLE)  # 3 batches wait in the spool, epoch E
    envs = spool_files(spool / "snap")
    epoch = envs[0].epoch
    assert [e.seq for e in envs] == [1, 2, 3] and {e.epoch for e in envs} == {epoch}
    snapshot = tmp_path / "snapshot"
    shutil.copytree(spool, snapshot)

    out = replay(spool, "snap", collector.address)  # resumes E: delivers 1..3, then 4..6
    assert f"resuming epoch {epoch}" in out
    assert sensor_node(falkordb_url, graph_name, "snap")["acked_seq"] == 6
    assert not spool_files(spool / "snap")

    shutil.rmtree(spool)
    shutil.copytree(snapshot, spool)  # the VM is rolled back: E with 1..3 waiting
    out = replay(spool, "snap", collector.address)
    assert "older copy of itself" in out, out
    assert not spool_files(spool / "snap"), "everything delivered"

    # handshakes.pcap three times, each exactly once: no batch lost, none doubled.
    assert_graph_matches(falkordb_url, graph_name, HANDSHAKES, factor=3)
    node = sensor_node(falkordb_url, graph_name, "snap")
    assert node["epoch"] != epoch and node["gaps"] == 0 and node["lost_envelopes"] == 0
    assert node["acked_seq"] == 3, "the copy's own 3 batches, re-stamped into the new epoch"


def test_new_epoch_is_kept_by_the_spool(tmp_path: Path) -> None:
    """The epoch change re-stamps the spool too: a restart after it resumes the new epoch with
    the re-stamped envelopes, in order, with their contents."""
    spool = Spool(tmp_path / "s", "fork")
    outbox = Outbox.open("fork", 100, max_bytes=1 << 30, spool=spool)
    for i in range(3):
        outbox.add(wire_pb2.Batch(counters={"i": i}))
    spool.close()
    spool = Spool(tmp_path / "s", "fork")
    outbox = Outbox.open("fork", 100, max_bytes=1 << 30, spool=spool)  # inherits 1..3
    old = outbox.epoch
    for i in range(3, 5):
        outbox.add(wire_pb2.Batch(counters={"i": i}))  # seqs 4, 5: cut by this run
    assert outbox.reconcile(7), "a mark past anything sent starts a new epoch"
    assert outbox.epoch != old
    assert [(e.epoch, e.seq, e.batch.counters["i"]) for e in outbox.pending] == [
        (outbox.epoch, 1, 3),
        (outbox.epoch, 2, 4),
    ]
    assert outbox.stats.forks == 1 and outbox.stats.fork_skipped == 3
    spool.close()
    again = Outbox.open("fork", 100, max_bytes=1 << 30, spool=Spool(tmp_path / "s", "fork"))
    assert again.epoch == outbox.epoch
    assert [(e.seq, e.batch.counters["i"]) for e in again.pending] == [(1, 3), (2, 4)]
    # An ordinary mark starts nothing new.
    assert not again.reconcile(0) and again.epoch == outbox.epoch


RESTAMP_CHILD = """
import os, sys
from pathlib import Path
from net_gazer.sensor.spool import Spool
steps = 0
def crash_at_step(spool):
    global steps
    steps += 1
    if steps >= int(sys.argv[2]):
        os._exit(97)  # a crash right after this step: no cleanup of any kind
Spool._step = crash_at_step
from net_gazer.sensor.transport import Outbox
from net_gazer.v1 import wire_pb2
outbox = Outbox.open("crash", 100, max_bytes=1 << 30, spool=Spool(Path(sys.argv[1]), "crash"))
for i in range(3, 6):
    outbox.add(wire_pb2.Batch(counters={"i": i}))
outbox.reconcile(10)
"""


def test_a_crash_at_any_step_of_an_epoch_change_leaves_one_whole_set(tmp_path: Path) -> None:
    """A sensor process is killed at each file system step of the epoch change in turn (fault
    injection, a real exit); the next start finds either the old epoch with all six envelopes
    or the new one with the three re-stamped ones, never a mix and never fewer."""
    steps = 0
    outcomes = set()
    while True:
        steps += 1
        directory = tmp_path / f"s{steps}"
        spool = Spool(directory, "crash")
        seed = Outbox.open("crash", 100, max_bytes=1 << 30, spool=spool)
        for i in range(3):
            seed.add(wire_pb2.Batch(counters={"i": i}))
        old = seed.epoch
        spool.close()
        child = subprocess.run(
            [sys.executable, "-c", RESTAMP_CHILD, str(directory), str(steps)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode in (0, 97), child.stderr
        resumed = Spool(directory, "crash")
        epoch, envs = resumed.load()
        resumed.close()
        got = [(e.seq, e.batch.counters["i"]) for e in envs]
        if epoch == old:
            assert got == [(i + 1, i) for i in range(6)], f"step {steps}: {got}"
            outcomes.add("old")
        else:
            assert got == [(1, 3), (2, 4), (3, 5)], f"step {steps}: {got}"
            assert {e.epoch for e in envs} == {epoch}
            outcomes.add("new")
        assert not list(directory.glob("*.tmp")) and not (directory / "restamp.journal").exists()
        if child.returncode == 0:
            break
    assert outcomes == {"old", "new"} and steps > 5, f"{steps} steps, {outcomes}"


# -- 2. two sensors on one spool --------------------------------------------------------------------


def test_second_sensor_on_a_spool_in_use_is_refused_and_the_first_goes_on(
    tmp_path: Path, collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    spool = tmp_path / "spool"
    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen(
            [tool("net-gazer-sensor"), "-r", str(PCAPS / "sample.pcap"), "--speed", "15",
             "--spool-dir", str(spool), "--sensor-id", "twin", "--collector", collector.address,
             "--ack-timeout", "60", "-v"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(log, "connected to collector", first)
        second = run_sensor(
            "-r", str(PCAPS / "handshakes.pcap"), "--spool-dir", str(spool), "--sensor-id", "twin",
            "--collector", collector.address, "--ack-timeout", "5",
        )  # fmt: skip
        assert second.returncode != 0
        message = second.stderr.strip()
        assert message.count("\n") == 0, message
        assert "in use by another sensor process" in message
        assert f"(pid {first.pid})" in message
        assert first.wait(120) == 0, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert_graph_matches(falkordb_url, graph_name, expected("sample.expected.json"))
    node = sensor_node(falkordb_url, graph_name, "twin")
    assert node["gaps"] == 0
    # Once the first is gone, the spool is free again.
    replay(spool, "twin", UNREACHABLE)


def test_the_lock_is_released_with_the_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path / "s", "one")
    with pytest.raises(UserError, match="in use by another sensor process"):
        Spool(tmp_path / "s", "one")
    first.close()
    Spool(tmp_path / "s", "one").close()


# -- 3. the state file ------------------------------------------------------------------------------


def test_damaged_state_file_loses_no_envelope(
    tmp_path: Path, collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    """The spool holds three batches when its state.json gets damaged (and a stale temporary
    one lies next to it); the next sensor run still delivers all of them."""
    spool = tmp_path / "spool"
    replay(spool, "damaged", UNREACHABLE)
    waiting = spool_files(spool / "damaged")
    assert len(waiting) == 3
    (spool / "damaged" / "state.json").write_bytes(b'{"sensor_id": "damaged", "epo\xff\x00')
    (spool / "damaged" / "state.json.tmp").write_bytes(b"{")
    out = replay(spool, "damaged", collector.address)
    assert f"resuming epoch {waiting[0].epoch}" in out, out
    assert_graph_matches(falkordb_url, graph_name, HANDSHAKES, factor=2)
    node = sensor_node(falkordb_url, graph_name, "damaged")
    assert node["epoch"] == waiting[0].epoch and node["acked_seq"] == 6 and node["gaps"] == 0


def test_damaged_and_missing_envelope_files_become_a_counted_gap(tmp_path: Path) -> None:
    """One envelope file damaged, one deleted: the others are kept, and the hole is announced
    as a gap (so the collector counts it, rather than refusing the seq after it forever)."""
    spool = Spool(tmp_path / "s", "holes")
    outbox = Outbox.open("holes", 100, max_bytes=1 << 30, spool=spool)
    for i in range(6):
        outbox.add(wire_pb2.Batch(counters={"i": i}))
    spool.close()
    (tmp_path / "s" / f"{2:020d}.env").write_bytes(b"\x0a\x03abc-not-an-envelope")
    (tmp_path / "s" / f"{3:020d}.env").unlink()
    _, envs = (reopened := Spool(tmp_path / "s", "holes")).load()
    reopened.close()
    assert [e.seq for e in envs] == [1, 3, 4, 5, 6]
    gap = envs[1]
    assert gap.HasField("gap") and (gap.gap.first_seq, gap.gap.lost_envelopes) == (2, 2)
    assert [e.batch.counters["i"] for e in envs if e.HasField("batch")] == [0, 3, 4, 5]
    assert [e.seq for e in spool_files(tmp_path / "s")] == [1, 3, 4, 5, 6], "the gap is spooled"


# -- 7. links planted in the spool ------------------------------------------------------------------


def plant(directory: Path, targets: Path) -> dict[Path, bytes]:
    """Links from every name the spool uses to files outside it; returns target -> content."""
    directory.mkdir(parents=True, exist_ok=True)
    targets.mkdir(exist_ok=True)
    planted = {}
    names = [
        "state.json", "state.json.tmp", "lock", f"{1:020d}.env", f"{1:020d}.tmp",
        f"{2:020d}.tmp", "restamp.tmp", "restamp.journal", "notes",
    ]  # fmt: skip
    for i, name in enumerate(names):
        target = targets / f"target-{i}"
        target.write_bytes(f"secret {i}\n".encode())
        target.chmod(0o600)
        (directory / name).symlink_to(target)
        planted[target] = target.read_bytes()
    return planted


def test_spool_never_follows_links_planted_in_it(tmp_path: Path) -> None:
    """Links named like the spool's files, and a FIFO named like an envelope: opening, loading,
    writing, acknowledging and an epoch change touch none of their targets and never block.
    Links are planted before the spool opens, and again once it is open (a sensor user racing
    a root start)."""
    directory = tmp_path / "spool"
    planted = plant(directory, tmp_path / "outside")
    os.mkfifo(directory / f"{3:020d}.env")
    spool = Spool(directory, "linked")
    outbox = Outbox.open("linked", 100, max_bytes=1 << 30, spool=spool)
    assert not outbox.pending
    for i, name in enumerate([f"{n:020d}.tmp" for n in (1, 2, 3)] + ["state.json.tmp"]):
        target = tmp_path / "outside" / f"late-{i}"
        target.write_bytes(b"late secret\n")
        (directory / name).symlink_to(target)
        planted[target] = target.read_bytes()
    for i in range(3):
        outbox.add(wire_pb2.Batch(counters={"i": i}))
    outbox.ack(1)
    outbox.reconcile(9)  # an epoch change, through the journal
    spool.close()
    for target, content in planted.items():
        assert target.read_bytes() == content, target
    assert not (directory / "notes").exists() or (directory / "notes").is_symlink()
    assert not (directory / "lock").is_symlink()
    assert [e.seq for e in spool_files(directory)] == [1, 2]


def test_spool_refuses_a_directory_others_can_write(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(UserError, match=r"writable by other users \(mode 0777\); run chmod go-w"):
        Spool(directory, "x")
