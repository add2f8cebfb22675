// The graph as the viewer understands it, built from /api/graph's Cytoscape elements. Pure
// functions, no DOM: the graph page, the map and the renderer bench share them.

const num = (v) => (v === null || v === undefined || v === "" ? null : Number.isFinite(Number(v)) ? Number(v) : null);

/** The elements of an /api/graph answer, whether wrapped in {elements: ...} or not. */
export function elementsOf(body) {
  const els = body && body.elements ? body.elements : body || {};
  return { nodes: els.nodes || [], edges: els.edges || [] };
}

function nodeKind(d) {
  const k = String(d.kind ?? d.type ?? d.label_kind ?? d.labels ?? "").toLowerCase();
  if (k.includes("sensor")) return "sensor";
  if (k.includes("trace")) return "trace";
  return "host";
}

function edgeKind(d) {
  const k = String(d.kind ?? d.type ?? d.rel ?? d.relation ?? "").toLowerCase();
  if (k.includes("origin")) return "origin";
  if (k.includes("route")) return "route";
  if (k.includes("connect")) return "connects";
  return k || "other";
}

/** One node's data with the fields the viewer uses filled in; the API's own fields are kept. */
export function normalizeNode(d) {
  const kind = nodeKind(d);
  const ip = d.ip ?? (kind === "host" ? d.id : undefined);
  const label = d.name || d.label || d.hostname || ip || d.id;
  return {
    ...d,
    id: String(d.id),
    kind,
    ip: ip === undefined ? undefined : String(ip),
    label: kind === "sensor" ? String(d.label || d.id) : String(label),
    inferred: Boolean(d.inferred),
    lat: num(d.lat),
    lon: num(d.lon),
  };
}

function edgeRtt(d) {
  if (num(d.rtt_ms) !== null) return num(d.rtt_ms);
  const sum = num(d.rtt_ms_sum);
  const n = num(d.rtt_samples);
  return sum !== null && n ? sum / n : null;
}

/** Retransmitted share of the data segments (quality plugin), or null when not measured. */
function edgeLoss(d) {
  if (num(d.loss) !== null) return num(d.loss);
  if (num(d.loss_rate) !== null) return num(d.loss_rate);
  const r = num(d.retransmits);
  const seg = num(d.data_segments) ?? num(d.segments);
  if (r === null || !seg) return null;
  return r / seg;
}

export function normalizeEdge(d, i = 0) {
  const kind = edgeKind(d);
  return {
    ...d,
    id: String(d.id ?? `${kind}:${d.source}>${d.target}:${d.sensor ?? ""}:${d.dport ?? d.gap ?? i}`),
    source: String(d.source),
    target: String(d.target),
    kind,
    gap: num(d.gap) ?? 0,
    count: num(d.count) ?? 0,
    rtt: edgeRtt(d),
    lossRate: edgeLoss(d),
    responseRate: num(d.response_rate) ?? num(d.responded),
    inferred: Boolean(d.inferred),
    sensors: d.sensors || (d.sensor !== undefined && d.sensor !== null ? [String(d.sensor)] : []),
  };
}

/** Parallel edges (one per sensor, or per port) between two nodes become one, with sums. */
export function collapseEdges(edges) {
  const groups = new Map();
  for (const e of edges) {
    const key = `${e.kind}\u0000${e.source}\u0000${e.target}`;
    const g = groups.get(key);
    if (!g) {
      groups.set(key, { ...e, id: `c:${key}`, parallel: 1, _rttw: e.rtt !== null ? e.rtt * Math.max(1, e.count) : 0, _rttn: e.rtt !== null ? Math.max(1, e.count) : 0, sensors: [...e.sensors] });
      continue;
    }
    g.parallel += 1;
    g.count += e.count;
    g.gap = Math.min(g.gap, e.gap);
    g.inferred = g.inferred && e.inferred;
    if (e.rtt !== null) {
      g._rttw += e.rtt * Math.max(1, e.count);
      g._rttn += Math.max(1, e.count);
    }
    if (e.lossRate !== null) g.lossRate = Math.max(g.lossRate ?? 0, e.lossRate);
    if (e.responseRate !== null) g.responseRate = Math.min(g.responseRate ?? 1, e.responseRate);
    for (const s of e.sensors) if (!g.sensors.includes(s)) g.sensors.push(s);
  }
  const out = [];
  for (const g of groups.values()) {
    g.rtt = g._rttn ? g._rttw / g._rttn : null;
    delete g._rttw;
    delete g._rttn;
    out.push(g);
  }
  return out;
}

