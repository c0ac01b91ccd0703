#!/bin/sh
# Re-vendors the UI's JavaScript libraries from the npm registry (run from the repository root;
# needs node and npm). ECharts is a custom build of the modules in echarts-entry.js (bundled
# with esbuild, no `eval`, SVG renderer); dagre is its own minified dist file. Then update the
# versions in README.md ("The web UI and JSON API").
set -eu
ECHARTS=${ECHARTS:-6.1.0}
DAGRE=${DAGRE:-3.1.3}
ESBUILD=${ESBUILD:-0.25.12}
out=$(pwd)/web/static/vendor
work=$(mktemp -d /tmp/ui-vendor.XXXXXX)
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund "echarts@$ECHARTS" "@dagrejs/dagre@$DAGRE" "esbuild@$ESBUILD"
cp "$out/echarts-entry.js" entry.js
npx esbuild entry.js --bundle --minify --format=iife --legal-comments=none --outfile="$out/echarts.min.js"
cp node_modules/echarts/LICENSE "$out/echarts.LICENSE"
cp node_modules/echarts/NOTICE "$out/echarts.NOTICE"
cp node_modules/zrender/LICENSE "$out/zrender.LICENSE"
sed '/sourceMappingURL/d' node_modules/@dagrejs/dagre/dist/dagre.min.js > "$out/dagre.min.js"
cp node_modules/@dagrejs/dagre/LICENSE "$out/dagre.LICENSE"
rm -rf "$work"
ls -l "$out"
