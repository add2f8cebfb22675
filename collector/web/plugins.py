"""``GET /api/plugins``: every plugin of the collector and of each sensor, and what failed.

- ``collector``: the collector's plugins as :meth:`CollectorPlugins.describe` gives them (name,
  version, hooks, errors, overruns, ``disabled`` with the reason, ``loaded``, counters, position
  in the call order), the hook time budget, the extensions no plugin claimed (by sending plugin
  name), and the parts of batches each plugin lost, since this collector started;
- ``sensors``: per sensor, from its ``Sensor`` node: the plugins its last hello named, with the
  errors, overruns and disabled state its last batch's counters carried, and the losses and
  unclaimed extensions the graph counted for it over its whole life.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("plugins", __name__)

SENSORS_CYPHER = (
    "MATCH (s:Sensor) RETURN s.id, s.last_seen, s.plugins, s.counters, properties(s) "
    "ORDER BY s.id LIMIT 10000"
)


def _sensor(sid: str, last_seen: Any, names: Any, counters: Any, props: Any) -> dict[str, Any]:
    values: dict[str, int] = {}
    for item in counters or []:
        key, _, value = str(item).partition("=")
        if value.lstrip("-").isdigit():
            values[key] = int(value)
    plugins = []
    for name in names or []:
        prefix = f"plugin_{name}_"
        mine = {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix)}
        plugins.append(
            {
                "name": name,
                "errors": mine.pop("errors", 0),
                "overruns": mine.pop("overruns", 0),
                "disabled": bool(mine.pop("disabled", 0)),
                "counters": mine,
            }
        )
    props = props or {}
    lost = {
        k.removeprefix("plugin_lost_"): v
        for k, v in props.items()
        if k.startswith("plugin_lost_") and isinstance(v, int)
    }
    return {
        "id": sid,
        "last_seen": last_seen,
        "plugins": plugins,
        "plugin_lost": lost,
        "unhandled_extensions": props.get("unhandled_extensions", 0) or 0,
    }


@bp.get("/api/plugins")
def plugins() -> ResponseReturnValue:
    collector = current_app.config["NG"].plugins()
    graph = current_app.extensions["ng_graph"]
    sensors = [_sensor(*row) for row in graph.query(SENSORS_CYPHER)]
    return jsonify(collector=collector, sensors=sensors)
