"""``net-gazer-collector`` with one fault: it SIGKILLs itself right after its Nth applied batch,
before that batch's ack is sent. The crash tests run it as a real process; production code knows
nothing of it.

    python tests/fault_collector.py --kill-after-write N [collector flags ...]
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from net_gazer.collector import cli, store

log = logging.getLogger("net_gazer.collector")


def install(kill_after: int) -> None:
    apply = store.GraphStore.apply

    async def apply_then_die(self: store.GraphStore, *args: Any, **kwargs: Any) -> store.Outcome:
        outcome = await apply(self, *args, **kwargs)
        if outcome is store.Outcome.APPLIED and self.stats.batches >= kill_after:
            log.error(
                "fault injection: killing the collector after write %d, before its ack",
                self.stats.batches,
            )
            os.kill(os.getpid(), signal.SIGKILL)
        return outcome

    store.GraphStore.apply = apply_then_die  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--kill-after-write" or not argv[1].isdigit():
        print(
            "usage: fault_collector.py --kill-after-write N [collector flags ...]", file=sys.stderr
        )
        return 2
    install(int(argv[1]))
    return cli.main(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
