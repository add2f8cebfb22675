// Bundles the viewer's pages into ../static/dist with esbuild. Run by `make ui` (and so by
// `make run`, `make test`) and by the collector's Docker image; the wheel ships the output.
// Nothing is fetched at run time: every library and the world outline come from node_modules.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static", "dist");
const bench = process.argv.includes("--bench");

// `--bench`: only the renderer bench page, into bench/dist (never shipped, nothing else touched).
if (bench) {
  await build({
    entryPoints: [join(here, "bench", "renderers.js")],
    outdir: join(here, "bench", "dist"),
    bundle: true,
    minify: true,
    format: "iife",
    logLevel: "warning",
  });
  process.exit(0);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const pages = ["graph", "map", "connections", "sensors"];
await build({
  entryPoints: [...pages.map((p) => join(here, "src", `${p}.js`)), join(here, "src", "app.css")],
  outdir: out,
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome110", "firefox110", "safari16"],
  legalComments: "linked",
  logLevel: "warning",
});

// Natural Earth's 1:110m country outlines (public domain), as TopoJSON from world-atlas.
copyFileSync(join(here, "node_modules", "world-atlas", "countries-110m.json"), join(out, "world-110m.json"));
writeFileSync(join(out, "BUILT"), "built by collector/web/ui/build.mjs\n");
