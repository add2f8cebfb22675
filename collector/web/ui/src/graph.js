// The graph page: /api/graph drawn with Cytoscape.js, polled with ETags, positions kept stable.
import cytoscape from "cytoscape";
import fcose from "cytoscape-fcose";
import { clear, cssVar, fmtNum, fmtTime, getJSON, h, initTheme, pageParam, setPageParam, showFilterError } from "./common.js";
import { buildModel, edgeColour, nodeSize, pathsLayout, placeNew } from "./model.js";

cytoscape.use(fcose);

const root = document.getElementById("graph-page");
const POLL_MS = Number(pageParam("poll")) || Number(root.dataset.poll) || 5000;

const els = {
  form: document.getElementById("filter-form"),
  q: document.getElementById("q"),
  qError: document.getElementById("q-error"),
  layout: document.getElementById("layout"),
  colour: document.getElementById("colour"),
  collapse: document.getElementById("collapse"),
  live: document.getElementById("live"),
  relayout: document.getElementById("relayout"),
  status: document.getElementById("status"),
  panel: document.getElementById("panel"),
  nodeList: document.getElementById("node-list-items"),
  pathForm: document.getElementById("path-form"),
  pathSensor: document.getElementById("path-sensor"),
  pathDst: document.getElementById("path-dst"),
  pathResult: document.getElementById("path-result"),
  legend: document.getElementById("legend"),
};

const state = {
  etag: null,
  body: null,
  model: { nodes: [], edges: [] },
  positions: new Map(),
  layoutDone: false,
  timer: null,
  selected: null,
  updates: 0,
};

function styles() {
  const c = {
    fg: cssVar("--fg"),
    bg: cssVar("--bg"),
    sensor: cssVar("--node-sensor"),
    host: cssVar("--node-host"),
    priv: cssVar("--node-private"),
    edge: cssVar("--edge"),
    hl: cssVar("--highlight"),
  };
  return [
    { selector: "node", style: { "background-color": c.host, label: "data(label)", color: c.fg, "font-size": 10, "text-valign": "bottom", "text-margin-y": 3, width: "data(size)", height: "data(size)", "text-background-color": c.bg, "text-background-opacity": 0.7, "text-background-padding": 1, "min-zoomed-font-size": 7 } },
    { selector: "node[kind = 'sensor']", style: { "background-color": c.sensor, shape: "round-rectangle" } },
    { selector: "node[?private]", style: { "background-color": c.priv } },
    { selector: "node[?inferred]", style: { "border-width": 2, "border-style": "dashed", "border-color": c.fg } },
    { selector: "edge", style: { width: 1.5, "line-color": "data(colour)", "target-arrow-color": "data(colour)", "target-arrow-shape": "triangle", "arrow-scale": 0.7, "curve-style": "bezier", opacity: 0.85 } },
    { selector: "edge[kind = 'origin']", style: { "line-style": "dotted", width: 1 } },
    { selector: "edge[kind = 'connects']", style: { "curve-style": "unbundled-bezier", "control-point-distances": 25, "line-style": "solid" } },
    { selector: "edge[gap > 0]", style: { "line-style": "dashed", "line-dash-pattern": [6, 4], label: "data(gapLabel)", "font-size": 9, color: c.fg, "text-background-color": c.bg, "text-background-opacity": 0.8 } },
    { selector: "edge[?inferred]", style: { "line-style": "dotted" } },
    { selector: ".faded", style: { opacity: 0.12 } },
    { selector: "node.hl", style: { "border-width": 4, "border-color": c.hl, "border-style": "solid", opacity: 1 } },
    { selector: "edge.hl", style: { width: 4, "line-color": c.hl, "target-arrow-color": c.hl, opacity: 1, "z-index": 10 } },
    { selector: "node:selected", style: { "border-width": 4, "border-color": c.fg } },
  ];
}

