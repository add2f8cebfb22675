"""SIGHUP: the JSON event log reopened; plugin settings, budgets and prefix lists from the
configuration file again.

Interfaces and the collector need a restart. A bad file changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from net_gazer.errors import ConfigError
from net_gazer.netaddr import NetworkSet
from net_gazer.sensor.config import reload as reload_config

if TYPE_CHECKING:
    from net_gazer.sensor.pipeline import Sensor

log = logging.getLogger(__name__)


def reload(sensor: Sensor) -> None:
    cfg = sensor.cfg
    if sensor.events is not None:
        sensor.events.log.reopen()  # logrotate's postrotate sends SIGHUP
    if cfg.config_file is None:
        log.warning("SIGHUP: no configuration file to reload")
        return
    try:
        fresh = reload_config(cfg)
    except ConfigError as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
        return
    cfg.plugin_config = fresh.plugin_config
    for name, ctx in sensor.contexts.items():
        ctx.config = cfg.plugin_config.get(name, {})
    cfg.plugin_budget = sensor.host.budget = fresh.plugin_budget
    if "local_networks" not in cfg.pinned and fresh.local_networks:
        cfg.local_networks = fresh.local_networks
        sensor.direction.set_local(NetworkSet(fresh.local_networks))
    configured = [i.name for i in fresh.interfaces]
    if configured and configured != [h.name for h in sensor.handles]:
        log.warning(
            "the configuration names other interfaces now; changing interfaces needs a restart"
        )
    log.info("reloaded plugin settings, budgets and prefix lists from %s", cfg.config_file)
