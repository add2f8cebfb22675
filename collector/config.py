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
from net_gazer.sensor.config import parse_hostport


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
    ready_file: Path | None = None
    plugins_allow: list[str] = field(default_factory=list)
    plugins_block: list[str] = field(default_factory=list)
    plugin_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    verbose: int = 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


FILE_KEYS = {"listen", "http", "graph_url", "graph", "data_dir", "insecure", "plugins"}


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
        plugins = data.get("plugins", {})
        cfg.plugins_allow = [str(x) for x in plugins.get("allow", [])]
        cfg.plugins_block = [str(x) for x in plugins.get("block", [])]
        cfg.plugin_config = {k: v for k, v in plugins.items() if isinstance(v, dict)}
    for key in ("listen", "http", "graph_url", "graph"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.data_dir:
        cfg.data_dir = Path(args.data_dir)
    cfg.insecure = cfg.insecure or args.insecure
    if args.ready_file:
        cfg.ready_file = Path(args.ready_file)
    return validate(cfg)


def validate(cfg: CollectorConfig) -> CollectorConfig:
    host, _ = parse_hostport(cfg.listen, "--listen address")
    parse_hostport(cfg.http, "--http address")
    if not is_loopback(host) and not cfg.insecure:
        raise ConfigError(
            f"listening on {cfg.listen} reaches beyond loopback, and this collector has no TLS or "
            "sensor authentication yet; add --insecure to accept that (on a trusted network only)"
        )
    if cfg.graph_url and not cfg.graph_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "--graph-url must look like redis://HOST:PORT, rediss://HOST:PORT or unix:///path"
        )
    if not cfg.graph or not cfg.graph.replace("_", "").replace("-", "").isalnum():
        raise ConfigError("the graph name may hold letters, digits, '_' and '-' only")
    return cfg