/** The whole model: nodes and edges normalized, traffic per node, and the edges as drawn. */
export function buildModel(body, { collapse = true } = {}) {
  const { nodes, edges } = elementsOf(body);
  const n = nodes.map((x) => normalizeNode(x.data || x));
  const ids = new Set(n.map((x) => x.id));
  let e = edges.map((x, i) => normalizeEdge(x.data || x, i)).filter((x) => ids.has(x.source) && ids.has(x.target));
  if (collapse) e = collapseEdges(e);
  const traffic = new Map();
  for (const x of e) {
    if (x.kind !== "connects") continue;
    traffic.set(x.source, (traffic.get(x.source) || 0) + x.count);
    traffic.set(x.target, (traffic.get(x.target) || 0) + x.count);
  }
  for (const x of n) x.traffic = num(x.traffic) ?? traffic.get(x.id) ?? 0;
  return { nodes: n, edges: e };
}

// ---- colours ---------------------------------------------------------------------------------
// RTT: green under 20 ms, through yellow at 80 ms, red from 250 ms (log scale between).
// Loss: green at 0, red from 5 % retransmitted. Response rate: red at 0, green at 1.
function mix(a, b, t) {
  const p = (c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
  const [x, y] = [p(a), p(b)];
  const v = x.map((c, i) => Math.round(c + (y[i] - c) * t));
  return `#${v.map((c) => c.toString(16).padStart(2, "0")).join("")}`;
}
const GOOD = "#2da44e";
const MID = "#d4a72c";
const BAD = "#cf222e";

function ramp(t) {
  const u = Math.max(0, Math.min(1, t));
  return u < 0.5 ? mix(GOOD, MID, u * 2) : mix(MID, BAD, (u - 0.5) * 2);
}

export function rttColour(ms) {
  if (ms === null || ms === undefined) return null;
  const t = (Math.log10(Math.max(ms, 1)) - Math.log10(20)) / (Math.log10(250) - Math.log10(20));
  return ramp(t);
}

export function lossColour(rate) {
  if (rate === null || rate === undefined) return null;
  return ramp(rate / 0.05);
}

export function responseColour(rate) {
  if (rate === null || rate === undefined) return null;
  return ramp(1 - rate);
}

/** The colour of an edge in a mode: "rtt" or "quality" (loss for connections, response rate for routes). */
export function edgeColour(e, mode) {
  if (e.kind === "origin") return null;
  if (mode === "quality") return e.kind === "route" ? responseColour(e.responseRate) : lossColour(e.lossRate);
  return rttColour(e.rtt);
}

export function nodeSize(n) {
  const base = n.kind === "sensor" ? 30 : 16;
  return Math.round(base + 5 * Math.log2(1 + (n.traffic || 0)));
}

// ---- layouts ---------------------------------------------------------------------------------
export const COL_W = 190;
export const ROW_H = 46;

/**
 * The paths layout: sensors in column 0, each hop one column per TTL after them (a silent TTL
 * leaves its column empty), so a traceroute reads left to right. Connection clients that no path
 * reaches sit left of the sensors; servers no trace reached sit after the last hop.
 * Returns Map id -> {x, y}.
 */
export function pathsLayout(model) {
  const col = new Map();
  const out = new Map();
  for (const n of model.nodes) if (n.kind === "sensor") col.set(n.id, 0);
  const hops = model.edges.filter((e) => e.kind === "origin" || e.kind === "route");
  // Shortest distance in TTLs; bounded relaxation (routes are short, gaps are small).
  for (let round = 0; round < 64; round += 1) {
    let changed = false;
    for (const e of hops) {
      const a = col.get(e.source);
      if (a === undefined) continue;
      const step = e.kind === "origin" ? 1 : 1 + e.gap;
      const b = col.get(e.target);
      if (b === undefined || a + step < b) {
        col.set(e.target, a + step);
        changed = true;
      }
    }
    if (!changed) break;
  }
  let maxCol = 0;
  for (const c of col.values()) maxCol = Math.max(maxCol, c);
  for (const e of model.edges) {
    if (e.kind !== "connects") continue;
    if (!col.has(e.target) && col.has(e.source)) col.set(e.target, maxCol + 1);
  }
  for (const e of model.edges) {
    if (e.kind !== "connects") continue;
    if (!col.has(e.source)) col.set(e.source, col.has(e.target) ? -1 : -1);
    if (!col.has(e.target)) col.set(e.target, maxCol + 1);
  }
  for (const n of model.nodes) if (!col.has(n.id)) col.set(n.id, maxCol + 2);
  // Order each column by the mean row of its predecessors (fewer crossings), then by id.
  const preds = new Map();
  for (const e of model.edges) {
    if (!preds.has(e.target)) preds.set(e.target, []);
    preds.get(e.target).push(e.source);
  }
  const byCol = new Map();
  for (const n of model.nodes) {
    const c = col.get(n.id);
    if (!byCol.has(c)) byCol.set(c, []);
    byCol.get(c).push(n);
  }
  const row = new Map();
  for (const c of [...byCol.keys()].sort((a, b) => a - b)) {
    const list = byCol.get(c);
    const key = (n) => {
      const ps = (preds.get(n.id) || []).map((p) => row.get(p)).filter((r) => r !== undefined);
      return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : Number.MAX_SAFE_INTEGER;
    };
    const keyed = list.map((n) => [key(n), n.label, n]);
    keyed.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    keyed.forEach(([, , n], i) => {
      row.set(n.id, i);
      out.set(n.id, { x: c * COL_W, y: (i - (keyed.length - 1) / 2) * ROW_H });
    });
  }
  return { positions: out, columns: col };
}

/** Where a node that arrives with a live update goes, without moving anyone already placed. */
export function placeNew(model, positions, layout) {
  const placed = new Map(positions);
  const fresh = model.nodes.filter((n) => !placed.has(n.id));
  if (!fresh.length) return placed;
  if (layout === "paths") {
    const { positions: full, columns } = pathsLayout(model);
    const bottom = new Map();
    for (const [id, p] of placed) {
      const c = columns.get(id);
      if (c !== undefined) bottom.set(c, Math.max(bottom.get(c) ?? -Infinity, p.y));
    }
    for (const n of fresh) {
      const c = columns.get(n.id);
      const b = bottom.get(c);
      const y = b === undefined ? full.get(n.id).y : b + ROW_H;
      bottom.set(c, y);
      placed.set(n.id, { x: c * COL_W, y });
    }
    return placed;
  }
  // network: next to a placed neighbour, on a small deterministic spiral.
  const nbr = new Map();
  for (const e of model.edges) {
    if (!nbr.has(e.source)) nbr.set(e.source, []);
    if (!nbr.has(e.target)) nbr.set(e.target, []);
    nbr.get(e.source).push(e.target);
    nbr.get(e.target).push(e.source);
  }
  fresh.forEach((n, i) => {
    const anchor = (nbr.get(n.id) || []).map((m) => placed.get(m)).find(Boolean) || { x: 0, y: 0 };
    const a = 2.39996 * (i + 1);
    const r = 60 + 8 * Math.sqrt(i + 1);
    placed.set(n.id, { x: anchor.x + r * Math.cos(a), y: anchor.y + r * Math.sin(a) });
  });
  return placed;
}