const cy = cytoscape({
  container: document.getElementById("cy"),
  elements: [],
  style: styles(),
  wheelSensitivity: 0.3,
  minZoom: 0.02,
  maxZoom: 4,
  boxSelectionEnabled: false,
  textureOnViewport: true,
  hideEdgesOnViewport: true,
});
window.ngCy = cy; // for tests and the bench: the live instance

document.addEventListener("ng-theme", () => cy.style(styles()));

function cyData(x, mode) {
  if (x.source !== undefined) {
    const colour = edgeColour(x, mode) || cssVar("--edge");
    return { ...x, colour, gapLabel: x.gap > 0 ? `${x.gap} silent` : "" };
  }
  return { ...x, size: nodeSize(x), private: Boolean(x.private) };
}

function layoutAll() {
  if (els.layout.value === "paths") {
    const { positions } = pathsLayout(state.model);
    cy.nodes().positions((n) => positions.get(n.id()) || { x: 0, y: 0 });
    cy.fit(undefined, 30);
    remember();
    return;
  }
  const opts = { name: "fcose", animate: false, randomize: true, quality: cy.nodes().length > 1500 ? "draft" : "default", nodeRepulsion: 6000, idealEdgeLength: 90, numIter: 1500 };
  const lay = cy.layout(opts);
  lay.one("layoutstop", () => {
    cy.fit(undefined, 30);
    remember();
  });
  lay.run();
}

function remember() {
  state.positions = new Map(cy.nodes().map((n) => [n.id(), { ...n.position() }]));
}

function render(body) {
  const model = buildModel(body, { collapse: els.collapse.checked });
  state.model = model;
  const mode = els.colour.value;
  const want = new Set([...model.nodes.map((n) => n.id), ...model.edges.map((e) => e.id)]);
  cy.batch(() => {
    cy.elements().forEach((el) => {
      if (!want.has(el.id())) el.remove();
    });
    const positions = state.layoutDone ? placeNew(model, state.positions, els.layout.value) : new Map();
    for (const n of model.nodes) {
      const ex = cy.getElementById(n.id);
      if (ex.nonempty()) ex.data(cyData(n, mode));
      else cy.add({ group: "nodes", data: cyData(n, mode), position: positions.get(n.id) || { x: 0, y: 0 } });
    }
    for (const e of model.edges) {
      const ex = cy.getElementById(e.id);
      if (ex.nonempty()) ex.data(cyData(e, mode));
      else cy.add({ group: "edges", data: cyData(e, mode) });
    }
  });
  if (!state.layoutDone && model.nodes.length) {
    layoutAll();
    state.layoutDone = true;
  } else {
    remember();
  }
  renderNodeList();
  renderPathSensors();
  renderLegend();
  cy.resize(); // the page above the canvas may have changed height: refresh cached coordinates
  if (state.selected && cy.getElementById(state.selected).empty()) closePanel();
}

function renderLegend() {
  const mode = els.colour.value;
  clear(els.legend);
  const sw = (colour, text) => h("span", {}, h("span", { class: "swatch", style: `background:${colour}` }), text);
  if (mode === "quality") {
    els.legend.append(sw("#2da44e", "no loss / all hops answer"), sw("#d4a72c", "2.5 % retransmitted / half answer"), sw("#cf222e", "5 %+ / silent"));
  } else {
    els.legend.append(sw("#2da44e", "RTT < 20 ms"), sw("#d4a72c", "≈ 70 ms"), sw("#cf222e", "> 250 ms"));
  }
  els.legend.append(h("span", {}, "dashed: silent hops · dotted border: inferred hop · size: handshakes"));
}

function renderNodeList() {
  clear(els.nodeList);
  const nodes = [...state.model.nodes].sort((a, b) => (a.kind === "sensor") - (b.kind === "sensor") || b.traffic - a.traffic || (a.label < b.label ? -1 : 1));
  nodes.sort((a, b) => (b.kind === "sensor") - (a.kind === "sensor"));
  for (const n of nodes.slice(0, 300)) {
    const text = n.kind === "sensor" ? `Sensor ${n.label}` : n.label === n.ip ? n.ip : `${n.label} (${n.ip})`;
    els.nodeList.append(h("li", {}, h("button", { type: "button", "data-node": n.id, onclick: () => select(n.id, true) }, text)));
  }
  if (nodes.length > 300) els.nodeList.append(h("li", {}, `… and ${nodes.length - 300} more; narrow the filter`));
}

