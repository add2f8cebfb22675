"""The part of a pluggy host that the sensor and the collector share.

- Plugins are discovered through entry points (the group is the host's project name); built-ins are
  registered the same way, from this distribution's own entry points.
- Environment switches, as tox and datasette have them: ``NG_PLUGINS_BLOCK`` and
  ``NG_PLUGINS_ALLOW`` (comma-separated names) and ``NG_PLUGIN_TRACE=1`` (log every hook call).
- Hooks are called through :meth:`PluginHost.safecall`, which calls each implementation on its own:
  one that raises is logged with its name and counted, and the others still run (pluggy itself
  would stop at the first exception). An implementation that keeps overrunning its time budget is
  disabled and reported; threads cannot be killed, so it is disabled rather than stopped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from net_gazer.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PluginInfo:
    """What ``--list-plugins`` and ``/api/plugins`` show about one plugin."""

    name: str
    version: str
    module: str
    hooks: list[str]
    errors: int = 0
    overruns: int = 0
    disabled: str = ""  # why it was disabled, empty while active

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "errors": self.errors,
            "overruns": self.overruns,
            "disabled": self.disabled,
        }


@dataclass(slots=True)
class _Impl:
    plugin: str
    function: Callable[..., Any]
    info: PluginInfo
    #: The hook arguments this implementation takes (pluggy lets it take fewer than the spec).
    argnames: tuple[str, ...] = ()
    consecutive_overruns: int = 0


@dataclass
class PluginHost:
    """A small wrapper around a :class:`pluggy.PluginManager`; build it with :func:`create`."""

    pm: pluggy.PluginManager
    group: str
    #: Per-call time budget in seconds for each hook implementation.
    budget: float = 0.25
    #: Consecutive overruns after which an implementation is disabled.
    max_overruns: int = 20
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # plugins that failed to load: why
    _impls: dict[str, list[_Impl]] = field(default_factory=dict)

    def register(self, plugin: object, name: str, version: str = "") -> None:
        self.pm.register(plugin, name=name)
        hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        self.infos[name] = PluginInfo(name=name, version=version, module=module, hooks=hooks)
        self._impls.clear()

    def plugins(self) -> list[PluginInfo]:
        return [self.infos[n] for n in sorted(self.infos)]

    def implementations(self, hook: str) -> list[_Impl]:
        impls = self._impls.get(hook)
        if impls is None:
            caller = getattr(self.pm.hook, hook)
            impls = [
                _Impl(
                    plugin=i.plugin_name,
                    function=i.function,
                    info=self.infos[i.plugin_name],
                    argnames=tuple(i.argnames),
                )
                for i in reversed(
                    caller.get_hookimpls()
                )  # pluggy's call order: last registered first
                if i.plugin_name in self.infos and not self.infos[i.plugin_name].disabled
            ]
            self._impls[hook] = impls
        return impls

    def implemented_by(self, hook: str) -> list[str]:
        return [i.plugin for i in self.implementations(hook)]

    def safecall(
        self,
        hook: str,
        *,
        ctx: Callable[[str], object] | None = None,
        failures: list[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Call every active implementation of ``hook``; return ``(plugin, result)`` pairs for the
        ones that returned something other than None. ``ctx(plugin)`` supplies each plugin's own
        context object as the ``ctx`` argument. ``failures``, when given, gets a ``(plugin,
        error)`` pair for each implementation that raised."""
        results: list[tuple[str, Any]] = []
        disable: list[_Impl] = []
        for impl in self.implementations(hook):
            args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
            if ctx is not None and "ctx" in impl.argnames:
                args["ctx"] = ctx(impl.plugin)
            start = time.perf_counter()
            try:
                result = impl.function(**args)
            except Exception as exc:
                impl.info.errors += 1
                log.exception(
                    "plugin %s failed in %s (error %d)", impl.plugin, hook, impl.info.errors
                )
                if failures is not None:
                    failures.append((impl.plugin, f"{type(exc).__name__}: {exc}"))
                continue
            finally:
                elapsed = time.perf_counter() - start
                if elapsed > self.budget:
                    impl.info.overruns += 1
                    impl.consecutive_overruns += 1
                    if impl.consecutive_overruns >= self.max_overruns:
                        disable.append(impl)
                else:
                    impl.consecutive_overruns = 0
            if result is not None:
                results.append((impl.plugin, result))
        for impl in disable:
            self.disable(
                impl.plugin,
                f"overran its {self.budget * 1000:.0f} ms budget "
                f"{impl.consecutive_overruns} times in a row in {hook}",
            )
        return results

    def disable(self, plugin: str, why: str) -> None:
        info = self.infos.get(plugin)
        if info is None or info.disabled:
            return
        info.disabled = why
        self._impls.clear()
        log.error("plugin %s disabled: %s", plugin, why)


def _names(value: str | None) -> set[str]:
    return {n.strip() for n in (value or "").split(",") if n.strip()}


def create(
    project: str,
    hookspecs: ModuleType,
    *,
    allow: Iterable[str] = (),
    block: Iterable[str] = (),
    extra: Iterable[tuple[str, object]] = (),
) -> PluginHost:
    """Build a host for ``project`` (also the entry-point group), load the plugins it may load.

    ``allow``/``block`` come from the configuration; the environment adds to them. ``extra`` are
    plugin objects registered directly (tests, embedding).
    """
    pm = pluggy.PluginManager(project)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("NG_PLUGIN_TRACE"):
        pm.trace.root.setwriter(lambda msg: log.debug("%s", msg.rstrip()))
        pm.enable_tracing()
    host = PluginHost(pm=pm, group=project)
    allowed = set(allow) | _names(os.environ.get("NG_PLUGINS_ALLOW"))
    blocked = set(block) | _names(os.environ.get("NG_PLUGINS_BLOCK"))
    for ep in sorted(metadata.entry_points(group=project), key=lambda e: e.name):
        if ep.name in blocked or (allowed and ep.name not in allowed):
            log.info("plugin %s not loaded (blocked or not allowed)", ep.name)
            continue
        if ep.name in host.infos:
            log.warning(
                "plugin name %s is provided twice; keeping %s", ep.name, host.infos[ep.name].module
            )
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            host.failed[ep.name] = repr(exc)
            log.error("plugin %s (%s) failed to load: %r", ep.name, ep.value, exc)
            continue
        version = ep.dist.version if ep.dist is not None else ""
        host.register(obj, name=ep.name, version=version)
    for name, obj in extra:
        host.register(obj, name=name)
    unknown = (allowed | blocked) - {ep.name for ep in metadata.entry_points(group=project)}
    unknown -= {name for name, _ in extra}
    if unknown:
        log.warning(
            "allow/block lists name plugins that are not installed: %s", ", ".join(sorted(unknown))
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"a plugin implements a hook that does not exist: {exc}") from None
    return host
