"""Sensor configuration: typed, validated once at start. TOML file, then environment, then flags.

File search order when ``-c`` / ``NG_CONFIG`` is not given: ``./etc/net-gazer/net-gazer.toml``,
``/usr/local/etc/net-gazer/net-gazer.toml``, ``/etc/net-gazer/net-gazer.toml`` (the first that
exists). ``deploy/net-gazer.toml`` documents every key.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from net_gazer.errors import ConfigError
from net_gazer.netaddr import IPNetwork, collector_endpoint, parse_networks

SEARCH_PATH = (
    Path("etc/net-gazer/net-gazer.toml"),
    Path("/usr/local/etc/net-gazer/net-gazer.toml"),
    Path("/etc/net-gazer/net-gazer.toml"),
)

DEFAULT_COLLECTOR = "127.0.0.1:50051"


@dataclass(slots=True, frozen=True)
class Interface:
    name: str
    role: str = ""


@dataclass
class SensorConfig:
    interfaces: list[Interface] = field(default_factory=list)
    read: Path | None = None
    speed: float = 0.0  # 0: as fast as possible
    loop: bool = False
    local_networks: list[IPNetwork] = field(default_factory=list)
    collector: str = DEFAULT_COLLECTOR
    sensor_id: str = ""
    site: str = ""
    flush_interval: float = 1.0
    ack_timeout: float = 30.0
    max_envelopes: int = 10_000
    max_buffer_bytes: int = 256 * 1024 * 1024
    #: Where unacknowledged batches are kept on disk; None: memory only.
    spool_dir: Path | None = None
    #: Headers plus a whole Ethernet-sized segment: the dpi plugin reads ClientHellos that fill
    #: one (post-quantum key shares make them span two).
    snaplen: int = 1600
    #: Kernel capture ring per interface. libpcap's 2 MiB default holds about 1,500 frames at
    #: snaplen 1024 (one slot per frame), 0.1 s of a 7k SYN/s flood seen on two interfaces.
    capture_buffer: int = 32 * 1024 * 1024
    probe: bool = False
    handshake_timeout: float = 75.0
    max_flows: int = 262_144
    plugins_allow: list[str] = field(default_factory=list)
    plugins_block: list[str] = field(default_factory=list)
    #: Plugins called first, in this order ([plugins] order; NG_PLUGINS_ORDER replaces it).
    plugins_order: list[str] = field(default_factory=list)
    plugin_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_file: Path | None = None
    verbose: int = 0
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_server_name: str = ""
    token: str = ""
    #: Per-call time budget of each plugin hook, seconds ([plugins] budget_ms).
    plugin_budget: float = 0.25
    #: Payload inspection (the dpi plugin); --no-dpi or ``dpi = false`` keeps it from loading.
    dpi: bool = True
    #: Settings given by flags, which a reload (SIGHUP) must not override with the file's.
    pinned: set[str] = field(default_factory=set)
    #: ``HOST:PORT`` of the Prometheus /metrics listener; "" = off (the default).
    metrics: str = ""
    #: The user a sensor started as root becomes after opening its sockets ("" = net-gazer if
    #: that user exists).
    user: str = ""

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None or self.tls_cert is not None

    @property
    def replay(self) -> bool:
        return self.read is not None


def default_spool_dir() -> Path:
    """systemd's StateDirectory, else /var/lib/net-gazer for root, else the user's state dir."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "spool"
    if os.geteuid() == 0:
        return Path("/var/lib/net-gazer/spool")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "net-gazer" / "spool"


def parse_interface(spec: str) -> Interface:
    name, _, role = spec.partition(":")
    if not name:
        raise ConfigError(f"interface {spec!r} has no name; use -i NAME or -i NAME:ROLE")
    return Interface(name=name, role=role)