function renderPathSensors() {
  const sensors = state.model.nodes.filter((n) => n.kind === "sensor");
  const keep = els.pathSensor.value;
  clear(els.pathSensor);
  for (const s of sensors) els.pathSensor.append(h("option", { value: s.id }, s.label));
  if (sensors.some((s) => s.id === keep)) els.pathSensor.value = keep;
}

// ---- selection and the panel ---------------------------------------------------------------
function closePanel() {
  state.selected = null;
  cy.nodes().unselect();
  clear(els.panel).append(h("h2", { id: "panel-title", tabindex: "-1" }, "Details"), h("p", {}, "Select a node (click it, or pick it in the list below) to see its addresses, place, round trips and paths."));
}

function row(dl, term, value) {
  if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) return;
  dl.append(h("dt", {}, term), h("dd", {}, Array.isArray(value) ? value.join(", ") : String(value)));
}

async function select(id, focusPanel = false) {
  const node = cy.getElementById(id);
  if (node.empty()) return;
  state.selected = id;
  cy.nodes().unselect();
  node.select();
  const d = node.data();
  clear(els.panel);
  const title = h("h2", { id: "panel-title", tabindex: "-1" }, d.kind === "sensor" ? `Sensor ${d.label}` : d.ip || d.label);
  els.panel.append(title);
  if (focusPanel) title.focus();
  const dl = h("dl", {});
  els.panel.append(dl);
  if (d.kind === "sensor") {
    row(dl, "id", d.id);
    row(dl, "hostname", d.hostname);
    row(dl, "version", d.version);
    row(dl, "last seen", fmtTime(d.last_seen));
    els.panel.append(h("p", {}, h("a", { href: `/sensors#sensor-${encodeURIComponent(d.id)}` }, "Sensor health")));
    return;
  }
  row(dl, "address", d.ip);
  row(dl, "name", d.name);
  row(dl, "scope", d.scope);
  row(dl, "place", [d.city, d.country || d.country_code].filter(Boolean).join(", "));
  row(dl, "ASN", d.asn ? `AS${d.asn}${d.as_org ? ` ${d.as_org}` : ""}` : "");
  row(dl, "inferred hop", d.inferred ? "yes (filled in from the stop set)" : "");
  const actions = h("p", {});
  for (const s of state.model.nodes.filter((n) => n.kind === "sensor")) {
    actions.append(h("button", { type: "button", class: "path-from", onclick: () => highlightPath(s.id, id) }, `Highlight path from ${s.label}`), " ");
  }
  els.panel.append(actions);
  const more = h("div", { id: "panel-more", "aria-busy": "true" }, h("p", {}, "Loading…"));
  els.panel.append(more);
  const url = `/api/hosts/${encodeURIComponent(d.ip || d.id)}${d.scope ? `?scope=${encodeURIComponent(d.scope)}` : ""}`;
  try {
    const { body } = await getJSON(url);
    if (state.selected !== id) return;
    hostDetails(more, body, dl);
  } catch (err) {
    clear(more).append(h("p", { class: "bad" }, `No details: ${err.message}`));
  }
  more.removeAttribute("aria-busy");
}

function table(headers, rows) {
  return h(
    "table",
    { class: "data" },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => (c instanceof Node ? h("td", {}, c) : h("td", {}, c ?? "")))))),
  );
}

