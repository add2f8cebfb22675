// The map page: hops placed by GeoIP and the operator's locations, paths drawn from each sensor,
// coloured like the graph. The world outline (Natural Earth 1:110m, public domain) ships with
// the package, so the page needs no tile server and works offline.
import { geoNaturalEarth1, geoPath } from "d3-geo";
import { feature } from "topojson-client";
import { clear, fmtNum, getJSON, h, initTheme, pageParam, setPageParam, showFilterError } from "./common.js";
import { buildModel, edgeColour } from "./model.js";

const SVG = "http://www.w3.org/2000/svg";
const svg = document.getElementById("map");
const status = document.getElementById("status");
const list = document.getElementById("path-list");
const form = document.getElementById("filter-form");
const q = document.getElementById("q");
const qError = document.getElementById("q-error");
const colour = document.getElementById("colour");
const page = document.getElementById("map-page");

function s(tag, attrs = {}, text = null) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== null) el.append(s("title", {}, null), document.createTextNode(""));
  if (text !== null) el.firstChild.textContent = text;
  return el;
}

/**
 * Segments to draw: for each sensor, walk ORIGIN then ROUTE edges; a hop with no place is passed
 * through, so the line joins the last placed hop to the next placed one.
 */
export function mapSegments(model) {
  const byId = new Map(model.nodes.map((n) => [n.id, n]));
  const out = new Map();
  for (const e of model.edges) {
    if (e.kind !== "origin" && e.kind !== "route") continue;
    if (!out.has(e.source)) out.set(e.source, []);
    out.get(e.source).push(e);
  }
  const placed = (n) => n && n.lat !== null && n.lon !== null;
  const segs = [];
  const seen = new Set();
  for (const sensor of model.nodes.filter((n) => n.kind === "sensor")) {
    let start = placed(sensor) ? sensor : null;
    const stack = [[sensor.id, start, 0]];
    const visited = new Set([sensor.id]);
    while (stack.length) {
      const [id, last, depth] = stack.pop();
      for (const e of out.get(id) || []) {
        const nxt = byId.get(e.target);
        if (!nxt || visited.has(nxt.id) || depth > 64) continue;
        visited.add(nxt.id);
        let from = last;
        if (placed(nxt)) {
          if (!from) {
            from = nxt;
            if (!start) start = nxt;
          } else if (from.id !== nxt.id) {
            const key = `${sensor.id}|${from.id}|${nxt.id}`;
            if (!seen.has(key)) {
              seen.add(key);
              segs.push({ sensor: sensor.label, from, to: nxt, edge: e });
            }
          }
          from = nxt;
        }
        stack.push([nxt.id, from, depth + 1]);
      }
    }
  }
  return segs;
}

let world = null;

async function draw() {
  if (!world) {
    const { body } = await getJSON(page.dataset.world);
    world = feature(body, body.objects.countries);
  }
  let graph;
  try {
    const p = new URLSearchParams();
    if (q.value.trim()) p.set("q", q.value.trim());
    graph = (await getJSON(`/api/graph${p.toString() ? `?${p}` : ""}`)).body;
    showFilterError(q, qError, null);
  } catch (err) {
    if (err.api && err.api.status === 400) showFilterError(q, qError, err.api);
    status.textContent = `Not loaded: ${err.message}`;
    graph = { nodes: [], edges: [] };
  }
  const model = buildModel(graph, { collapse: true });
  const w = svg.clientWidth || 960;
  const hgt = svg.clientHeight || 500;
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  const proj = geoNaturalEarth1().fitSize([w, hgt], { type: "Sphere" });
  const path = geoPath(proj);
  clear(svg);
  svg.append(s("title", {}, null));
  svg.firstChild.textContent = "World map of the traced paths";
  const land = s("g", { class: "land-layer" });
  for (const f of world.features) land.append(s("path", { class: "land", d: path(f) || "" }, f.properties && f.properties.name ? f.properties.name : null));
  svg.append(land);
  const segs = mapSegments(model);
  const lines = s("g", { class: "paths" });
  for (const seg of segs) {
    const d = path({ type: "LineString", coordinates: [[seg.from.lon, seg.from.lat], [seg.to.lon, seg.to.lat]] });
    const c = edgeColour(seg.edge, colour.value) || "#8792a2";
    const rtt = seg.edge.rtt !== null ? `, ${fmtNum(seg.edge.rtt)} ms` : "";
    lines.append(s("path", { class: "path", d: d || "", stroke: c, "data-sensor": seg.sensor }, `${seg.from.label} → ${seg.to.label}${rtt}`));
  }
  svg.append(lines);
  const dots = s("g", { class: "hops" });
  const drawn = new Set();
  for (const n of model.nodes) {
    if (n.lat === null || n.lon === null || drawn.has(n.id)) continue;
    drawn.add(n.id);
    const [x, y] = proj([n.lon, n.lat]);
    const where = [n.city, n.country_code].filter(Boolean).join(", ");
    dots.append(s("circle", { class: `hop ${n.kind === "sensor" ? "sensor" : ""}`, cx: x, cy: y, r: n.kind === "sensor" ? 6 : 4, fill: n.kind === "sensor" ? "var(--node-sensor)" : "var(--node-host)" }, `${n.label}${where ? ` (${where})` : ""}`));
  }
  svg.append(dots);
  clear(list);
  for (const seg of segs.slice(0, 500)) {
    list.append(h("li", {}, `${seg.sensor}: ${seg.from.label} → ${seg.to.label}${seg.edge.rtt !== null ? ` (${fmtNum(seg.edge.rtt)} ms)` : ""}`));
  }
  const unplaced = model.nodes.filter((n) => n.kind === "host" && (n.lat === null || n.lon === null)).length;
  status.textContent = `${segs.length} path segments between ${drawn.size} placed nodes; ${unplaced} hosts have no place (private without a --locations entry, or not in the GeoIP database).`;
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  setPageParam("q", q.value.trim());
  draw();
});
colour.addEventListener("change", draw);
document.addEventListener("ng-theme", draw);
async function geoNote() {
  try {
    const { body } = await getJSON("/api/geoip");
    const city = body && body.city;
    if (!city) return;
    const note = document.getElementById("geoip-note");
    note.textContent = `City database: ${city.type || "GeoIP"}, built ${city.build_date || "?"}${city.attribution ? `; ${city.attribution}` : ""}${city.default ? " (the packaged copy: give --geoip-city for a current one)" : ""}.`;
  } catch {
    /* the map works without it */
  }
}

initTheme();
geoNote();
q.value = pageParam("q");
draw();
setInterval(() => document.hidden || draw(), Number(pageParam("poll")) || 15000);
