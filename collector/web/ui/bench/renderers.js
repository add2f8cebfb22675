// The renderer bench page (bench/bench_viewer.py builds it with `node build.mjs --bench`; it is not
// shipped): the same /api/graph elements drawn by Cytoscape.js (canvas) and by sigma.js (WebGL,
// graphology), with the graph page's own model and paths layout. It reports, in ms:
//   first: elements parsed -> model, layout, renderer built, first frame painted;
//   filter: a filtered answer applied (elements that left removed) -> next frame painted.
import cytoscape from "cytoscape";
import Graph from "graphology";
import Sigma from "sigma";
import { buildModel, edgeColour, nodeSize, pathsLayout } from "../src/model.js";

const frames = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));

// The graph page's style above LARGE nodes (graph.js): straight "haystack" edges without arrows,
// labels only when zoomed in, pixel ratio 1; below it, the full style.
async function cytoscapeRun(body, keep, fast = false) {
  const t0 = performance.now();
  const model = buildModel(body, { collapse: true });
  const { positions } = pathsLayout(model);
  const elements = [
    ...model.nodes.map((n) => ({ group: "nodes", data: { id: n.id, label: n.label, size: nodeSize(n) }, position: positions.get(n.id) })),
    ...model.edges.map((e) => ({ group: "edges", data: { id: e.id, source: e.source, target: e.target, colour: edgeColour(e, "rtt") || "#8792a2" } })),
  ];
  const cy = cytoscape({
    container: document.getElementById("stage"),
    elements,
    layout: { name: "preset" },
    style: [
      { selector: "node", style: { label: "data(label)", width: "data(size)", height: "data(size)", "font-size": 10, "min-zoomed-font-size": fast ? 12 : 7 } },
      { selector: "edge", style: fast ? { width: 1, "line-color": "data(colour)", "curve-style": "haystack", "haystack-radius": 0 } : { width: 1.5, "line-color": "data(colour)", "curve-style": "bezier", "target-arrow-shape": "triangle" } },
    ],
    textureOnViewport: true,
    hideEdgesOnViewport: true,
    pixelRatio: fast ? 1 : "auto",
  });
  cy.fit(undefined, 30);
  await frames();
  const first = performance.now() - t0;
  const t1 = performance.now();
  cy.batch(() => cy.nodes().filter((n) => !keep.has(n.id())).remove());
  await frames();
  const filter = performance.now() - t1;
  const shown = cy.nodes().length;
  cy.destroy();
  return { first, filter, nodes: model.nodes.length, edges: model.edges.length, shown };
}

async function sigmaRun(body, keep) {
  const t0 = performance.now();
  const model = buildModel(body, { collapse: true });
  const { positions } = pathsLayout(model);
  const g = new Graph({ multi: false, type: "directed" });
  for (const n of model.nodes) {
    const p = positions.get(n.id);
    g.addNode(n.id, { x: p.x, y: -p.y, size: nodeSize(n) / 4, label: n.label, color: n.kind === "sensor" ? "#6f42c1" : "#0b57d0" });
  }
  for (const e of model.edges) {
    if (!g.hasEdge(e.source, e.target)) g.addDirectedEdgeWithKey(e.id, e.source, e.target, { size: 1, color: edgeColour(e, "rtt") || "#8792a2" });
  }
  const renderer = new Sigma(g, document.getElementById("stage"), { renderEdgeLabels: false, labelRenderedSizeThreshold: 8 });
  await frames();
  const first = performance.now() - t0;
  const t1 = performance.now();
  // sigma's own way to filter: a reducer and one refresh (dropping nodes one by one from the
  // graphology graph refreshes per event and was ten times slower still).
  renderer.setSetting("nodeReducer", (id, attr) => (keep.has(id) ? attr : { ...attr, hidden: true }));
  renderer.setSetting("edgeReducer", (id, attr) => (keep.has(g.source(id)) && keep.has(g.target(id)) ? attr : { ...attr, hidden: true }));
  await frames();
  const filter = performance.now() - t1;
  const shown = g.nodes().filter((id) => keep.has(id)).length;
  renderer.kill();
  return { first, filter, nodes: model.nodes.length, edges: model.edges.length, shown };
}

window.benchRun = async (renderer, url, filteredUrl) => {
  const body = await (await fetch(url)).json();
  const filtered = await (await fetch(filteredUrl)).json();
  const keep = new Set((filtered.nodes || []).map((n) => String(n.data.id)));
  if (renderer === "sigma") return sigmaRun(body, keep);
  return cytoscapeRun(body, keep, renderer === "cytoscape-fast");
};
// Started without waiting, so the bench can give up on a run that takes too long.
window.benchStart = (renderer, url, filteredUrl) => {
  window.benchResult = null;
  window.benchRun(renderer, url, filteredUrl).then(
    (r) => (window.benchResult = r),
    (e) => (window.benchResult = { error: String(e) }),
  );
};
window.benchReady = true;
