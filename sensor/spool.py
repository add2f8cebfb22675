"""The on-disk spool: unacknowledged envelopes survive a collector outage and a sensor restart.

Layout of the spool directory::

    state.json            {"sensor_id": ..., "epoch": ...}   the epoch kept with the spool
    00000000000000000042.env   one serialized Envelope per file, named by seq

Each envelope is written to a temporary file, fsynced and renamed into place, so a crash leaves
either the whole envelope or nothing; a CRC-32 trailer catches what the disk itself damaged
(protobuf alone would parse many truncations as a different, valid message). Acknowledged envelopes are deleted. At start the sensor
reuses the spool's epoch when envelopes are waiting in it, and continues that epoch's seq: the
collector then skips what it already applied and takes the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
import zlib
from pathlib import Path

from google.protobuf.message import DecodeError

from net_gazer.errors import UserError
from net_gazer.v1 import wire_pb2

log = logging.getLogger(__name__)

SUFFIX = ".env"


class Spool:
    def __init__(self, directory: Path, sensor_id: str) -> None:
        self.dir = directory
        self.sensor_id = sensor_id
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise UserError(
                f"cannot create the spool directory {directory}: {exc.strerror}; choose another with --spool-dir"
            ) from None
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise UserError(
                f"the spool directory {directory} is not writable; choose another with --spool-dir"
            )
        self.bytes = 0

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:020d}{SUFFIX}"

    def load(self) -> tuple[str, list[wire_pb2.Envelope]]:
        """The epoch to use and the envelopes still waiting, in seq order.

        A spool of another sensor id, or an empty one, starts a fresh epoch. Damaged or foreign
        files are removed (and logged); nothing in the directory can stop the sensor starting.
        """
        envelopes: list[wire_pb2.Envelope] = []
        epoch = ""
        try:
            state = json.loads((self.dir / "state.json").read_text())
            if isinstance(state, dict) and state.get("sensor_id") == self.sensor_id:
                candidate = state.get("epoch")
                epoch = candidate if isinstance(candidate, str) and candidate.isprintable() else ""
        except (OSError, ValueError):
            pass
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            if not path.is_file() or path.is_symlink():
                log.warning("%s in the spool is not a regular file; ignored", path)
                continue
            env = self._read(path)
            if env is None or env.sensor_id != self.sensor_id or env.epoch != epoch or not epoch:
                path.unlink(missing_ok=True)  # damaged, or another sensor's or epoch's leftovers
                continue
            envelopes.append(env)
            self.bytes += env.ByteSize()
        for tmp in self.dir.glob("*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
        if not envelopes:
            epoch = uuid.uuid4().hex
        self._write_state(epoch)
        if envelopes:
            log.warning(
                "resuming epoch %s from the spool in %s: %d batches (seq %d..%d) still to deliver",
                epoch, self.dir, len(envelopes), envelopes[0].seq, envelopes[-1].seq,
            )  # fmt: skip
        return epoch, envelopes

    def _read(self, path: Path) -> wire_pb2.Envelope | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        payload, trailer = data[:-4], data[-4:]
        if len(data) < 5 or zlib.crc32(payload).to_bytes(4, "big") != trailer:
            log.warning("spool file %s is damaged (checksum); removed", path)
            return None
        try:
            env = wire_pb2.Envelope.FromString(payload)
        except DecodeError:
            log.warning("spool file %s does not parse; removed", path)
            return None
        named = path.name.removesuffix(SUFFIX)
        if not named.isdigit() or env.seq != int(named) or env.seq < 1:
            return None
        if not env.HasField("batch") and not env.HasField("gap"):
            return None
        return env

    def _write_state(self, epoch: str) -> None:
        if (self.dir / "state.json").is_dir():
            raise UserError(
                f"{self.dir / 'state.json'} is a directory, not the spool's state file; remove it"
            )
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps({"sensor_id": self.sensor_id, "epoch": epoch}))
        os.replace(tmp, self.dir / "state.json")

    def put(self, env: wire_pb2.Envelope) -> None:
        payload = env.SerializeToString()
        data = payload + zlib.crc32(payload).to_bytes(4, "big")
        path = self._path(env.seq)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self.bytes += len(payload)

    def remove(self, env: wire_pb2.Envelope) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(env.seq).unlink()
            self.bytes -= env.ByteSize()

    def sync(self) -> None:
        """Make renames and deletions durable (fsync the directory)."""
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
