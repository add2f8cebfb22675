"""A clean Debian 12 root made with debootstrap, built once and cached outside the repository.

The pristine root is kept under NG_DEBROOT_CACHE (default /var/cache/net-gazer-test), in a
directory named by a hash of everything that went into it, and each test copies it, so every
test starts from a fresh root and only the first run on a machine pays for debootstrap (about a
minute). The packages the sensor's .deb depends on are included, because the install itself runs
under `unshare --net` with no mirror to reach.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# The sensor package's Depends (deploy/debian/control), and systemd, which a gateway runs
# (systemd-analyze verify checks the unit against this root).
INCLUDE = ("python3", "libpcap0.8", "adduser", "procps", "systemd")
CACHE = Path(os.environ.get("NG_DEBROOT_CACHE", "/var/cache/net-gazer-test"))


def cache_key() -> str:
    text = " ".join(("minbase", SUITE, MIRROR, *INCLUDE))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pristine_root() -> Path:
    """Return the cached pristine root, making it first if it is missing."""
    root = CACHE / f"debian12-{cache_key()}"
    if (root / ".complete").exists():
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=" + ",".join(INCLUDE),
            SUITE,
            str(tmp),
            MIRROR,
        ],
        check=True,
        capture_output=True,
    )
    # Nothing of apt's download cache is needed to install a local .deb.
    subprocess.run(["chroot", str(tmp), "apt-get", "clean"], check=True)
    (tmp / ".complete").touch()
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def fresh_root(dest: Path) -> Path:
    """Copy the pristine root to dest (a new directory) and return it."""
    src = pristine_root()
    subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dest)], check=True)
    return dest


if __name__ == "__main__":
    print(pristine_root())
