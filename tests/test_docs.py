"""The documentation holds: every document a file refers to is in the repository, and the README's
query example runs."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, ROOT, expected, run_sensor, tool

TEXT_SUFFIXES = {".md", ".py", ".proto", ".toml", ".sh", ".service", ".yml", ".yaml", ".txt", ""}
#: Markdown links, and bare mentions of Markdown documents (``SECURITY.md``, ``docs/schema.md``).
LINK = re.compile(r"\]\(([^)\s]+)\)")
MENTION = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    files = []
    for name in out.splitlines():
        path = ROOT / name
        if path == Path(__file__).resolve():
            continue  # it names missing documents on purpose, to test the checker
        if path.suffix in TEXT_SUFFIXES and path.is_file() and "fuzz_corpus" not in path.parts:
            files.append(path)
    return files


def references(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    found = [m.group(1) for m in LINK.finditer(text)] if path.suffix == ".md" else []
    found += [m.group(1) for m in MENTION.finditer(text)]
    return [r for r in found if not re.match(r"^[a-z][a-z0-9+.-]*:", r) and not r.startswith("#")]


def resolves(path: Path, ref: str) -> bool:
    target = ref.split("#", 1)[0]
    if not target:
        return True
    return any((base / target).exists() for base in (path.parent, ROOT))


def test_every_document_a_file_refers_to_is_in_the_repository() -> None:
    here = Path(__file__).resolve()  # its own examples of missing documents are deliberate
    missing = [
        f"{path.relative_to(ROOT)} -> {ref}"
        for path in tracked_files()
        if path != here
        for ref in references(path)
        if not resolves(path, ref)
    ]
    assert missing == []


def test_the_checker_sees_a_missing_document(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("See [the plan](PLAN.md) and docs/nowhere.md, or [ok](page.md).\n")
    refs = references(page)
    assert {"PLAN.md", "docs/nowhere.md", "page.md"} <= set(refs)
    assert {r for r in refs if not resolves(page, r)} == {"PLAN.md", "docs/nowhere.md"}


def readme_query_command() -> list[str]:
    """The README's net-gazer-query example, as argv (the line continuations joined)."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    (block,) = [b for b in blocks if "net-gazer-query" in b]
    return shlex.split(block.replace("\\\n", " "))


def test_the_readme_query_example_runs(collector_factory: Any, tmp_path: Path) -> None:
    """After a replay into a collector with an embedded FalkorDB, the README's example, pointed at
    that collector's data directory, prints the fixture's edges, busiest first."""
    argv = readme_query_command()
    assert argv[0].endswith("net-gazer-query")
    data = tmp_path / "data"
    argv = [tool("net-gazer-query"), *(str(data) if a == ".run/data" else a for a in argv[1:])]
    collector = collector_factory("--data-dir", str(data)).start()
    result = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--collector", collector.address)
    assert result.returncode == 0, result.stderr
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["c.ip", "s.ip", "e.dport", "e.count", "e.rtt_ms"]
    rows = [line.split() for line in lines[2:-1]]
    edges = expected("handshakes.expected.json")
    assert lines[-1] == f"({min(10, len(edges))} rows)"
    counts = sorted((e["count"] for e in edges), reverse=True)[:10]
    assert [int(r[3]) for r in rows] == counts
    for client, server, dport, count, rtt in rows:
        (edge,) = [
            e
            for e in edges
            if (e["client"], e["server"], e["dport"]) == (client, server, int(dport))
        ]
        assert int(count) == edge["count"]
        if edge["rtt_ms"] is None:
            assert rtt == "null"
        else:
            assert float(rtt) == pytest.approx(edge["rtt_ms"], abs=0.001)
