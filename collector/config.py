"""Collector configuration: typed, validated once. TOML file (``-c``), then flags.

``deploy/collector.toml`` documents every key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from net_gazer.errors import ConfigError
from net_gazer.netaddr import collector_endpoint, parse_hostport


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "net-gazer" / "collector"


@dataclass
class CollectorConfig:
    listen: str = "127.0.0.1:50051"
    http: str = "127.0.0.1:8080"
    graph_url: str = ""
    graph: str = "net_gazer"
    data_dir: Path = field(default_factory=default_data_dir)
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tokens: Path | None = None
    max_message_bytes: int = 16 * 1024 * 1024
    max_sensors: int = 1024
    rows_per_second: float = 20_000.0
    ready_file: Path | None = None
    plugins_allow: list[str] = field(default_factory=list)
    plugins_block: list[str] = field(default_factory=list)
    #: Plugins called first, in this order ([plugins] order; NG_PLUGINS_ORDER replaces it).
    plugins_order: list[str] = field(default_factory=list)
    #: Per-call time budget of each plugin hook, seconds ([plugins] budget_ms).
    plugin_budget: float = 0.25
    plugin_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    verbose: int = 0
    #: GeoIP: the city database (None: the one maxminddb-geolite2 ships), the ASN database
    #: (None: no ASN fields), operator overrides, and no enrichment at all (--no-geoip).
    geoip_city: Path | None = None
    geoip_asn: Path | None = None
    locations: Path | None = None
    no_geoip: bool = False
    #: Seconds between two checks of the GeoIP and locations files for changes.
    geoip_reload_s: float = 5.0
    #: Mask client addresses in every API answer and export.
    privacy: bool = False
    http_tls_cert: Path | None = None
    http_tls_key: Path | None = None
    #: htpasswd file for HTTP Basic auth on the web side.
    authfile: Path | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


FILE_KEYS = {"listen", "http", "graph_url", "graph", "data_dir", "insecure", "plugins", "tls_cert", "tls_key",
             "tls_client_ca", "tokens", "max_message_bytes", "max_sensors", "rows_per_second",
             "geoip_city", "geoip_asn", "locations", "no_geoip", "privacy", "http_tls_cert",
             "http_tls_key", "authfile", "geoip_reload_s"}  # fmt: skip
PATH_KEYS = ("tls_cert", "tls_key", "tls_client_ca", "tokens", "geoip_city", "geoip_asn",
             "locations", "http_tls_cert", "http_tls_key", "authfile")  # fmt: skip
BOOL_KEYS = ("no_geoip", "privacy")


def load(args: Any) -> CollectorConfig:
    cfg = CollectorConfig(verbose=args.verbose)
    if args.config:
        path = Path(args.config)
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = set(data) - FILE_KEYS
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) {', '.join(sorted(unknown))}; see deploy/collector.toml"
            )
        for key in ("listen", "http", "graph_url", "graph"):
            if key in data:
                setattr(cfg, key, str(data[key]))
        if data.get("data_dir"):
            cfg.data_dir = Path(str(data["data_dir"]))
        cfg.insecure = bool(data.get("insecure", False))
        for key in BOOL_KEYS:
            if key in data:
                if not isinstance(data[key], bool):
                    raise ConfigError(f"{path}: {key} must be true or false")
                setattr(cfg, key, data[key])
        for key in PATH_KEYS:
            if data.get(key):
                setattr(cfg, key, Path(str(data[key])))
        for key, kind in (
            ("max_message_bytes", int),
            ("max_sensors", int),
            ("rows_per_second", float),
            ("geoip_reload_s", float),
        ):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{path}: {key} must be a number, not {value!r}")
                setattr(cfg, key, kind(value))
        plugins = data.get("plugins", {})
        if not isinstance(plugins, dict):
            raise ConfigError(f"{path}: [plugins] must be a table")
        for key in ("allow", "block", "order"):
            names = plugins.get(key, [])
            if not isinstance(names, list):
                raise ConfigError(f"{path}: [plugins] {key} must be a list of plugin names")
            setattr(cfg, f"plugins_{key}", [str(x) for x in names])
        if "budget_ms" in plugins:
            budget = plugins["budget_ms"]
            if isinstance(budget, bool) or not isinstance(budget, int | float):
                raise ConfigError(f"{path}: [plugins] budget_ms must be a number, not {budget!r}")
            if not 1 <= budget <= 60_000:
                raise ConfigError(f"{path}: [plugins] budget_ms must be between 1 and 60000")
            cfg.plugin_budget = budget / 1000
        cfg.plugin_config = {k: v for k, v in plugins.items() if isinstance(v, dict)}
    for key in ("listen", "http", "graph_url", "graph"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.data_dir:
        cfg.data_dir = Path(args.data_dir)
    cfg.insecure = cfg.insecure or args.insecure
    for key in BOOL_KEYS:
        if getattr(args, key, False):
            setattr(cfg, key, True)
    for key in PATH_KEYS:
        value = getattr(args, key, None)
        if value:
            setattr(cfg, key, Path(value))
    for key in ("max_message_bytes", "max_sensors", "rows_per_second"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.ready_file:
        cfg.ready_file = Path(args.ready_file)
    return validate(cfg)


def validate(cfg: CollectorConfig) -> CollectorConfig:
    endpoint = collector_endpoint(cfg.listen, "--listen address")
    local = endpoint is None or is_loopback(endpoint[0])  # None: a unix socket
    parse_hostport(cfg.http, "--http address")
    for key in PATH_KEYS:
        path = getattr(cfg, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"--{key.replace('_', '-')} {path} does not exist or is not a file")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("give both --tls-cert and --tls-key, or neither")
    if (cfg.http_tls_cert is None) != (cfg.http_tls_key is None):
        raise ConfigError("give both --http-tls-cert and --http-tls-key, or neither")
    if cfg.geoip_reload_s <= 0:
        raise ConfigError("geoip_reload_s must be positive")
    if cfg.tls_client_ca is not None and cfg.tls_cert is None:
        raise ConfigError("--tls-client-ca needs TLS: give --tls-cert and --tls-key too")
    authenticated = cfg.tls_client_ca is not None or cfg.tokens is not None
    if not local and not cfg.insecure and not (cfg.tls_cert and authenticated):
        raise ConfigError(
            f"listening on {cfg.listen} reaches beyond loopback: give TLS (--tls-cert, --tls-key) and "
            "sensor authentication (--tls-client-ca or --tokens), or add --insecure to accept an open "
            "listener (on a trusted network only)"
        )
    if not 64 * 1024 <= cfg.max_message_bytes <= 1024 * 1024 * 1024:
        raise ConfigError("--max-message-bytes must be between 64 KiB and 1 GiB")
    if cfg.max_sensors < 1:
        raise ConfigError("--max-sensors must be at least 1")
    if cfg.rows_per_second < 0:
        raise ConfigError("--rows-per-second must be 0 (unlimited) or positive")
    if cfg.graph_url and not cfg.graph_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "--graph-url must look like redis://HOST:PORT, rediss://HOST:PORT or unix:///path"
        )
    if not cfg.graph or not cfg.graph.replace("_", "").replace("-", "").isalnum():
        raise ConfigError("the graph name may hold letters, digits, '_' and '-' only")
    return cfg