def find_config(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; fix -c/--config or NG_CONFIG")
        return path
    return next((p for p in SEARCH_PATH if p.is_file()), None)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data[key]
    ok = False if isinstance(value, bool) and kind is not bool else isinstance(value, kind)
    if not ok:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: {key} must be a {name}, not {value!r}")
    return value


def load(args: Any) -> SensorConfig:
    """Build the configuration from the file, the environment and parsed flags (``args``)."""
    cfg = SensorConfig(verbose=args.verbose)
    path = find_config(args.config or os.environ.get("NG_CONFIG"))
    if path is not None:
        cfg.config_file = path
        _apply_file(cfg, _load_toml(path), str(path))
    # Environment.
    if os.environ.get("NG_IFACE"):
        cfg.interfaces = [parse_interface(s) for s in os.environ["NG_IFACE"].split(",") if s]
    if os.environ.get("NG_COLLECTOR"):
        cfg.collector = os.environ["NG_COLLECTOR"]
    if os.environ.get("NG_SENSOR_ID"):
        cfg.sensor_id = os.environ["NG_SENSOR_ID"]
    # Flags.
    if args.iface:
        cfg.interfaces = [parse_interface(s) for s in args.iface]
    if args.read:
        cfg.read = Path(args.read)
    if args.speed is not None:
        if args.speed < 0:
            raise ConfigError("--speed must be 0 (as fast as possible) or a positive factor")
        cfg.speed = args.speed
    cfg.loop = args.loop
    if args.local_networks:
        try:
            cfg.local_networks = parse_networks(args.local_networks.split(","))
        except ValueError as exc:
            raise ConfigError(f"--local-networks: {exc}") from None
        cfg.pinned.add("local_networks")
    if args.collector:
        cfg.collector = args.collector
    if args.sensor_id:
        cfg.sensor_id = args.sensor_id
    if args.ack_timeout is not None:
        cfg.ack_timeout = args.ack_timeout
    if args.flush_interval is not None:
        cfg.flush_interval = args.flush_interval
    spool = args.spool_dir or os.environ.get("NG_SPOOL_DIR")
    if args.no_spool:
        cfg.spool_dir = None
    elif spool:
        cfg.spool_dir = Path(spool)
    elif cfg.read is None and cfg.spool_dir is None:
        cfg.spool_dir = default_spool_dir()
    cfg.probe = args.probe
    if os.environ.get("NG_TOKEN"):
        cfg.token = os.environ["NG_TOKEN"].strip()
    for key in ("tls_ca", "tls_cert", "tls_key"):
        if getattr(args, key):
            setattr(cfg, key, Path(getattr(args, key)))
    if args.tls_server_name:
        cfg.tls_server_name = args.tls_server_name
    if args.token_file:
        cfg.token = _read_token(Path(args.token_file))
    if args.user:
        cfg.user = args.user
    if getattr(args, "metrics", None):
        from net_gazer.sensor.metrics import parse_addr

        parse_addr(args.metrics)
        cfg.metrics = args.metrics
    if getattr(args, "no_dpi", False):
        cfg.dpi = False
    return _validate(cfg)


def reload(cfg: SensorConfig) -> SensorConfig:
    """The configuration file read again (SIGHUP): a fresh config from the file alone, for the
    caller to take the reloadable parts from. Raises ConfigError like start-up does."""
    fresh = SensorConfig()
    if cfg.config_file is not None:
        _apply_file(fresh, _load_toml(cfg.config_file), str(cfg.config_file))
    return fresh


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token or not token.isprintable():
        raise ConfigError(f"the token file {path} must hold the token on one line")
    return token


def _apply_file(cfg: SensorConfig, data: dict[str, Any], where: str) -> None:
    known = {"sensor_id", "site", "collector", "local_networks", "flush_interval", "ack_timeout",
             "snaplen", "capture_buffer", "interface", "buffer", "plugins", "tracker", "tls",
             "token_file", "user", "dpi"}  # fmt: skip
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; see deploy/net-gazer.toml"
        )
    for key in ("sensor_id", "site", "collector", "user"):
        if key in data:
            setattr(cfg, key, _typed(data, key, str, where))
    for key in ("flush_interval", "ack_timeout"):
        if key in data:
            setattr(cfg, key, float(_typed(data, key, (int, float), where)))
    if "dpi" in data:
        cfg.dpi = _typed(data, "dpi", bool, where)
    if "snaplen" in data:
        cfg.snaplen = _typed(data, "snaplen", int, where)
    if "capture_buffer" in data:
        cfg.capture_buffer = _typed(data, "capture_buffer", int, where)
    if "local_networks" in data:
        try:
            cfg.local_networks = parse_networks(_typed(data, "local_networks", list, where))
        except ValueError as exc:
            raise ConfigError(f"{where}: local_networks: {exc}") from None
    for item in _typed(data, "interface", list, where) if "interface" in data else []:
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}: each [[interface]] needs a name")
        cfg.interfaces.append(Interface(name=str(item["name"]), role=str(item.get("role", ""))))
    buffer = _typed(data, "buffer", dict, where) if "buffer" in data else {}
    if "max_envelopes" in buffer:
        cfg.max_envelopes = _typed(buffer, "max_envelopes", int, f"{where} [buffer]")
    if "max_bytes" in buffer:
        cfg.max_buffer_bytes = _typed(buffer, "max_bytes", int, f"{where} [buffer]")
    if buffer.get("spool_dir"):
        cfg.spool_dir = Path(_typed(buffer, "spool_dir", str, f"{where} [buffer]"))
    tracker = _typed(data, "tracker", dict, where) if "tracker" in data else {}
    if "handshake_timeout" in tracker:
        cfg.handshake_timeout = float(
            _typed(tracker, "handshake_timeout", (int, float), f"{where} [tracker]")
        )
    if "max_flows" in tracker:
        cfg.max_flows = _typed(tracker, "max_flows", int, f"{where} [tracker]")
    tls = _typed(data, "tls", dict, where) if "tls" in data else {}
    for key in ("ca", "cert", "key"):
        if tls.get(key):
            setattr(cfg, f"tls_{key}", Path(_typed(tls, key, str, f"{where} [tls]")))
    if tls.get("server_name"):
        cfg.tls_server_name = _typed(tls, "server_name", str, f"{where} [tls]")
    if data.get("token_file"):
        cfg.token = _read_token(Path(_typed(data, "token_file", str, where)))
    plugins = _typed(data, "plugins", dict, where) if "plugins" in data else {}
    if "budget_ms" in plugins:
        budget = float(_typed(plugins, "budget_ms", (int, float), f"{where} [plugins]"))
        if not 1 <= budget <= 60_000:
            raise ConfigError(f"{where} [plugins]: budget_ms must be between 1 and 60000")
        cfg.plugin_budget = budget / 1000
    for key in ("allow", "block", "order"):
        if key in plugins:
            setattr(
                cfg,
                f"plugins_{key}",
                [str(x) for x in _typed(plugins, key, list, f"{where} [plugins]")],
            )
    cfg.plugin_config = {k: v for k, v in plugins.items() if isinstance(v, dict)}