function hostDetails(box, body, dl) {
  clear(box);
  const host = body.host || {};
  row(dl, "names", host.names);
  if (host.lat !== undefined && host.lat !== null) row(dl, "lat, lon", `${fmtNum(host.lat, 2)}, ${fmtNum(host.lon, 2)}`);
  row(dl, "place from", host.geo_source);
  if (body.other_scopes && body.other_scopes.length) row(dl, "also seen at", body.other_scopes);
  const conns = [...((body.connections || {}).as_client || []), ...((body.connections || {}).as_server || [])];
  const rtts = conns.map((c) => Number(c.rtt_ms)).filter((x) => Number.isFinite(x) && x > 0);
  if (rtts.length) row(dl, "handshake RTT", `${fmtNum(Math.min(...rtts), 2)} – ${fmtNum(Math.max(...rtts), 2)} ms`);
  const losses = conns.map((c) => Number(c.loss_rate)).filter((x) => Number.isFinite(x));
  if (losses.length) row(dl, "TCP loss", `${fmtNum(100 * Math.max(...losses), 2)} % retransmitted (worst connection)`);
  if (conns.length) {
    box.append(h("h3", {}, `Connections (${conns.length})`));
    box.append(
      table(
        ["peer", "port", "handshakes", "RTT ms", "sensor"],
        conns.slice(0, 50).map((c) => [c.client === host.ip ? c.server : c.client, `${c.dport ?? ""}/${c.proto ?? "tcp"}`, c.count, fmtNum(c.rtt_ms, 2), c.sensor]),
      ),
    );
  }
  const paths = body.paths || [];
  if (paths.length) {
    box.append(h("h3", {}, "Paths (latest trace per sensor)"));
    for (const p of paths) {
      const hops = p.hops || (p.hop_list || []).map((x) => x.ip);
      const rtts = p.rtts || [];
      const items = h("ol", { class: "hops" });
      hops.forEach((hop, i) => items.append(h("li", {}, hop || "* (silent)", rtts[i] !== undefined && rtts[i] >= 0 ? ` ${fmtNum(rtts[i], 1)} ms` : "")));
      box.append(h("p", {}, h("strong", {}, `from ${p.sensor}`), ` at ${fmtTime(p.finished ?? p.started)}${p.reached === false ? ", not reached" : ""}`), items);
    }
  }
  const changes = body.route_changes || body.changes || [];
  if (changes.length) {
    box.append(h("h3", {}, `Route changes (${changes.length})`));
    box.append(
      table(
        ["when", "sensor", "TTL", "hop before", "hop after"],
        changes.slice(0, 50).map((c) => [fmtTime(c.at), c.sensor ?? "", c.ttl ?? "", c.before || "*", h("span", { class: "diff" }, c.after || "*")]),
      ),
    );
  }
  if (!conns.length && !paths.length && !changes.length) box.append(h("p", {}, "No connections or paths recorded for this host."));
}

// ---- path highlight ------------------------------------------------------------------------
function clearHighlight() {
  cy.elements().removeClass("hl faded");
  clear(els.pathResult);
}

function findTarget(text) {
  const t = text.trim();
  if (!t) return null;
  if (cy.getElementById(t).nonempty()) return t;
  const n = state.model.nodes.find((x) => x.ip === t || x.label === t || x.name === t);
  return n ? n.id : null;
}

function highlightPath(sensorId, targetId) {
  clearHighlight();
  const src = cy.getElementById(sensorId);
  const dst = cy.getElementById(targetId);
  if (src.empty() || dst.empty()) {
    els.pathResult.append(h("span", { class: "bad" }, "No such sensor or destination in the graph."));
    return false;
  }
  const walk = cy.elements().filter((el) => el.isNode() || ["origin", "route"].includes(el.data("kind")));
  const dj = walk.dijkstra({ root: src, directed: true, weight: (e) => 1 + (e.data("gap") || 0) });
  let path = dj.distanceTo(dst) === Infinity ? null : dj.pathTo(dst);
  if (!path) {
    // no traced path: a sensor that saw a connection to it still links to it through that client
    const direct = cy.elements().filter((el) => el.isNode() || el.data("kind") !== "route");
    const dj2 = direct.dijkstra({ root: src, directed: false });
    path = dj2.distanceTo(dst) === Infinity ? null : dj2.pathTo(dst);
  }
  if (!path) {
    els.pathResult.append(h("span", { class: "bad" }, `No path from ${src.data("label")} to ${dst.data("label")} in the graph.`));
    return false;
  }
  cy.elements().addClass("faded");
  path.removeClass("faded").addClass("hl");
  const hops = path.nodes().map((n) => n.data("label"));
  els.pathResult.append(h("span", { id: "path-hops" }, `Path: ${hops.join(" → ")}`), " ", h("button", { type: "button", onclick: clearHighlight }, "Clear"));
  cy.animate({ fit: { eles: path, padding: 60 }, duration: 200 });
  return true;
}

