"""Read access to the graph for the web side (a synchronous client; waitress runs threads)."""

from __future__ import annotations

import threading
from typing import Any

import redis.exceptions
from falkordb import FalkorDB


class GraphReader:
    def __init__(self, url: str, graph: str) -> None:
        self.url = url
        self.graph_name = graph
        self._local = threading.local()

    def _graph(self) -> Any:
        g = getattr(self._local, "graph", None)
        if g is None:
            if self.url.startswith("unix://"):
                db = FalkorDB(unix_socket_path=self.url.removeprefix("unix://"))
            else:
                db = FalkorDB.from_url(self.url)
            g = self._local.graph = db.select_graph(self.graph_name)
            self._local.db = db
        return g

    def query(self, cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        try:
            return list(self._graph().ro_query(cypher, params or {}).result_set)
        except redis.exceptions.ResponseError as exc:
            if "empty key" in str(exc):
                return []  # no sensor has written yet: the graph does not exist
            raise

    def ping(self) -> bool:
        try:
            self._graph()
            return bool(self._local.db.connection.ping())
        except Exception:
            return False
