"""The hold-down and the alert records, in FalkorDB, so that collector replicas agree.

:func:`claim` decides in ONE query (FalkorDB runs the queries on one graph one at a time, so two
replicas claiming at once are ordered) whether a candidate becomes an alert: it does when the
rule's hold-down has passed since that rule last fired for that key. The same query records the
alert as an ``(:Alert)`` node, or counts the candidate as suppressed on the
``(:AlertState {rule, key})`` node.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from net_gazer.collector.cypher import with_params

from .engine import Candidate

NEVER = -1e18
#: Alert nodes kept; older ones are deleted as new ones come.
KEEP = 10_000

CLAIM_CYPHER = """
MERGE (a:AlertState {rule: $rule, key: $key})
ON CREATE SET a.last_fired = $never, a.fired = 0, a.suppressed = 0
WITH a, $now - a.last_fired >= $hold AS fire
SET a.last_fired = CASE WHEN fire THEN $now ELSE a.last_fired END,
  a.fired = a.fired + CASE WHEN fire THEN 1 ELSE 0 END,
  a.suppressed = a.suppressed + CASE WHEN fire THEN 0 ELSE 1 END
FOREACH (_ IN CASE WHEN fire THEN [1] ELSE [] END |
  CREATE (:Alert {id: $id, rule: $rule, kind: $kind, key: $key, sensor: $sensor, ts: $now,
    message: $message, details: $details})
)
RETURN fire, a.last_fired
"""

TRIM_CYPHER = """
MATCH (x:Alert) WITH x ORDER BY x.ts DESC SKIP $keep DELETE x
"""

INDEXES = (("AlertState", "rule"), ("AlertState", "key"), ("Alert", "ts"), ("Alert", "rule"))


async def ensure_indexes(graph: Any) -> None:
    for label, prop in INDEXES:
        try:
            await graph.query(f"CREATE INDEX FOR (n:{label}) ON (n.{prop})")
        except Exception as exc:
            if "already indexed" not in str(exc):
                raise


async def claim(
    graph: Any, c: Candidate, now: float | None = None
) -> tuple[dict[str, Any] | None, float]:
    """The alert when ``c`` passes the hold-down (None when it is suppressed), and when the
    rule last fired for the key: the hold-down lasts until then plus the rule's hold_down."""
    when = time.time() if now is None else now
    alert = {
        "id": uuid.uuid4().hex,
        "rule": c.rule.name,
        "kind": c.rule.when,
        "key": c.key,
        "sensor": c.sensor,
        "ts": when,
        "message": c.message,
        "details": c.details,
    }
    params = {**alert, "details": json.dumps(c.details, default=str), "now": when,
              "hold": c.hold_down, "never": NEVER}  # fmt: skip
    res = await graph.query(with_params(CLAIM_CYPHER, params))
    fire, last_fired = res.result_set[0]
    return (alert if fire else None), float(last_fired)


async def trim(graph: Any, keep: int = KEEP) -> None:
    await graph.query(with_params(TRIM_CYPHER, {"keep": keep}))


async def silent_sensors(graph: Any) -> list[tuple[str, float]]:
    res = await graph.ro_query(
        "MATCH (s:Sensor) WHERE s.last_seen IS NOT NULL RETURN s.id, s.last_seen"
    )
    return [(str(sid), float(last)) for sid, last in res.result_set]
