"""The plugin guide cannot drift: the hook reference is generated from the hookspecs and is fresh,
every hook has a docstring, a section in the guide and a test named for it, and the code the
guide shows is included from the example plugin, whose tests run it."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
from types import ModuleType

import pytest
from conftest import ROOT

from net_gazer.collector import hookspecs as collector_hookspecs
from net_gazer.sensor import hookspecs as sensor_hookspecs

GUIDE = ROOT / "docs/plugins.md"
REFERENCE = ROOT / "docs/plugin-hooks.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_plugin_docs", ROOT / "scripts" / "gen_plugin_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_plugin_docs"] = module
    spec.loader.exec_module(module)
    return module


def hooks() -> list[tuple[str, str]]:
    """(project, hook name) of every hook specification of both hosts."""
    out = []
    for module, project in (
        (sensor_hookspecs, "net_gazer.sensor"),
        (collector_hookspecs, "net_gazer.collector"),
    ):
        out += [
            (project, name)
            for name, fn in vars(module).items()
            if inspect.isfunction(fn) and getattr(fn, f"{project}_spec", None) is not None
        ]
    assert len(out) >= 12
    return out


def test_the_committed_reference_and_guide_are_fresh() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_plugin_docs.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("project", "hook"), hooks())
def test_every_hook_is_documented_and_tested(project: str, hook: str) -> None:
    reference = REFERENCE.read_text()
    assert f"### {hook}\n" in reference
    (signature,) = re.findall(rf"```python\n(def {hook}\(.*?)\n```", reference)
    module = sensor_hookspecs if project == "net_gazer.sensor" else collector_hookspecs
    assert signature == f"def {hook}{inspect.signature(getattr(module, hook))}".replace("'", "")
    assert f"{REFERENCE.name}#{hook}" in GUIDE.read_text(), (
        f"docs/plugins.md does not mention {hook}"
    )
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert re.search(rf"^(async )?def test_{hook}(_\w+)?\(", tests, re.M), (
        f"no test is named for {hook}: add tests/test_plugins.py::test_{hook}"
    )


def test_a_hook_without_a_docstring_stops_the_reference() -> None:
    gen = load_generator()
    source = '''
import pluggy
spec = pluggy.HookspecMarker("example")

# -- stage ---
@spec
def ng_documented(ctx) -> None:
    """Called when documented."""


@spec
def ng_silent(ctx) -> None:
    pass
'''
    module = ModuleType("example_hookspecs")
    exec(compile(source, "example_hookspecs", "exec"), module.__dict__)
    with pytest.raises(gen.DocError, match=r"hook ng_silent .* has no docstring"):
        gen.hooks_of(module, source, "example")
    module.ng_silent.__doc__ = "Called when silent."
    found = gen.hooks_of(module, source, "example")
    assert [(h.name, h.section) for h in found] == [
        ("ng_documented", "Stage"),
        ("ng_silent", "Stage"),
    ]
    assert found[0].signature == "def ng_documented(ctx) -> None"


def test_the_guide_includes_real_code_from_the_example() -> None:
    gen = load_generator()
    text = GUIDE.read_text()
    includes = gen.INCLUDE.findall(text)
    assert len(includes) >= 6
    for _, path, name, _, _ in includes:
        assert (ROOT / path).is_file(), path
        code = gen.extract(ROOT / path, name or None)
        assert code in text
    assert any("examples/net-gazer-plugin-mss/" in path for _, path, *_ in includes)
    stale = text.replace("return None  # not ours", "return None  # edited by hand", 1)
    assert stale != text and gen.guide(stale) == text  # a hand edit is put back
