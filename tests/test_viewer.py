"""The browser viewer in real headless Chromium, against a real collector (real FalkorDB) filled
by a pcap replay through the real sensor, plus traceroute runs written in the documented graph
schema (docs/schema.md: Trace, RAN, TO, AT, CHANGED) where the traceroute plugin would write them.

What each test expects comes from the capture's reference (tests/pcaps/handshakes.expected.json,
made from tshark) and from the traces defined below, never from the viewer's own output. Every
test fails on a request that leaves loopback (tests/viewer_browser.py).
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from conftest import PCAPS, Collector, graph_query, run_sensor
from playwright.sync_api import Browser, Page, expect
from viewer_browser import axe_source, close_viewer, open_viewer

pytestmark = pytest.mark.timeout(240)

EXPECTED = json.loads((PCAPS / "handshakes.expected.json").read_text())
SENSOR = "gw1"
HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=1</script>"
#: A host name no DPI parser lets through (they accept only host-name characters), stored here
#: as another writer could: the pages must show it as text all the same.
HOSTILE_NAME = "<script>window.__pwned=2</script><b>bold</b>"
NAMED = "203.0.113.20"
SITE = SENSOR  # a sensor's site is its id unless configured

#: The traceroute runs of the scenario: gw1 to 198.51.100.10 (a connection in the capture),
#: TTL 2 silent. The older run went through 198.51.100.2 at TTL 3: one route change.
DST = "198.51.100.10"
HOPS_NOW = ["10.0.0.1", "", "198.51.100.1", DST]
HOPS_BEFORE = ["10.0.0.1", "", "198.51.100.2", DST]
RTTS = [0.8, -1.0, 12.5, 25.0]
#: Where the hops are: the collector's --locations file, and what the hosts carry.
PLACES = {
    "10.0.0.1": (52.52, 13.40, "Berlin", "DE"),
    "198.51.100.1": (50.11, 8.68, "Frankfurt", "DE"),
    "198.51.100.2": (48.86, 2.35, "Paris", "FR"),
    DST: (40.71, -74.01, "New York", "US"),
}


def write_trace(url: str, graph: str, tid: str, hops: list[str], when: float) -> None:
    """One run, as the traceroute plugin stores it (docs/schema.md)."""
    graph_query(
        url, graph,
        "MATCH (s:Sensor {id: $sensor}) "
        "MERGE (t:Trace {id: $id}) SET t.sensor = $sensor, t.src = '192.168.1.254', t.dst = $dst, "
        "t.method = 'udp', t.started = $when, t.finished = $when + 1, t.reached = true, "
        "t.hop_count = size($hops), t.hops = $hops, t.rtts = $rtts "
        "MERGE (s)-[:RAN]->(t) "
        "WITH t MATCH (d:Host {scope: $site, ip: $dst}) MERGE (t)-[:TO]->(d)",
        {"sensor": SENSOR, "id": tid, "dst": DST, "when": when, "hops": hops, "rtts": RTTS,
         "site": SITE},
    )  # fmt: skip
    for ttl, ip in enumerate(hops, start=1):
        if not ip:
            continue
        scope = SITE  # private and documentation ranges: the sensor's site
        lat, lon, city, cc = PLACES[ip]
        graph_query(
            url, graph,
            "MERGE (h:Host {scope: $scope, ip: $ip}) "
            "ON CREATE SET h.family = 4, h.private = $private, h.first_seen = $when "
            "SET h.lat = $lat, h.lon = $lon, h.city = $city, h.country_code = $cc, h.last_seen = $when "
            "WITH h MATCH (t:Trace {id: $id}) "
            "MERGE (t)-[a:AT {ttl: $ttl}]->(h) SET a.rtt_ms = $rtt, a.inferred = false",
            {"scope": scope, "ip": ip, "private": scope != "global", "when": when, "lat": lat,
             "lon": lon, "city": city, "cc": cc, "id": tid, "ttl": ttl, "rtt": RTTS[ttl - 1]},
        )  # fmt: skip


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, falkordb_url: str) -> Iterator[Collector]:
    """A collector with the handshakes capture from gw1, a replay from a hostile sensor id, and
    gw1's two traces to 198.51.100.10."""
    graph = f"t_{uuid.uuid4().hex[:12]}"
    work = tmp_path_factory.mktemp("viewer")
    locations = work / "locations.toml"
    locations.write_text(
        "".join(
            f'[[location]]\nprefix = "{ip}/32"\ncity = "{city}"\ncountry_code = "{cc}"\n'
            f"lat = {lat}\nlon = {lon}\n\n"
            for ip, (lat, lon, city, cc) in PLACES.items()
        )
    )
    c = Collector(
        workdir=work,
        args=["--graph-url", falkordb_url, "--graph", graph, "--locations", str(locations)],
        env={},
    ).start()
    try:
        for pcap, sid in (("handshakes.pcap", SENSOR), ("raw.pcap", HOSTILE)):
            # The reference (handshakes.expected.json) is TCP edges; UDP rows: tests/test_udp.py.
            r = run_sensor(
                "-r", str(PCAPS / pcap), "--collector", c.address, "--sensor-id", sid,
                env={"NG_PLUGINS_BLOCK": "udp"},
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
        now = time.time()
        write_trace(falkordb_url, graph, "trace-before", HOPS_BEFORE, now - 600)
        write_trace(falkordb_url, graph, "trace-now", HOPS_NOW, now - 60)
        graph_query(
            falkordb_url, graph,
            "MATCH (a:Trace {id: 'trace-before'}), (b:Trace {id: 'trace-now'}) "
            "MERGE (a)-[:CHANGED {ttl: 3, before: '198.51.100.2', after: '198.51.100.1'}]->(b)",
        )  # fmt: skip
        graph_query(
            falkordb_url, graph,
            "MATCH (h:Host {ip: $ip}) SET h.name = $name, h.names = [$name]",
            {"ip": NAMED, "name": HOSTILE_NAME},
        )  # fmt: skip
        c.graph = graph  # type: ignore[attr-defined]
        yield c
    finally:
        c.stop()


@pytest.fixture
def viewer(browser: Browser, filled: Collector, request: pytest.FixtureRequest) -> Iterator[Any]:
    v = open_viewer(browser, f"http://127.0.0.1:{filled.http_port}")
    try:
        yield v
        v.check()
    finally:
        close_viewer(v, request.node.name)


def graph_ready(page: Page) -> None:
    expect(page.locator("#status")).to_contain_text("nodes", timeout=20_000)


def cy_eval(page: Page, js: str) -> Any:
    return page.evaluate(f"(() => {{ const cy = window.ngCy; return {js}; }})()")


def servers(port: int | None = None) -> set[str]:
    return {c["server"] for c in EXPECTED if port is None or c["dport"] == port}


def clients(port: int | None = None) -> set[str]:
    return {c["client"] for c in EXPECTED if port is None or c["dport"] == port}


# --- the graph ---------------------------------------------------------------------------------


def test_graph_draws_the_capture_and_the_trace(viewer: Any) -> None:
    page = viewer.goto("/")
    graph_ready(page)
    ips = set(cy_eval(page, "cy.nodes('[kind = \"host\"]').map(n => n.data('ip'))"))
    hops = {h for h in HOPS_NOW if h}
    # every host of the capture, and the hops of the latest trace (not the older one's)
    assert servers() | clients() | hops <= ips
    assert "198.51.100.2" not in ips
    sensors = cy_eval(page, "cy.nodes('[kind = \"sensor\"]').map(n => n.data('label'))")
    assert SENSOR in sensors
    # the silent TTL 2 is a gap on the route edge from 10.0.0.1 to 198.51.100.1
    gap = cy_eval(
        page,
        "cy.edges('[kind = \"route\"]').filter(e => e.source().data('ip') === '10.0.0.1')"
        ".map(e => [e.target().data('ip'), e.data('gap')])",
    )
    assert gap == [["198.51.100.1", 1]]
    # paths layout: the hops read left to right in TTL order
    xs = cy_eval(
        page,
        "['10.0.0.1', '198.51.100.1'].map(ip => cy.nodes().filter(n => n.data('ip') === ip)[0].position('x'))",
    )
    sensor_x = cy_eval(page, "cy.nodes('[kind = \"sensor\"]')[0].position('x')")
    assert sensor_x < xs[0] < xs[1]


def click_node(page: Page, ip: str) -> None:
    """A real mouse click on the node's place on the canvas."""
    pos = cy_eval(
        page,
        f"(() => {{ const n = cy.nodes().filter(n => n.data('ip') === '{ip}')[0]; cy.center(n); "
        "const p = n.renderedPosition(); const r = cy.container().getBoundingClientRect(); "
        "return [r.left + p.x, r.top + p.y]; })()",
    )
    page.mouse.click(pos[0], pos[1])


def test_click_a_node_for_its_panel(viewer: Any) -> None:
    page = viewer.goto("/")
    graph_ready(page)
    conn = next(c for c in EXPECTED if c["server"] == DST)
    click_node(page, DST)
    panel = page.locator("#panel")
    expect(panel.locator("#panel-title")).to_have_text(DST)
    expect(panel).to_contain_text("New York")
    # its connection from the capture, with the reference RTT
    expect(panel.locator("#panel-more")).to_contain_text(conn["client"], timeout=10_000)
    expect(panel.locator("#panel-more")).to_contain_text(f"{conn['rtt_ms']:.2f}")


def test_highlight_the_path_from_a_sensor(viewer: Any) -> None:
    page = viewer.goto("/")
    graph_ready(page)
    page.select_option("#path-sensor", label=SENSOR)
    page.fill("#path-dst", DST)
    page.click("#path-form button[type=submit]")
    want = " → ".join([SENSOR, *[h for h in HOPS_NOW if h]])
    expect(page.locator("#path-hops")).to_have_text(f"Path: {want}")
    lit = set(cy_eval(page, "cy.nodes('.hl').map(n => n.data('ip') || n.data('label'))"))
    assert lit == {SENSOR, *[h for h in HOPS_NOW if h]}
    assert cy_eval(page, "cy.edges('.hl').length") == 3


def test_filter_and_its_error_position(viewer: Any) -> None:
    page = viewer.goto("/")
    graph_ready(page)
    page.fill("#q", "port:8443")
    page.press("#q", "Enter")
    want = servers(8443) | clients(8443)
    page.wait_for_function(
        "want => { const ips = window.ngCy.nodes('[kind = \"host\"]').map(n => n.data('ip')).sort();"
        " return JSON.stringify(ips) === JSON.stringify(want); }",
        arg=sorted(want),
    )
    assert "q=port%3A8443" in page.url
    page.fill("#q", "port:443 rtt>")
    page.press("#q", "Enter")
    err = page.locator("#q-error")
    expect(err).to_be_visible()
    expect(err).to_contain_text("position")
    expect(page.locator("#q")).to_have_attribute("aria-invalid", "true")


def test_a_live_update_arrives_and_positions_stay(viewer: Any, filled: Collector) -> None:
    page = viewer.goto("/?poll=300")
    graph_ready(page)
    before = cy_eval(page, "Object.fromEntries(cy.nodes().map(n => [n.id(), n.position()]))")
    r = run_sensor(
        "-r", str(PCAPS / "sll.pcap"), "--collector", filled.address, "--sensor-id", "gw-live"
    )
    assert r.returncode == 0, r.stderr
    page.wait_for_function(f"window.ngCy.nodes().length > {len(before)}", timeout=20_000)
    after = cy_eval(page, "Object.fromEntries(cy.nodes().map(n => [n.id(), n.position()]))")
    moved = [k for k, p in before.items() if k in after and after[k] != p]
    assert not moved
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload


def test_hostile_sensor_id_renders_as_text(viewer: Any) -> None:
    page = viewer.goto("/sensors")
    cell = page.locator("#table-wrap td", has_text="onerror")
    expect(cell).to_have_text(HOSTILE)
    page.goto(viewer.url("/connections"))
    expect(page.locator("#table-wrap td", has_text="onerror").first).to_have_text(HOSTILE)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#table-wrap img, #table-wrap script").count() == 0


def test_hostile_host_name_renders_as_text(viewer: Any) -> None:
    page = viewer.goto("/")
    graph_ready(page)
    button = page.locator("#node-list-items button", has_text="window.__pwned=2")
    expect(button).to_have_text(f"{HOSTILE_NAME} ({NAMED})")
    button.click()
    expect(page.locator("#panel-title")).to_have_text(NAMED)
    expect(page.locator("#panel dd", has_text="__pwned=2").first).to_have_text(HOSTILE_NAME)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main b, main img").count() == 0
    label = cy_eval(page, f"cy.nodes().filter(n => n.data('ip') === '{NAMED}')[0].data('label')")
    assert label == HOSTILE_NAME  # drawn on the canvas as text


# --- connections and sensors -------------------------------------------------------------------


def test_connections_sort_and_download(viewer: Any, tmp_path: Path) -> None:
    page = viewer.goto("/connections?q=sensor:gw1")
    rows = page.locator("#table-wrap tbody tr")
    expect(rows).to_have_count(len(EXPECTED))
    page.click("th[data-key=rtt_ms] button")  # numbers sort largest first
    top = max((c for c in EXPECTED if c["rtt_ms"] is not None), key=lambda c: c["rtt_ms"])
    expect(rows.first).to_contain_text(top["server"])
    expect(page.locator("th[data-key=rtt_ms]")).to_have_attribute("aria-sort", "descending")
    with page.expect_download() as dl:
        page.click("#download-csv")
    path = tmp_path / "c.csv"
    dl.value.save_as(path)
    got = list(csv.DictReader(io.StringIO(path.read_text())))
    assert {(r["client"], r["server"], int(r["dport"])) for r in got} == {
        (c["client"], c["server"], c["dport"]) for c in EXPECTED
    }
    with page.expect_download() as dl:
        page.click("#download-xlsx")
    xpath = tmp_path / "c.xlsx"
    dl.value.save_as(xpath)
    book = openpyxl.load_workbook(xpath, read_only=True)
    try:
        sheet = book.active
        assert sheet is not None
        table = list(sheet.iter_rows(values_only=True))
    finally:
        book.close()
    head = list(table[0])
    ci, si = head.index("client"), head.index("server")
    assert {(r[ci], r[si]) for r in table[1:]} == {(c["client"], c["server"]) for c in EXPECTED}


def test_sensors_page(viewer: Any) -> None:
    page = viewer.goto("/sensors")
    row = page.locator("tr", has=page.locator("td", has_text="gw1")).first
    expect(row).to_be_visible()
    expect(page.locator("#status")).to_contain_text("sensors")


# --- the map -----------------------------------------------------------------------------------


def test_the_map_draws_paths_offline(viewer: Any) -> None:
    page = viewer.goto("/map")
    expect(page.locator("#status")).to_contain_text("path segments", timeout=20_000)
    assert page.locator("#map path.land").count() > 150  # Natural Earth's 1:110m countries
    # the placed hops of the latest trace, in order: Berlin -> Frankfurt -> New York
    segs = page.locator("#path-list li").all_text_contents()
    assert f"{SENSOR}: 10.0.0.1 → 198.51.100.1 (12.5 ms)" in segs
    # (the API's last route edge, to the destination, carries no RTT yet)
    assert any(s.startswith(f"{SENSOR}: 198.51.100.1 → {DST}") for s in segs)
    assert page.locator("#map .paths path").count() >= 2


# --- keyboard, themes, accessibility -----------------------------------------------------------


def tab_until(page: Page, selector: str, limit: int = 40) -> int:
    for i in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate(
            f"document.activeElement === document.querySelector({json.dumps(selector)})"
        ):
            return i
    raise AssertionError(f"{selector} not reached with {limit} presses of Tab")


def test_keyboard_only(viewer: Any) -> None:
    page = viewer.goto("/")
    graph_ready(page)
    tab_until(page, "#q")
    page.keyboard.type("port:443")
    page.keyboard.press("Enter")
    page.wait_for_function("!document.querySelector('#node-list-items button[data-node]') || true")
    expect(page.locator("#status")).to_contain_text("nodes")
    first = page.locator("#node-list-items button[data-node]").first
    node_text = first.text_content() or ""
    tab_until(page, "#node-list-items button[data-node]", limit=80)
    page.keyboard.press("Enter")
    title = page.locator("#panel-title")
    expect(title).to_be_focused()
    assert (title.text_content() or "") in node_text
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()
    page.goto(viewer.url("/connections"))
    expect(page.locator("#table-wrap tbody tr").first).to_be_visible()
    tab_until(page, "#download-csv")
    with page.expect_download() as dl:
        page.keyboard.press("Enter")
    assert dl.value.suggested_filename.endswith(".csv")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_axe_finds_no_serious_violation(
    browser: Browser, filled: Collector, theme: str, request: pytest.FixtureRequest
) -> None:
    v = open_viewer(browser, f"http://127.0.0.1:{filled.http_port}", color_scheme=theme)
    try:
        for path, ready in (
            ("/", "nodes"),
            ("/map", "segments"),
            ("/connections", "rows"),
            ("/sensors", "sensor"),
        ):
            page = v.goto(path)
            expect(page.locator("#status")).to_contain_text(ready, timeout=20_000)
            assert page.evaluate("document.documentElement.dataset.theme") == theme
            page.add_script_tag(content=axe_source())
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            bad = [
                (x["id"], x["impact"], [n["target"] for n in x["nodes"]][:3])
                for x in result["violations"]
                if x["impact"] in ("serious", "critical")
            ]
            assert not bad, f"{path} ({theme}): {bad}"
        v.check()
    finally:
        close_viewer(v, request.node.name)


def test_the_pages_run_under_their_content_security_policy(
    browser: Browser, filled: Collector, request: pytest.FixtureRequest
) -> None:
    """The other tests let Playwright's own polling scripts past the policy; this one does not,
    and no page may trip it."""
    v = open_viewer(browser, f"http://127.0.0.1:{filled.http_port}", bypass_csp=False)
    try:
        page = v.page
        page.add_init_script(
            "window.__csp = []; document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        for path, ready in (
            ("/", "nodes"),
            ("/map", "segments"),
            ("/connections", "rows"),
            ("/sensors", "sensor"),
        ):
            v.goto(path)
            expect(page.locator("#status")).to_contain_text(ready, timeout=20_000)
            assert page.evaluate("window.__csp") == [], path
        v.check()
    finally:
        close_viewer(v, request.node.name)


def test_theme_switch_is_remembered(viewer: Any) -> None:
    page = viewer.goto("/sensors")
    start = page.evaluate("document.documentElement.dataset.theme")
    page.click("#theme-toggle")
    other = "dark" if start == "light" else "light"
    assert page.evaluate("document.documentElement.dataset.theme") == other
    page.goto(viewer.url("/connections"))
    assert page.evaluate("document.documentElement.dataset.theme") == other
