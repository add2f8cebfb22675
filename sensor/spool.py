"""The on-disk spool: unacknowledged envelopes survive a collector outage, a sensor restart and a
power cut.

Layout of the spool directory (one per sensor id)::

    lock                          flock()ed by the sensor process using the spool
    00000000000000000042.env      one serialized Envelope per file, named by its seq, CRC-32 trailer
    restamp.journal               only while the spool moves to a new epoch (see below)

**Why files, and no state file.** Every envelope already carries its sensor id and epoch, so the
envelopes *are* the spool's state: at start the epoch is the one the waiting envelopes carry, and
an empty spool starts a fresh epoch. There is no ``state.json`` to damage or to lose (one from an
older version is removed unread, and its loss deletes nothing). Per-envelope files keep damage
local: a file whose CRC fails costs that one envelope, and it is announced as a gap, where damage
to a database file could cost all of them. Files also let every access go through one directory
descriptor with ``O_NOFOLLOW`` (:mod:`~net_gazer.sensor.safepath`), which SQLite cannot promise
for its own journal and lock files. SQLite would have been simpler only for the one multi-file
change, the epoch change, and one journal file covers that.

**Durability.** An envelope is written to a ``.tmp`` file (``O_EXCL``), fsynced, renamed into
place, and the directory is fsynced, all before it is sent: a power cut leaves the whole envelope
or none, and never one the collector has but the spool lost. Acknowledged envelopes are deleted.

**Epoch change** (:meth:`Spool.restamp`, when the collector knows more of this epoch than the
spool could have sent; see ``transport.py``): the complete new set is written to
``restamp.journal`` (fsynced, then renamed into place: the commit), then the ``.env`` files are
replaced by it, then the journal goes. A crash before the commit leaves the old set; after it,
the next start finds the journal and finishes the change.

**At start** (:meth:`Spool.load`) damaged files, other sensors' envelopes and ``.tmp`` leftovers
are removed and logged; envelopes superseded by a later gap (a crash while the buffer folded its
oldest envelopes into one) are removed; a hole in the seqs (a file damaged or deleted) becomes a
gap envelope, so the collector counts the loss instead of refusing the seq after it forever.

**Safety.** The directory is opened without following links, must not be writable by group or
others, and (unless we are root) must belong to us. Nothing in it is ever opened through a link,
written in place, or read when it is not a regular file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import time
import uuid
import zlib
from collections.abc import Iterable
from pathlib import Path

from google.protobuf.message import DecodeError

from net_gazer.errors import UserError
from net_gazer.sensor import safepath
from net_gazer.v1 import wire_pb2

log = logging.getLogger(__name__)

SUFFIX = ".env"
TMP_SUFFIX = ".tmp"
LOCK = "lock"
JOURNAL = "restamp.journal"
JOURNAL_MAGIC = b"net-gazer restamp 1\n"
LEGACY = ("state.json", "state.json.tmp")
#: Largest spool file read: one gRPC message (transport.MAX_MESSAGE) and its CRC.
MAX_FILE = 64 * 1024 * 1024 + 4
O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def record(payload: bytes) -> bytes:
    """A spool file's bytes: the serialized envelope, then its CRC-32, big-endian."""
    return payload + zlib.crc32(payload).to_bytes(4, "big")


def _name(seq: int) -> str:
    return f"{seq:020d}{SUFFIX}"


def first_seq(env: wire_pb2.Envelope) -> int:
    """The first seq an envelope accounts for: a gap's first lost seq, else its own."""
    return env.gap.first_seq if env.HasField("gap") else env.seq