def _validate(cfg: SensorConfig) -> SensorConfig:
    collector_endpoint(cfg.collector)
    if cfg.read is not None and cfg.interfaces:
        raise ConfigError("give either -r/--read FILE or -i/--iface, not both")
    if cfg.loop and cfg.read is None:
        raise ConfigError("--loop only applies to -r/--read")
    if cfg.flush_interval <= 0 or cfg.flush_interval > 3600:
        raise ConfigError("flush_interval must be between 0 and 3600 seconds")
    if cfg.ack_timeout <= 0:
        raise ConfigError("ack_timeout must be a positive number of seconds")
    if cfg.max_envelopes < 10:
        raise ConfigError("[buffer] max_envelopes must be at least 10")
    if cfg.max_buffer_bytes < 1024 * 1024:
        raise ConfigError("[buffer] max_bytes must be at least 1 MiB")
    if not 64 <= cfg.snaplen <= 262_144:
        raise ConfigError("snaplen must be between 64 and 262144 bytes")
    if not 1024 * 1024 <= cfg.capture_buffer <= 1024 * 1024 * 1024:
        raise ConfigError("capture_buffer must be between 1 MiB and 1 GiB")
    if cfg.max_flows < 16:
        raise ConfigError("[tracker] max_flows must be at least 16")
    for key in ("tls_ca", "tls_cert", "tls_key"):
        path = getattr(cfg, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"--{key.replace('_', '-')} {path} does not exist or is not a file")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("give both --tls-cert and --tls-key, or neither")
    if not cfg.sensor_id:
        cfg.sensor_id = socket.gethostname()
    if len(cfg.sensor_id) > 128 or not cfg.sensor_id.isprintable():
        raise ConfigError("the sensor id must be at most 128 printable characters")
    if not cfg.site:
        cfg.site = cfg.sensor_id
    if not cfg.dpi and "dpi" not in cfg.plugins_block:
        cfg.plugins_block.append("dpi")
    return cfg
