"""What every API endpoint shares: the request's filter, limits, the reader, JSON errors."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from net_gazer.collector.filterlang import Filter, FilterError, parse

bp = Blueprint("api_common", __name__)

#: Query parameters that are shorthands for one filter term each: ``?port=443`` is ``port:443``.
SHORTHANDS = ("sensor", "host", "cidr", "port", "country", "asn", "since", "src", "dst", "state")


class BadRequest(Exception):
    """A 400 with a JSON body: ``error`` (one sentence), and ``parameter`` / ``position``."""

    def __init__(
        self, message: str, parameter: str | None = None, position: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        self.position = position


def graph() -> Any:
    return current_app.extensions["ng_graph"]


def config() -> Any:
    return current_app.config["NG"]


def privacy() -> bool:
    return bool(getattr(config(), "privacy", False))


def request_filter() -> Filter:
    """``q`` and the shorthand parameters, ANDed; BadRequest naming the parameter and position."""
    try:
        flt = parse(request.args.get("q", ""))
    except FilterError as exc:
        raise BadRequest(exc.message, "q", exc.position) from None
    for name in SHORTHANDS:
        for value in request.args.getlist(name):
            if not value:
                continue
            key = "host" if name == "cidr" else name
            try:
                flt = flt.and_(parse(f"{key}:{value}"))
            except FilterError as exc:
                raise BadRequest(exc.message, name, max(0, exc.position - len(key) - 1)) from None
    return flt


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number", name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", name)
    return value


def bool_arg(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes", "on")


@bp.app_errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": exc.message}
    if exc.parameter is not None:
        body["parameter"] = exc.parameter
    if exc.position is not None:
        body["position"] = exc.position
    return jsonify(body), 400


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    """JSON for errors under /api/ (an unknown path gets a JSON 404, not an HTML page)."""
    if not request.path.startswith("/api/"):
        return exc
    response = jsonify(error=exc.description or exc.name, status=exc.code)
    response.status_code = exc.code or 500
    return response
