#!/bin/sh
# Image step 1 (deploy/Dockerfile.collector, stage "ui"): bundle the viewer's front-end.
#   deploy/image/build-ui.sh SRC
# With collector/web/ui/package.json: npm ci (locked versions, no install scripts) and its
# build.mjs, which writes collector/web/static/dist. Without it there is nothing to bundle.
# Either way collector/web/static exists afterwards, for the next stage to copy.
set -eu
src=${1:?usage: build-ui.sh SRC}
ui="$src/collector/web/ui"
mkdir -p "$src/collector/web/static"
if [ ! -f "$ui/package.json" ]; then
    echo "build-ui: no front-end sources in $ui; nothing to bundle"
    exit 0
fi
command -v npm >/dev/null || { echo "build-ui: npm is needed (Node.js 18+)" >&2; exit 1; }
npm ci --prefix "$ui" --no-audit --no-fund --ignore-scripts --loglevel=error
node "$ui/build.mjs"
