// The connections page: /api/connections as a sortable table, filtered with the shared filter
// language, raw or aggregated, and downloadable as CSV or XLSX (the server writes those files).
import { clear, fmtNum, fmtTime, getJSON, h, initTheme, pageParam, setPageParam, showFilterError } from "./common.js";
import { dataTable } from "./table.js";

const form = document.getElementById("filter-form");
const q = document.getElementById("q");
const qError = document.getElementById("q-error");
const view = document.getElementById("view");
const status = document.getElementById("status");
const wrap = document.getElementById("table-wrap");
const csv = document.getElementById("download-csv");
const xlsx = document.getElementById("download-xlsx");
const LIMIT = 5000;

const RAW = [
  { key: "client", title: "client" },
  { key: "server", title: "server" },
  { key: "server_name", title: "server name" },
  { key: "dport", title: "port", num: true },
  { key: "proto", title: "proto" },
  { key: "sensor", title: "sensor" },
  { key: "direction", title: "direction" },
  { key: "attempts", title: "attempts", num: true },
  { key: "count", title: "handshakes", num: true },
  { key: "refused", title: "refused", num: true },
  { key: "unanswered", title: "unanswered", num: true },
  { key: "rtt_ms", title: "RTT ms", num: true, format: (v) => fmtNum(v, 2) },
  { key: "client_rtt_ms", title: "client RTT ms", num: true, format: (v) => fmtNum(v, 2) },
  { key: "retransmits", title: "retrans.", num: true },
  { key: "last_seen", title: "last seen (UTC)", format: (v) => fmtTime(v) },
];

function columnsFor(rows, mode) {
  if (mode === "raw") return RAW;
  // Aggregated answers: show the columns the API sent, numbers right-aligned.
  const keys = rows.length ? Object.keys(rows[0]) : ["key", "count"];
  return keys.map((k) => ({
    key: k,
    title: k.replaceAll("_", " "),
    num: rows.some((r) => typeof r[k] === "number"),
    format: k.endsWith("_seen") ? (v) => fmtTime(v) : k.includes("rtt") ? (v) => fmtNum(v, 2) : undefined,
  }));
}

function params(format) {
  const p = new URLSearchParams();
  if (q.value.trim()) p.set("q", q.value.trim());
  if (view.value !== "raw") p.set("group", view.value);
  p.set("format", format);
  if (format === "json") p.set("limit", String(LIMIT));
  return p.toString();
}

function updateDownloads() {
  csv.href = `/api/connections?${params("csv")}`;
  xlsx.href = `/api/connections?${params("xlsx")}`;
}

async function load() {
  updateDownloads();
  status.textContent = "Loading…";
  let res;
  try {
    res = await getJSON(`/api/connections?${params("json")}`);
  } catch (err) {
    if (err.api && err.api.status === 400) showFilterError(q, qError, err.api);
    status.textContent = `Not loaded: ${err.message}`;
    return;
  }
  showFilterError(q, qError, null);
  const body = res.body || {};
  const rows = body.connections || body.groups || body.rows || [];
  const mode = view.value;
  const cols = columnsFor(rows, mode);
  const t = dataTable(cols, { caption: "Select a column header to sort by it; again to reverse." });
  t.setRows(rows);
  clear(wrap).append(t.el);
  const total = body.total ?? body.count ?? rows.length;
  status.textContent = `${rows.length} rows${total > rows.length ? ` of ${total}` : ""}${rows.length >= LIMIT ? ` (the first ${LIMIT}; the downloads hold all)` : ""}.`;
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  setPageParam("q", q.value.trim());
  setPageParam("view", view.value === "raw" ? "" : view.value);
  load();
});
view.addEventListener("change", () => {
  setPageParam("view", view.value === "raw" ? "" : view.value);
  load();
});

initTheme();
q.value = pageParam("q");
if (["port", "server", "client"].includes(pageParam("view"))) view.value = pageParam("view");
load();
