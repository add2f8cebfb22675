"""The part of a pluggy host that the sensor and the collector share.

- Plugins are discovered through entry points (the group is the host's project name); built-ins are
  registered the same way, from this distribution's own entry points.
- Environment switches, as tox and datasette have them: ``NG_PLUGINS_BLOCK`` and
  ``NG_PLUGINS_ALLOW`` (comma-separated names), ``NG_PLUGINS_ORDER`` (names called first, in
  that order) and ``NG_PLUGIN_TRACE=1`` (log every hook call, its arguments, result and time).
- Hooks are called through :meth:`PluginHost.safecall`, which calls each implementation on its own:
  one that raises is logged with its name and counted, and the others still run (pluggy itself
  would stop at the first exception). An implementation that keeps overrunning its time budget,
  or keeps raising, is disabled and reported; threads cannot be killed, so it is disabled rather
  than stopped.
- A plugin whose distribution requires a newer net-gazer (``Requires-Dist: net-gazer>=X`` in its
  metadata, from ``dependencies`` in its ``pyproject.toml``) is not loaded, with one sentence
  saying so; pip may not have enforced it (``--no-deps``, an upgrade of net-gazer afterwards).
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
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from net_gazer import __version__
from net_gazer.errors import ConfigError

log = logging.getLogger(__name__)
#: Where NG_PLUGIN_TRACE writes: one line per hook call.
trace_log = logging.getLogger("net_gazer.plugin.trace")


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
    consecutive_errors: int = 0


@dataclass
class PluginHost:
    """A small wrapper around a :class:`pluggy.PluginManager`; build it with :func:`create`."""

    pm: pluggy.PluginManager
    group: str
    #: Per-call time budget in seconds for each hook implementation.
    budget: float = 0.25
    #: Consecutive overruns after which an implementation is disabled.
    max_overruns: int = 20
    #: Consecutive calls that raised after which an implementation is disabled: a plugin that
    #: fails now and then on odd input goes on, one that fails on everything does not.
    max_errors: int = 100
    #: Log every hook call (NG_PLUGIN_TRACE).
    trace: bool = False
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # plugins that failed to load: why
    #: Registration order, which is the order hooks call the plugins in.
    order: list[str] = field(default_factory=list)
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
        disable: list[tuple[_Impl, str]] = []
        for impl in self.implementations(hook):
            args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
            if ctx is not None and "ctx" in impl.argnames:
                args["ctx"] = ctx(impl.plugin)
            start = time.perf_counter()
            try:
                result = impl.function(**args)
            except Exception as exc:
                impl.info.errors += 1
                impl.consecutive_errors += 1
                log.exception(
                    "plugin %s failed in %s (error %d)", impl.plugin, hook, impl.info.errors
                )
                if failures is not None:
                    failures.append((impl.plugin, f"{type(exc).__name__}: {exc}"))
                if impl.consecutive_errors >= self.max_errors:
                    disable.append(
                        (
                            impl,
                            f"raised {impl.consecutive_errors} times in a row in {hook} (last: {type(exc).__name__}: {exc})"[
                                :300
                            ],
                        )
                    )
                if self.trace:
                    _trace(impl.plugin, hook, args, f"raised {type(exc).__name__}", start)
                continue
            finally:
                elapsed = time.perf_counter() - start
                if elapsed > self.budget:
                    impl.info.overruns += 1
                    impl.consecutive_overruns += 1
                    if impl.consecutive_overruns >= self.max_overruns:
                        disable.append(
                            (
                                impl,
                                f"overran its {self.budget * 1000:.0f} ms budget {impl.consecutive_overruns} times in a row in {hook}",
                            )
                        )
                else:
                    impl.consecutive_overruns = 0
            impl.consecutive_errors = 0
            if self.trace:
                _trace(impl.plugin, hook, args, _short(result), start)
            if result is not None:
                results.append((impl.plugin, result))
        for impl, why in disable:
            self.disable(impl.plugin, why)
        return results

    def disable(self, plugin: str, why: str) -> None:
        info = self.infos.get(plugin)
        if info is None or info.disabled:
            return
        info.disabled = why
        self._impls.clear()
        log.error("plugin %s disabled: %s", plugin, why)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _trace(plugin: str, hook: str, args: dict[str, Any], outcome: str, start: float) -> None:
    shown = ", ".join(f"{k}={_short(v)}" for k, v in args.items() if k != "ctx")
    ms = (time.perf_counter() - start) * 1000
    trace_log.info("%s.%s(%s) -> %s in %.3f ms", plugin, hook, shown, outcome, ms)


def _names(value: str | None) -> list[str]:
    return list(dict.fromkeys(n.strip() for n in (value or "").split(",") if n.strip()))


def incompatible(dist: metadata.Distribution | None) -> str:
    """Why the distribution ``dist`` cannot run on this net-gazer ("" when it can): it requires a
    net-gazer version (``Requires-Dist``) that this one is not."""
    if dist is None or canonicalize_name(dist.metadata["Name"] or "") == "net-gazer":
        return ""
    for spec in dist.requires or []:
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "net-gazer":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if not req.specifier.contains(__version__, prereleases=True):
            name = dist.metadata["Name"]
            return (
                f"{name} {dist.version} needs net-gazer{req.specifier}, but this is net-gazer "
                f"{__version__}: upgrade net-gazer, or install a {name} release made for it"
            )
    return ""


def create(
    project: str,
    hookspecs: ModuleType,
    *,
    allow: Iterable[str] = (),
    block: Iterable[str] = (),
    order: Iterable[str] = (),
    extra: Iterable[tuple[str, object]] = (),
) -> PluginHost:
    """Build a host for ``project`` (also the entry-point group), load the plugins it may load.

    ``allow``/``block`` come from the configuration; the environment adds to them. ``order``
    names plugins to call first, in that order (``NG_PLUGINS_ORDER`` replaces it); the others
    follow by name, then ``extra``: plugin objects registered directly (tests, embedding). Every
    hook calls its implementations in this order (pluggy's ``tryfirst``/``trylast`` still
    apply), so a later ``ng_enrich_host`` sees, and may override, what an earlier one set.
    """
    extra = list(extra)
    pm = pluggy.PluginManager(project)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm=pm, group=project, trace=bool(os.environ.get("NG_PLUGIN_TRACE")))
    allowed = set(allow) | set(_names(os.environ.get("NG_PLUGINS_ALLOW")))
    blocked = set(block) | set(_names(os.environ.get("NG_PLUGINS_BLOCK")))
    first = _names(os.environ.get("NG_PLUGINS_ORDER")) or list(dict.fromkeys(order))
    rank = {name: i for i, name in enumerate(first)}
    candidates: list[tuple[str, metadata.EntryPoint | None, object]] = [
        (ep.name, ep, None)
        for ep in sorted(metadata.entry_points(group=project), key=lambda e: e.name)
    ]
    candidates += [(name, None, obj) for name, obj in extra]
    candidates.sort(key=lambda c: rank.get(c[0], len(rank)))  # stable: by name, extras last
    chosen: list[tuple[str, object, str]] = []
    for name, ep, obj in candidates:
        if ep is None:
            chosen.append((name, obj, ""))
            continue
        if name in blocked or (allowed and name not in allowed):
            log.info("plugin %s not loaded (blocked or not allowed)", name)
            continue
        if name in host.failed or any(name == c[0] for c in chosen):
            log.warning("plugin name %s is provided twice; keeping the first", name)
            continue
        why = incompatible(ep.dist)
        if why:
            host.failed[name] = why
            log.error("plugin %s is not loaded: %s", name, why)
            continue
        try:
            loaded = ep.load()
        except Exception as exc:
            host.failed[name] = repr(exc)
            log.error("plugin %s (%s) failed to load: %r", name, ep.value, exc)
            continue
        chosen.append((name, loaded, ep.dist.version if ep.dist is not None else ""))
    # pluggy calls the last registered first: register in reverse to call in this order.
    for name, plugin, version in reversed(chosen):
        host.register(plugin, name=name, version=version)
    host.order = [name for name, _, _ in chosen]
    unknown = (allowed | blocked | set(first)) - {
        ep.name for ep in metadata.entry_points(group=project)
    }
    unknown -= {name for name, _ in extra}
    if unknown:
        log.warning(
            "allow/block/order lists name plugins that are not installed: %s",
            ", ".join(sorted(unknown)),
        )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"a plugin implements a hook that does not exist: {exc}") from None
    return host
