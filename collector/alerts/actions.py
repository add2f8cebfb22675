"""What an alert does: the log, the JSON event log, an HTTP webhook, a command.

- **webhook**: a POST of the alert as a JSON body. Alerts wait in one bounded queue per URL
  (``queue`` alerts, default 1,000); a failed POST (no connection, a timeout, a status other
  than 2xx) is retried with exponential backoff (0.5 s doubling up to 30 s) for as long as it
  takes, in order, so a receiver that is down loses no alert within the queue's bound. An alert
  that finds the queue full is dropped and counted (``webhook_dropped``).
- **command**: the program and its arguments as configured, run directly (never through a
  shell), with the alert as JSON on its standard input and ``NG_ALERT_RULE``, ``NG_ALERT_KIND``,
  ``NG_ALERT_SENSOR`` and ``NG_ALERT_MESSAGE`` in its environment; killed after 30 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from net_gazer import tasks
from net_gazer.collector.events import CollectorEvents

from .rules import Rule

log = logging.getLogger("net_gazer.alerts")

QUEUE = 1_000
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
HTTP_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0


@dataclass
class ActionStats:
    webhook_sent: int = 0
    webhook_retries: int = 0
    webhook_dropped: int = 0
    commands_run: int = 0
    command_failures: int = 0


def _post(url: str, body: bytes, timeout: float) -> int:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "User-Agent": "net-gazer-alerts"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return int(resp.status)


@dataclass
class Webhook:
    url: str
    stats: ActionStats
    queue_size: int = QUEUE
    backoff_min: float = BACKOFF_MIN
    backoff_max: float = BACKOFF_MAX
    timeout: float = HTTP_TIMEOUT
    queue: asyncio.Queue[dict[str, Any]] = field(init=False)
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    def put(self, alert: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.stats.webhook_dropped += 1
            log.error("the webhook queue for %s is full (%d alerts): alert %s dropped",
                      self.url, self.queue_size, alert["rule"])  # fmt: skip
            return
        if self.task is None:
            self.task = tasks.spawn(self._run(), name=f"webhook {self.url}")

    async def _run(self) -> None:
        while True:
            alert = await self.queue.get()
            body = json.dumps(alert, default=str).encode()
            delay = self.backoff_min
            while True:
                try:
                    status = await asyncio.to_thread(_post, self.url, body, self.timeout)
                    if 200 <= status < 300:
                        break
                    why = f"status {status}"
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    why = str(getattr(exc, "reason", exc))
                self.stats.webhook_retries += 1
                log.warning("webhook %s failed (%s); retrying in %.1f s", self.url, why, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
            self.stats.webhook_sent += 1

    async def close(self) -> None:
        await tasks.cancel(self.task)


class Dispatcher:
    def __init__(self, events: CollectorEvents, queue_size: int = QUEUE, **webhook: Any) -> None:
        self.events = events
        self.stats = ActionStats()
        self.queue_size = queue_size
        self._webhook_args = webhook
        self.webhooks: dict[str, Webhook] = {}
        self._commands: set[asyncio.Task[None]] = set()

    def dispatch(self, rule: Rule, alert: dict[str, Any]) -> None:
        if "log" in rule.actions:
            log.warning("alert %s: %s", rule.name, alert["message"])
        if "json_log" in rule.actions:
            self.events.emit("alert", {k: v for k, v in alert.items() if k != "ts"})
        if "webhook" in rule.actions and rule.webhook:
            hook = self.webhooks.get(rule.webhook)
            if hook is None:
                hook = self.webhooks[rule.webhook] = Webhook(
                    rule.webhook, self.stats, self.queue_size, **self._webhook_args
                )
            hook.put(alert)
        if "command" in rule.actions and rule.command:
            t = tasks.spawn(self._command(rule, alert), name=f"alert command {rule.name}")
            self._commands.add(t)
            t.add_done_callback(self._commands.discard)

    async def _command(self, rule: Rule, alert: dict[str, Any]) -> None:
        env = {**os.environ, "NG_ALERT_RULE": rule.name, "NG_ALERT_KIND": rule.when,
               "NG_ALERT_SENSOR": alert["sensor"], "NG_ALERT_MESSAGE": alert["message"]}  # fmt: skip
        self.stats.commands_run += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *rule.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
        except OSError as exc:
            self.stats.command_failures += 1
            log.error("alert %s: cannot run %s: %s", rule.name, rule.command[0], exc.strerror)
            return
        try:
            _, err = await asyncio.wait_for(
                proc.communicate(json.dumps(alert, default=str).encode()), COMMAND_TIMEOUT
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            self.stats.command_failures += 1
            log.error("alert %s: %s ran longer than %.0f s and was killed", rule.name,
                      rule.command[0], COMMAND_TIMEOUT)  # fmt: skip
            return
        if proc.returncode:
            self.stats.command_failures += 1
            log.error("alert %s: %s exited %d: %s", rule.name, rule.command[0], proc.returncode,
                      err.decode(errors="replace").strip()[:200])  # fmt: skip

    def pending(self) -> int:
        return sum(h.queue.qsize() for h in self.webhooks.values())

    async def close(self) -> None:
        for hook in self.webhooks.values():
            await hook.close()
        for t in list(self._commands):
            await tasks.cancel(t)
