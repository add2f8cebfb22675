// The sensors page: /api/sensors as a table of health (last seen, version, drops, plugin errors,
// probes per second, gaps, identity conflicts), refreshed every 10 s.
import { clear, fmtNum, fmtTime, getJSON, h, initTheme } from "./common.js";
import { dataTable } from "./table.js";

const wrap = document.getElementById("table-wrap");
const status = document.getElementById("status");

function counter(s, ...names) {
  const c = s.counters || {};
  for (const n of names) {
    if (s[n] !== undefined && s[n] !== null) return s[n];
    if (!Array.isArray(c) && c[n] !== undefined) return c[n];
  }
  return null;
}

function pluginErrors(s) {
  if (s.plugin_errors !== undefined) return s.plugin_errors;
  const ps = s.plugins || [];
  if (!Array.isArray(ps)) return null;
  return ps.reduce((a, p) => a + (typeof p === "object" && p ? Number(p.errors) || 0 : 0), 0);
}

const COLUMNS = [
  { key: "id", title: "sensor" },
  { key: "hostname", title: "hostname" },
  { key: "version", title: "version" },
  { key: "last_seen", title: "last seen (UTC)", format: (v) => fmtTime(v) },
  { key: "age", title: "seconds ago", num: true, format: (v) => fmtNum(v, 0) },
  { key: "drops", title: "drops", num: true },
  { key: "plugin_errors", title: "plugin errors", num: true },
  { key: "probes_per_second", title: "probes/s", num: true, format: (v) => fmtNum(v, 2) },
  { key: "gaps", title: "gaps", num: true },
  { key: "lost_items", title: "items lost", num: true },
  { key: "machine_id_conflicts", title: "identity conflicts", num: true, format: (v) => (v ? h("span", { class: "bad" }, String(v)) : v ?? "") },
  { key: "batches", title: "batches", num: true },
];

function shape(s) {
  const now = Date.now() / 1000;
  return {
    id: s.id,
    hostname: s.hostname,
    version: s.version,
    last_seen: s.last_seen,
    age: s.last_seen ? Math.max(0, now - s.last_seen) : null,
    drops: counter(s, "drops", "packets_dropped", "dropped", "capture_drops"),
    plugin_errors: pluginErrors(s),
    probes_per_second: counter(s, "probes_per_second", "probe_rate", "traceroute_probes_per_second"),
    gaps: s.gaps ?? 0,
    lost_items: s.lost_items ?? 0,
    machine_id_conflicts: s.identity_conflicts ?? s.machine_id_conflicts ?? 0,
    batches: s.batches,
  };
}

const table = dataTable(COLUMNS, { rowId: (r) => `sensor-${encodeURIComponent(r.id)}` });
clear(wrap).append(table.el);

async function load() {
  try {
    const { body } = await getJSON("/api/sensors");
    const list = Array.isArray(body) ? body : body.sensors || [];
    table.setRows(list.map(shape));
    status.textContent = `${list.length} sensor${list.length === 1 ? "" : "s"}; updated ${new Date().toISOString().slice(11, 19)} UTC.`;
  } catch (err) {
    status.textContent = `Not loaded: ${err.message}`;
  }
}

initTheme();
load();
setInterval(() => document.hidden || load(), 10000);
