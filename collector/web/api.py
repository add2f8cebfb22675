"""The index page and ``/healthz``; the JSON API lives in the other modules of this package."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, render_template_string
from flask.typing import ResponseReturnValue

bp = Blueprint("api", __name__)


def _graph() -> Any:
    return current_app.extensions["ng_graph"]


INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>net-gazer collector</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:52em;padding:0 1em}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.2em .8em;text-align:left}
code{background:#f4f4f4;padding:0 .2em}</style></head><body>
<h1>net-gazer collector {{ version }}</h1>
<p>Graph database: <b>{{ "reachable" if graph else "unreachable" }}</b>.
Sensors connected now: {{ status.sensors_connected }}; batches applied: {{ status.batches }}.</p>
<h2>Sensors</h2>
<table><tr><th>id</th><th>hostname</th><th>version</th><th>last seen (UTC)</th><th>batches</th><th>gaps</th></tr>
{% for s in sensors %}<tr><td>{{ s[0] }}</td><td>{{ s[1] }}</td><td>{{ s[2] }}</td><td>{{ s[3] }}</td>
<td>{{ s[4] }}</td><td>{{ s[5] }}</td></tr>{% else %}<tr><td colspan="6">none yet</td></tr>{% endfor %}
</table>
<h2>API</h2>
<ul><li><a href="/api/connections?limit=50"><code>/api/connections</code></a>: CONNECTS edges, newest first
(<code>limit</code>, <code>sensor</code>)</li><li><a href="/healthz"><code>/healthz</code></a>: status and counters</li></ul>
<p>The graph viewer, map and connections table arrive with the viewer.</p>
</body></html>"""

SENSORS_CYPHER = "MATCH (s:Sensor) RETURN s.id, s.hostname, s.version, s.last_seen, s.batches, s.gaps ORDER BY s.id LIMIT 500"


@bp.get("/")
def index() -> ResponseReturnValue:
    import datetime

    graph = _graph()
    ok = graph.ping()
    sensors = []
    if ok:
        for sid, host, version, last, batches, gaps in graph.query(SENSORS_CYPHER):
            when = (
                datetime.datetime.fromtimestamp(last, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
                if last
                else ""
            )
            sensors.append((sid, host, version, when, batches, gaps))
    from net_gazer import __version__

    # render_template_string autoescapes: sensor ids and hostnames come from the network.
    return render_template_string(
        INDEX,
        version=__version__,
        graph=ok,
        sensors=sensors,
        status=current_app.config["NG"].status(),
    )


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    graph_ok = _graph().ping()
    body = {"status": "ok" if graph_ok else "degraded", "graph": graph_ok}
    body.update(current_app.config["NG"].status())
    return jsonify(body), 200 if graph_ok else 503