els.pathForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const target = findTarget(els.pathDst.value);
  if (!target) {
    clearHighlight();
    els.pathResult.append(h("span", { class: "bad" }, `No node “${els.pathDst.value}” in the graph.`));
    return;
  }
  highlightPath(els.pathSensor.value, target);
});

// ---- loading and polling -------------------------------------------------------------------
function graphUrl() {
  const p = new URLSearchParams();
  if (els.q.value.trim()) p.set("q", els.q.value.trim());
  if (pageParam("limit")) p.set("limit", pageParam("limit"));
  const s = p.toString();
  return `/api/graph${s ? `?${s}` : ""}`;
}

async function load({ reset = false } = {}) {
  if (reset) {
    state.etag = null;
  }
  let res;
  try {
    res = await getJSON(graphUrl(), state.etag);
  } catch (err) {
    if (err.api && err.api.status === 400) {
      showFilterError(els.q, els.qError, err.api);
      els.status.textContent = "The filter was not applied.";
    } else {
      els.status.textContent = `Could not load the graph: ${err.message}. Retrying.`;
    }
    return;
  }
  showFilterError(els.q, els.qError, null);
  const now = new Date().toISOString().slice(11, 19);
  if (res.status === 304) {
    els.status.dataset.checked = now;
    return;
  }
  state.etag = res.etag;
  state.body = res.body;
  if (reset) {
    cy.elements().remove();
    state.layoutDone = false;
  }
  render(res.body);
  state.updates += 1;
  els.status.dataset.updates = String(state.updates);
  const meta = (res.body && res.body.meta) || {};
  const truncated = meta.truncated ? ` (the newest ${meta.limit} paths; narrow the filter for the rest)` : "";
  els.status.textContent = `${state.model.nodes.length} nodes, ${state.model.edges.length} edges${truncated}; updated ${now} UTC${els.live.checked ? ", live" : ""}.`;
}

function schedule() {
  clearTimeout(state.timer);
  if (!els.live.checked) return;
  state.timer = setTimeout(async () => {
    if (!document.hidden) await load();
    schedule();
  }, POLL_MS);
}

els.form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  setPageParam("q", els.q.value.trim());
  clearHighlight();
  await load({ reset: true });
  schedule();
});
els.layout.addEventListener("change", () => {
  setPageParam("layout", els.layout.value === "paths" ? "" : els.layout.value);
  layoutAll();
});
els.relayout.addEventListener("click", layoutAll);
els.colour.addEventListener("change", () => state.body && render(state.body));
els.collapse.addEventListener("change", () => {
  if (!state.body) return;
  cy.edges().remove();
  render(state.body);
});
els.live.addEventListener("change", schedule);
cy.on("tap", "node", (ev) => select(ev.target.id()));
cy.on("tap", (ev) => {
  if (ev.target === cy) clearHighlight();
});
document.addEventListener("keydown", (ev) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
  if (ev.key === "/" && !typing) {
    ev.preventDefault();
    els.q.focus();
  } else if (ev.key === "Escape") {
    clearHighlight();
    if (state.selected) closePanel();
  }
});

initTheme();
els.q.value = pageParam("q");
if (pageParam("layout") === "network") els.layout.value = "network";
closePanel();
renderLegend();
window.addEventListener("resize", () => cy.resize());
load().then(schedule);
