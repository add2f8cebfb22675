// A sortable data table: headers are buttons (keyboard reachable), sorting is client-side and
// stable, every cell is text.
import { clear, h } from "./common.js";

/**
 * columns: [{key, title, num?, format?(value,row)}]. Returns {el, setRows(rows)}.
 */
export function dataTable(columns, { caption = "", rowId = null } = {}) {
  let rows = [];
  let sortKey = null;
  let sortDir = 1;
  const tbody = h("tbody", {});
  const ths = columns.map((c) =>
    h(
      "th",
      { scope: "col", class: c.num ? "num" : "", "aria-sort": "none", "data-key": c.key },
      h("button", { type: "button", onclick: () => sortBy(c.key) }, c.title),
    ),
  );
  const el = h("table", { class: "data" }, caption ? h("caption", { class: "status" }, caption) : null, h("thead", {}, h("tr", {}, ths)), tbody);

  function cmp(a, b) {
    const x = a[sortKey];
    const y = b[sortKey];
    const nx = typeof x === "number" || (x !== "" && x !== null && !Number.isNaN(Number(x)));
    const ny = typeof y === "number" || (y !== "" && y !== null && !Number.isNaN(Number(y)));
    if (x === y) return 0;
    if (x === null || x === undefined || x === "") return 1;
    if (y === null || y === undefined || y === "") return -1;
    if (nx && ny) return (Number(x) - Number(y)) * sortDir;
    return String(x).localeCompare(String(y), undefined, { numeric: true }) * sortDir;
  }

  function draw() {
    const list = sortKey ? [...rows].sort(cmp) : rows;
    clear(tbody);
    for (const r of list) {
      tbody.append(
        h(
          "tr",
          rowId ? { id: rowId(r) } : {},
          columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.format ? c.format(r[c.key], r) : r[c.key] ?? "")),
        ),
      );
    }
    if (!list.length) tbody.append(h("tr", {}, h("td", { colspan: columns.length }, "Nothing matches.")));
  }

  function sortBy(key) {
    sortDir = sortKey === key ? -sortDir : columns.find((c) => c.key === key)?.num ? -1 : 1;
    sortKey = key;
    for (const th of ths) th.setAttribute("aria-sort", th.dataset.key === key ? (sortDir === 1 ? "ascending" : "descending") : "none");
    draw();
  }

  return {
    el,
    setRows(next) {
      rows = next;
      draw();
    },
    sortBy,
  };
}