class Spool:
    """One sensor's spool directory, locked for this process while the object is open."""

    def __init__(self, directory: Path, sensor_id: str) -> None:
        self.dir = directory
        self.sensor_id = sensor_id
        self.bytes = 0
        try:
            self._fd = safepath.open_directory(directory, create_mode=0o750)
        except safepath.UnsafeLink as exc:
            raise UserError(
                f"the spool path {directory} goes through the symbolic link {exc.path}, which a "
                "user other than root can change; give --spool-dir a path without it"
            ) from None
        except OSError as exc:
            raise UserError(
                f"cannot create the spool directory {directory}: {exc.strerror}; choose another with --spool-dir"
            ) from None
        self._lock_fd = -1
        try:
            self._check()
            self._lock()
        except BaseException:
            os.close(self._fd)
            raise

    # -- opening -------------------------------------------------------------------------------
    def _check(self) -> None:
        st = os.fstat(self._fd)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UserError(
                f"the spool directory {self.dir} is writable by other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); run chmod go-w on it"
            )
        euid = os.geteuid()
        if euid not in (0, st.st_uid):
            raise UserError(
                f"the spool directory {self.dir} belongs to uid {st.st_uid}, not to this user; "
                "chown it or choose another with --spool-dir"
            )
        self.owner = st.st_uid

    def _ours(self, st: os.stat_result) -> bool:
        """A regular file with one name, made by us or the spool's owner (not a hard link to
        someone else's file)."""
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_nlink == 1
            and st.st_uid in (0, os.geteuid(), self.owner)
        )

    def _lock(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = -1
        for _ in range(3):
            try:
                fd = os.open(LOCK, flags, 0o640, dir_fd=self._fd)
            except PermissionError as exc:
                raise UserError(
                    f"cannot open {self.dir / LOCK} for writing ({exc.strerror}); give the spool "
                    "directory and its files to this user, or choose another with --spool-dir"
                ) from None
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EWOULDBLOCK):
                    raise UserError(
                        f"cannot open the lock file in {self.dir}: {exc.strerror}; choose another --spool-dir"
                    ) from None
                self._replace_odd(LOCK)
                continue
            if self._ours(os.fstat(fd)):
                break
            os.close(fd)
            fd = -1
            self._replace_odd(LOCK)
        if fd < 0:
            raise UserError(f"{self.dir / LOCK} is not a plain file the sensor can lock; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise UserError(
                f"the spool {self.dir} is in use by another sensor process"
                + (f" (pid {pid})" if pid.isdigit() else "")
                + "; stop it, or give this sensor its own --sensor-id or --spool-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _replace_odd(self, name: str) -> None:
        """Remove an entry that is not ours to open (a link, a FIFO, a hard link)."""
        log.warning("%s in the spool is not a plain file of the sensor's; removed", self.dir / name)
        try:
            os.unlink(name, dir_fd=self._fd)
        except IsADirectoryError:
            raise UserError(f"{self.dir / name} is a directory; remove it") from None
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Release the lock (a restarted sensor, or a test, may then open the spool again)."""
        for fd in (self._lock_fd, self._fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lock_fd = self._fd = -1

    # -- reading -------------------------------------------------------------------------------
    def _read_file(self, name: str) -> bytes | None:
        """The bytes of a regular file of ours, or None (a link, a FIFO, a directory, too big)."""
        try:
            fd = os.open(name, safepath.O_LOOK, dir_fd=self._fd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not self._ours(st) or st.st_size > MAX_FILE:
                return None
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _decode(self, data: bytes, name: str) -> wire_pb2.Envelope | None:
        payload, trailer = data[:-4], data[-4:]
        if len(data) < 5 or zlib.crc32(payload).to_bytes(4, "big") != trailer:
            log.warning("spool file %s is damaged (checksum); removed", self.dir / name)
            return None
        try:
            env = wire_pb2.Envelope.FromString(payload)
        except DecodeError:
            log.warning("spool file %s does not parse; removed", self.dir / name)
            return None
        return env

    def _valid(self, env: wire_pb2.Envelope) -> bool:
        return (
            env.sensor_id == self.sensor_id
            and bool(env.epoch)
            and env.epoch.isprintable()
            and env.seq >= 1
            and (
                env.HasField("batch") or (env.HasField("gap") and 1 <= env.gap.first_seq <= env.seq)
            )
        )

    def _unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(name, dir_fd=self._fd)

    def load(self) -> tuple[str, list[wire_pb2.Envelope]]:
        """The epoch to use and the envelopes still waiting, in seq order.

        Nothing in the directory can stop the sensor starting: what is damaged, foreign or odd is
        removed and logged (see the module docstring).
        """
        names = os.listdir(self._fd)
        for name in names:
            if name in LEGACY or name.endswith(TMP_SUFFIX):
                self._unlink(name)  # unlink never follows a link: it removes the link itself
        if JOURNAL in names:
            journal = self._read_journal()
            if journal is not None:
                log.warning("finishing the interrupted move of %s to a new epoch", self.dir)
                self._replace_all(journal)
            self._unlink(JOURNAL)
            self.sync()
            names = os.listdir(self._fd)
        by_epoch: dict[str, list[wire_pb2.Envelope]] = {}
        for name in sorted(n for n in names if n.endswith(SUFFIX)):
            data = self._read_file(name)
            if data is None:
                log.warning(
                    "%s in the spool is not a plain file of the sensor's; removed", self.dir / name
                )
                self._unlink(name)
                continue
            env = self._decode(data, name)
            if env is None or not self._valid(env) or name != _name(env.seq):
                if env is not None:
                    log.warning(
                        "spool file %s holds another sensor's or a misnumbered envelope; removed",
                        self.dir / name,
                    )
                self._unlink(name)
                continue
            by_epoch.setdefault(env.epoch, []).append(env)
        if not by_epoch:
            self.sync()
            return uuid.uuid4().hex, []
        epoch = max(by_epoch, key=lambda e: max(env.sent_at for env in by_epoch[e]))
        for other, envs in by_epoch.items():
            if other != epoch:  # only when something outside the sensor mixed spools
                log.error(
                    "the spool %s also holds %d envelopes of an older epoch %s; removed",
                    self.dir, len(envs), other,
                )  # fmt: skip
                for env in envs:
                    self._unlink(_name(env.seq))
        envelopes = self._mend(by_epoch[epoch])
        self.sync()
        self.bytes = sum(e.ByteSize() for e in envelopes)
        log.warning(
            "resuming epoch %s from the spool in %s: %d batches (seq %d..%d) still to deliver",
            epoch, self.dir, len(envelopes), envelopes[0].seq, envelopes[-1].seq,
        )  # fmt: skip
        return epoch, envelopes

    def _mend(self, envs: list[wire_pb2.Envelope]) -> list[wire_pb2.Envelope]:
        """Drop envelopes a later gap covers; turn holes into gap envelopes."""
        kept: list[wire_pb2.Envelope] = []
        for env in envs:  # in seq order
            while kept and kept[-1].seq >= first_seq(env):
                self._unlink(_name(kept.pop().seq))  # folded into this gap before a crash
            kept.append(env)
        out: list[wire_pb2.Envelope] = []
        for env in kept:
            if out and first_seq(env) > out[-1].seq + 1:
                start, end = out[-1].seq + 1, first_seq(env) - 1
                hole = wire_pb2.Envelope(
                    sensor_id=self.sensor_id, epoch=env.epoch, seq=end, sent_at=time.time()
                )
                hole.gap.first_seq = start
                hole.gap.lost_envelopes = end - start + 1
                hole.gap.reason = "spool files were damaged or missing"
                log.error(
                    "spool %s misses seqs %d..%d (damaged or deleted files); announcing them as a gap",
                    self.dir, start, end,
                )  # fmt: skip
                self._write(hole)
                out.append(hole)
            out.append(env)
        return out

    # -- writing -------------------------------------------------------------------------------
    def _write(self, env: wire_pb2.Envelope, name: str | None = None) -> int:
        """Write ``env`` to its file through a fresh ``.tmp`` file: fsynced, then renamed."""
        payload = env.SerializeToString()
        name = name or _name(env.seq)
        tmp = name.removesuffix(SUFFIX) + TMP_SUFFIX
        self._write_new(tmp, record(payload))
        os.replace(tmp, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        return len(payload)

    def _write_new(self, name: str, data: bytes) -> None:
        self._unlink(name)
        fd = os.open(name, O_CREATE, 0o640, dir_fd=self._fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, env: wire_pb2.Envelope) -> None:
        """Store ``env`` durably (file and directory fsynced) before it is sent."""
        self.bytes += self._write(env)
        self.sync()

    def remove(self, env: wire_pb2.Envelope) -> None:
        try:
            os.unlink(_name(env.seq), dir_fd=self._fd)
        except FileNotFoundError:
            return
        self.bytes -= env.ByteSize()

    def sync(self) -> None:
        """Make renames and deletions durable (fsync the directory)."""
        os.fsync(self._fd)

    # -- a new epoch ---------------------------------------------------------------------------
    def restamp(self, epoch: str, envelopes: Iterable[wire_pb2.Envelope]) -> None:
        """Replace everything in the spool by ``envelopes`` (all of ``epoch``), atomically: after
        a crash at any point the spool holds either the old set or the new one."""
        envs = list(envelopes)
        assert all(e.epoch == epoch for e in envs)
        body = b"".join(
            len(r).to_bytes(4, "big") + r for r in (record(e.SerializeToString()) for e in envs)
        )
        tmp = JOURNAL.removesuffix(".journal") + TMP_SUFFIX
        self._write_new(tmp, record(JOURNAL_MAGIC + body))
        self._step()
        os.replace(tmp, JOURNAL, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        self.sync()  # the commit
        self._step()
        self._replace_all(envs)
        self._unlink(JOURNAL)
        self.sync()
        self._step()

    def _replace_all(self, envs: list[wire_pb2.Envelope]) -> None:
        for name in os.listdir(self._fd):
            if name.endswith(SUFFIX):
                self._unlink(name)
                self._step()
        self.sync()
        self.bytes = 0
        for env in envs:
            self.bytes += self._write(env)
            self._step()
        self.sync()

    def _read_journal(self) -> list[wire_pb2.Envelope] | None:
        data = self._read_file(JOURNAL)
        if (
            data is None
            or not data.startswith(JOURNAL_MAGIC)
            or zlib.crc32(data[:-4]).to_bytes(4, "big") != data[-4:]
        ):
            log.error("%s is damaged; the spool's envelopes stay as they are", self.dir / JOURNAL)
            return None
        body = data[len(JOURNAL_MAGIC) : -4]
        envs: list[wire_pb2.Envelope] = []
        pos = 0
        while pos < len(body):
            size = int.from_bytes(body[pos : pos + 4], "big")
            env = self._decode(body[pos + 4 : pos + 4 + size], JOURNAL)
            if env is None or not self._valid(env):
                log.error(
                    "%s holds a damaged envelope; the spool stays as it is", self.dir / JOURNAL
                )
                return None
            envs.append(env)
            pos += 4 + size
        return envs

    def _step(self) -> None:
        """A file system step of an epoch change is done: a crash may come here, and the crash
        tests stop the process at each such point in turn."""
