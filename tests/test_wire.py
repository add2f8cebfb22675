"""The wire protocol: committed generated code is fresh, and the envelope keeps its contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

from net_gazer.v1 import wire_pb2

GENERATED = (
    "wire_pb2.py",
    "wire_pb2.pyi",
    "wire_pb2_grpc.py",
    "wire_pb2_grpc.pyi",
    "quality_pb2.py",
    "quality_pb2.pyi",
    "udp_pb2.py",
    "udp_pb2.pyi",
)


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    subprocess.run(
        [str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "net_gazer" / "v1" / name).read_bytes()
        committed = (ROOT / "proto" / "net_gazer" / "v1" / name).read_bytes()
        assert fresh == committed, (
            f"proto/net_gazer/v1/{name} is stale: run 'make proto' and commit"
        )


def test_envelope_carries_identity_and_one_body() -> None:
    env = wire_pb2.Envelope(sensor_id="s", epoch="e", seq=7)
    env.hello.hostname = "h"
    env.batch.handshakes.add(client="192.0.2.1")
    # A oneof holds exactly one body: setting the batch cleared the hello.
    assert env.WhichOneof("body") == "batch"
    again = wire_pb2.Envelope.FromString(env.SerializeToString())
    assert (again.sensor_id, again.epoch, again.seq) == ("s", "e", 7)
    assert again.batch.handshakes[0].client == "192.0.2.1"


def test_field_numbers_are_never_reused() -> None:
    """Fields are only ever added. Pin the numbers that sensors in the field already send."""
    pinned = {
        "Envelope": {"sensor_id": 1, "epoch": 2, "seq": 3, "sent_at": 4, "hello": 10, "batch": 11, "gap": 12},
        "Ack": {"epoch": 1, "acked_seq": 2},
        "Gap": {"first_seq": 1, "lost_envelopes": 2, "lost_items": 3, "reason": 4},
        "Batch": {"handshakes": 1, "extensions": 16, "counters": 17},
        "HandshakeRow": {"client": 1, "server": 2, "dport": 3, "completed": 8, "attempts": 9, "refused": 10,
                         "unanswered": 11, "rtt": 12, "client_rtt": 13},
    }  # fmt: skip
    for message, fields in pinned.items():
        descriptor = getattr(wire_pb2, message).DESCRIPTOR
        for name, number in fields.items():
            assert descriptor.fields_by_name[name].number == number, f"{message}.{name}"
