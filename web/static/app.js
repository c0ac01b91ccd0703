// orch web UI: charts (Apache ECharts, vendored), the lineage (laid out by dagre, vendored),
// a run page's live tail (server-sent events), the catalog's sorting. No build step; served
// from the binary under a CSP that allows only the server's own scripts.
"use strict";
(function () {
  var COLOURS = { MATERIALIZED: "#54a24b", FAILED: "#e45756", NEVER: "#d0d0d0", STALE: "#f58518" };

  function fmtMs(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    var s = Math.round(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }

  function fmtNum(v) {
    if (v == null) return "";
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }

  // --- Charts: a spec from the server (`data-chart`) to an ECharts option ---

  function option(spec) {
    var tooltip = { trigger: "axis", confine: true };
    var grid = { left: 8, right: 24, top: 28, bottom: 8, containLabel: true };
    switch (spec.kind) {
      case "bars":
        return {
          tooltip: tooltip, grid: { left: 8, right: 36, top: 8, bottom: 28, containLabel: true },
          xAxis: { type: "value", name: spec.name, nameLocation: "middle", nameGap: 26,
                   axisLabel: { formatter: fmtNum } },
          yAxis: { type: "category", inverse: true, data: spec.labels,
                   axisLabel: { width: 180, overflow: "truncate" } },
          series: [{ type: "bar", name: spec.name, data: spec.values, itemStyle: { color: "#4c78a8" },
                     label: { show: true, position: "right", formatter: function (p) { return fmtNum(p.value); } } }]
        };
      case "columns":
        return {
          tooltip: tooltip, grid: grid,
          xAxis: { type: "category", data: spec.labels, axisLabel: { hideOverlap: true, rotate: spec.labels.length > 12 ? 45 : 0 } },
          yAxis: { type: "value", name: spec.name, axisLabel: { formatter: fmtNum } },
          series: [{ type: "bar", name: spec.name, data: spec.values, itemStyle: { color: "#f58518" } }]
        };
      case "line":
        var zoom = spec.labels.length > 14;
        return {
          tooltip: tooltip,
          grid: { left: 8, right: 24, top: 28, bottom: zoom ? 48 : 8, containLabel: true },
          xAxis: { type: "category", data: spec.labels, boundaryGap: spec.labels.length < 2,
                   axisLabel: { hideOverlap: true } },
          yAxis: { type: "value", name: spec.name, axisLabel: { formatter: fmtNum } },
          dataZoom: zoom ? [{ type: "slider", height: 18, bottom: 4 }, { type: "inside" }] : [],
          series: [{ type: "line", name: spec.name, data: spec.values, showSymbol: true, symbolSize: 7,
                     itemStyle: { color: "#54a24b" }, areaStyle: { opacity: 0.08 } }]
        };
      case "share":
        return {
          tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
          series: [{ type: "pie", radius: ["40%", "70%"], name: spec.name,
                     label: { formatter: "{b} {d}%" },
                     data: spec.labels.map(function (l, i) { return { name: l, value: spec.values[i] }; }) }]
        };
      case "history":
        var many = spec.labels.length > 30;
        return {
          tooltip: tooltip, legend: { top: 0 },
          grid: { left: 8, right: 8, top: 36, bottom: many ? 48 : 8, containLabel: true },
          xAxis: { type: "category", data: spec.labels, axisLabel: { hideOverlap: true } },
          yAxis: [{ type: "value", name: "rows", axisLabel: { formatter: fmtNum } },
                  { type: "value", name: "duration", axisLabel: { formatter: fmtMs } }],
          dataZoom: many ? [{ type: "slider", height: 18, bottom: 4 }, { type: "inside" }] : [],
          series: [{ type: "bar", name: "rows", data: spec.rows, itemStyle: { color: "#4c78a8", opacity: 0.7 } },
                   { type: "line", name: "duration", yAxisIndex: 1, data: spec.durations, showSymbol: true,
                     symbolSize: 6, connectNulls: true, itemStyle: { color: "#f58518" },
                     tooltip: { valueFormatter: fmtMs } }]
        };
      case "gantt":
        var rows = spec.rows;
        return {
          animation: false, // redrawn every two seconds while the run is live
          tooltip: { trigger: "item", confine: true, formatter: function (p) { return rows[p.dataIndex].tip; } },
          grid: { left: 8, right: 24, top: 8, bottom: 40, containLabel: true },
          xAxis: { type: "value", min: 0, axisLabel: { formatter: fmtMs } },
          yAxis: { type: "category", inverse: true, data: rows.map(function (r) { return r.label; }),
                   axisLabel: { width: 260, overflow: "truncate" } },
          dataZoom: [{ type: "slider", xAxisIndex: 0, height: 16, bottom: 4, filterMode: "none" },
                     { type: "inside", xAxisIndex: 0, filterMode: "none" }],
          series: [
            { type: "bar", stack: "t", silent: true, itemStyle: { color: "transparent" },
              data: rows.map(function (r) { return r.start; }) },
            { type: "bar", stack: "t", barMaxWidth: 16,
              data: rows.map(function (r) { return { value: Math.max(r.end - r.start, 1), itemStyle: { color: r.colour } }; }) }
          ]
        };
    }
    return null;
  }

  function initCharts(root) {
    if (!window.echarts) return;
    var els = (root || document).querySelectorAll(".echart[data-chart]");
    els.forEach(function (el) {
      if (el.dataset.drawn) return;
      var spec;
      try { spec = JSON.parse(el.dataset.chart); } catch (e) { return; }
      var opt = option(spec);
      if (!opt) return;
      if (spec.kind === "gantt") el.style.height = Math.max(120, spec.rows.length * 26 + 70) + "px";
      var chart = window.echarts.init(el, null, { renderer: "svg" });
      chart.setOption(opt);
      el.dataset.drawn = "true";
    });
  }

  window.addEventListener("resize", function () {
    if (!window.echarts) return;
    document.querySelectorAll(".echart[data-drawn]").forEach(function (el) {
      var c = window.echarts.getInstanceByDom(el);
      if (c) c.resize();
    });
  });

  // --- Lineage: dagre layout, SVG with arrowheads, group boxes, zoom, pan, search ---

  var SVGNS = "http://www.w3.org/2000/svg";
  function svgEl(name, attrs, parent) {
    var el = document.createElementNS(SVGNS, name);
    for (var k in attrs) el.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(el);
    return el;
  }

  function curve(points) {
    var p = points;
    var d = "M" + p[0].x + "," + p[0].y;
    if (p.length === 2) return d + "L" + p[1].x + "," + p[1].y;
    for (var i = 1; i < p.length - 1; i++) {
      var mx = (p[i].x + p[i + 1].x) / 2, my = (p[i].y + p[i + 1].y) / 2;
      d += "Q" + p[i].x + "," + p[i].y + " " + (i === p.length - 2 ? p[i + 1].x + "," + p[i + 1].y : mx + "," + my);
    }
    return d;
  }

  function nodeFill(n) { return COLOURS[n.state] || COLOURS.NEVER; }

  // Above this many assets the graph starts with each group folded into one node (dagre lays
  // out 1,000 assets in ~3 s and 2,500 in a minute): a click opens the group's own lineage.
  var FOLD_ABOVE = 400;

  function foldGroups(data) {
    var index = {}, nodes = [], edges = [], seen = {};
    data.nodes.forEach(function (n) {
      var i = index[n.group];
      if (i === undefined) {
        i = index[n.group] = nodes.length;
        nodes.push({ key: n.group, group: n.group, state: "MATERIALIZED", stale: false, kinds: [],
                     count: 0, failed: 0, never: 0, staleCount: 0, folded: true, layer: 0 });
      }
      var g = nodes[i];
      g.count++;
      if (n.state === "FAILED") g.failed++;
      if (n.state === "NEVER") g.never++;
      if (n.stale) g.staleCount++;
    });
    nodes.forEach(function (g) {
      g.state = g.failed ? "FAILED" : (g.never === g.count ? "NEVER" : "MATERIALIZED");
      g.stale = g.staleCount > 0;
      g.description = g.count + " assets" + (g.failed ? ", " + g.failed + " failed" : "") +
        (g.never ? ", " + g.never + " never materialized" : "") + (g.staleCount ? ", " + g.staleCount + " stale" : "");
    });
    data.edges.forEach(function (e) {
      var a = index[data.nodes[e[0]].group], b = index[data.nodes[e[1]].group];
      if (a !== b && !seen[a + ":" + b]) { seen[a + ":" + b] = true; edges.push([a, b]); }
    });
    return { nodes: nodes, edges: edges, groups: [] };
  }

  function drawLineage(box, data, t0) {
    box.textContent = "";
    if (!data.nodes.length) { box.textContent = "no asset matches"; return; }
    var full = data;
    if (data.nodes.length > FOLD_ABOVE && data.groups.length > 1) data = foldGroups(data);
    var nodes = data.nodes, edges = data.edges;
    var grouped = data.groups.length > 1 && nodes.length <= FOLD_ABOVE;
    var g = new window.dagre.graphlib.Graph({ compound: grouped, multigraph: false });
    g.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 70, edgesep: 8, marginx: 24, marginy: 24,
                 ranker: nodes.length > 100 ? "longest-path" : "network-simplex" });
    g.setDefaultEdgeLabel(function () { return {}; });
    nodes.forEach(function (n, i) {
      var w = Math.min(280, Math.max(120, n.key.length * 7 + 28));
      g.setNode("n" + i, { width: w, height: 30 });
      if (grouped) {
        if (!g.hasNode("g:" + n.group)) g.setNode("g:" + n.group, { label: n.group, paddingTop: 28 });
        g.setParent("n" + i, "g:" + n.group);
      }
    });
    edges.forEach(function (e) { g.setEdge("n" + e[0], "n" + e[1]); });
    window.dagre.layout(g);
    var gw = g.graph().width || 400, gh = g.graph().height || 200;

    var svg = svgEl("svg", { id: "lineage-svg", class: "lineage", role: "img", width: "100%", height: "100%" }, box);
    var defs = svgEl("defs", {}, svg);
    var marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5",
                                   markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, defs);
    svgEl("path", { d: "M0,0L10,5L0,10z", class: "arrowhead" }, marker);
    var root = svgEl("g", {}, svg);
    if (grouped) {
      var gl = svgEl("g", { class: "groups" }, root);
      data.groups.forEach(function (name) {
        var members = [];
        nodes.forEach(function (n, i) { if (n.group === name) members.push(g.node("n" + i)); });
        if (!members.length) return;
        var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
        members.forEach(function (m) {
          x0 = Math.min(x0, m.x - m.width / 2); y0 = Math.min(y0, m.y - m.height / 2);
          x1 = Math.max(x1, m.x + m.width / 2); y1 = Math.max(y1, m.y + m.height / 2);
        });
        var r = svgEl("g", { class: "group", "data-group": name }, gl);
        svgEl("rect", { x: x0 - 10, y: y0 - 24, width: x1 - x0 + 20, height: y1 - y0 + 34, rx: 8 }, r);
        svgEl("text", { x: x0 - 4, y: y0 - 9 }, r).textContent = name;
      });
    }
    var el = svgEl("g", { class: "edges" }, root);
    edges.forEach(function (e) {
      var ed = g.edge("n" + e[0], "n" + e[1]);
      if (!ed || !ed.points) return;
      var p = svgEl("path", { d: curve(ed.points), "marker-end": "url(#arrow)",
                              "data-from": nodes[e[0]].key, "data-to": nodes[e[1]].key }, el);
      p.appendChild(document.createElementNS(SVGNS, "title")).textContent = nodes[e[0]].key + " → " + nodes[e[1]].key;
    });
    var nl = svgEl("g", { class: "nodes" }, root);
    var byKey = {};
    nodes.forEach(function (n, i) {
      var m = g.node("n" + i);
      var href = n.folded ? "/lineage?select=" + encodeURIComponent("group:" + n.key) : "/assets/" + n.key;
      var a = svgEl("a", { href: href, class: "node" + (n.folded ? " folded" : ""), "data-key": n.key, "data-state": n.state }, nl);
      svgEl("rect", { x: m.x - m.width / 2, y: m.y - m.height / 2, width: m.width, height: m.height, rx: 5, fill: nodeFill(n) }, a);
      var label = n.folded ? "▸ " + n.key + " (" + n.count + ")" : (n.key.length > 38 ? "…" + n.key.slice(-37) : n.key);
      svgEl("text", { x: m.x - m.width / 2 + 8, y: m.y + 4 }, a).textContent = label;
      var badge = svgEl("g", { class: "stale-badge" + (n.stale ? "" : " hidden") }, a);
      svgEl("rect", { x: m.x + m.width / 2 - 40, y: m.y - m.height / 2 - 8, width: 42, height: 14, rx: 3 }, badge);
      svgEl("text", { x: m.x + m.width / 2 - 35, y: m.y - m.height / 2 + 3 }, badge).textContent = "STALE";
      var title = a.appendChild(document.createElementNS(SVGNS, "title"));
      title.textContent = details(n);
      byKey[n.key] = { a: a, node: m, title: title };
    });

    // Fit, then zoom (wheel) and pan (drag) by moving the viewBox.
    var vb = { x: 0, y: 0, w: gw, h: gh };
    function apply() { svg.setAttribute("viewBox", vb.x + " " + vb.y + " " + vb.w + " " + vb.h); }
    apply();
    svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var rect = svg.getBoundingClientRect();
      var scale = Math.max(vb.w / rect.width, vb.h / rect.height);
      var cx = vb.x + (ev.clientX - rect.left - (rect.width - vb.w / scale) / 2) * scale;
      var cy = vb.y + (ev.clientY - rect.top - (rect.height - vb.h / scale) / 2) * scale;
      var f = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
      vb.x = cx - (cx - vb.x) * f; vb.y = cy - (cy - vb.y) * f; vb.w *= f; vb.h *= f;
      apply();
    }, { passive: false });
    var drag = null;
    svg.addEventListener("mousedown", function (ev) {
      if (ev.target.closest && ev.target.closest("a")) return;
      drag = { x: ev.clientX, y: ev.clientY, vx: vb.x, vy: vb.y };
      svg.classList.add("dragging");
    });
    window.addEventListener("mousemove", function (ev) {
      if (!drag) return;
      var rect = svg.getBoundingClientRect();
      var scale = Math.max(vb.w / rect.width, vb.h / rect.height);
      vb.x = drag.vx - (ev.clientX - drag.x) * scale; vb.y = drag.vy - (ev.clientY - drag.y) * scale;
      apply();
    });
    window.addEventListener("mouseup", function () { drag = null; svg.classList.remove("dragging"); });

    var search = document.getElementById("lineage-search");
    if (search) {
      search.oninput = function () {
        var q = search.value.trim().toLowerCase();
        var first = null;
        Object.keys(byKey).forEach(function (k) {
          var hit = q && k.toLowerCase().indexOf(q) >= 0;
          byKey[k].a.classList.toggle("match", !!hit);
          byKey[k].a.classList.toggle("dim", !!q && !hit);
          if (hit && !first) first = byKey[k].node;
        });
        // A large graph centres on the first match at a readable scale; a small one stays whole.
        if (first && (gw > 1400 || gh > 900)) {
          vb.w = Math.min(gw, 1400); vb.h = Math.min(gh, 900);
          vb.x = first.x - vb.w / 2; vb.y = first.y - vb.h / 2;
          apply();
        } else if (!q) { vb = { x: 0, y: 0, w: gw, h: gh }; apply(); }
      };
    }
    box.dataset.nodes = String(nodes.length);
    box.dataset.folded = String(full !== data);
    box.dataset.ready = String(Math.round(performance.now() - t0));
    box.lineage = { byKey: byKey, folded: full !== data,
                    keys: full.nodes.map(function (n) { return n.key; }).join("\n") };
  }

  function details(n) {
    return n.key + "\ngroup " + n.group + "\n" + n.state + (n.stale ? ", STALE" : "") +
      (n.kinds && n.kinds.length ? "\nkinds " + n.kinds.join(", ") : "") +
      (n.description ? "\n" + n.description : "");
  }

  // The states change; the graph rarely does: recolour in place, lay out again only when the
  // set of assets changed.
  function refreshLineage(box) {
    fetch(box.dataset.src, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !box.lineage) return;
        var keys = data.nodes.map(function (n) { return n.key; }).join("\n");
        if (keys !== box.lineage.keys) { drawLineage(box, data, performance.now()); return; }
        if (box.lineage.folded) data = foldGroups(data);
        data.nodes.forEach(function (n) {
          var it = box.lineage.byKey[n.key];
          if (!it) return;
          it.a.setAttribute("data-state", n.state);
          it.a.querySelector("rect").setAttribute("fill", nodeFill(n));
          it.a.querySelector(".stale-badge").classList.toggle("hidden", !n.stale);
          it.title.textContent = details(n);
        });
      })
      .catch(function () {});
  }

  function initLineage() {
    var box = document.getElementById("lineage");
    if (!box || !box.dataset.src || !window.dagre) return;
    var t0 = performance.now();
    fetch(box.dataset.src, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.error) { box.textContent = data.error; return; }
        drawLineage(box, data, t0);
        setInterval(function () { if (!document.hidden) refreshLineage(box); }, 5000);
      });
  }

  // --- A run page's live tail: events and logs by SSE; the rest is polled by htmx ---

  function initLive() {
    var live = document.getElementById("live");
    if (!live || live.dataset.terminal !== "false" || !window.EventSource) return;
    var source = new EventSource(live.dataset.src);
    function cell(text, cls) {
      var td = document.createElement("td");
      td.textContent = text || "";
      if (cls) td.className = cls;
      return td;
    }
    source.addEventListener("event", function (e) {
      var ev = JSON.parse(e.data);
      var body = document.querySelector("#events tbody");
      if (!body) return;
      var tr = document.createElement("tr");
      tr.appendChild(cell(ev.timestamp, "mono"));
      tr.appendChild(cell(ev.kind, "kind"));
      tr.appendChild(cell(ev.step_key, "mono"));
      tr.appendChild(cell(ev.message + (ev.error ? " " + ev.error : "")));
      body.appendChild(tr);
    });
    source.addEventListener("log", function (e) {
      var line = JSON.parse(e.data);
      var logs = document.getElementById("logs");
      if (!logs) return;
      var span = document.createElement("span");
      span.className = "log-" + line.stream;
      span.textContent = line.timestamp + " " + line.step_key + " [" + line.stream + "] " + line.level + " " + line.message + "\n";
      var follow = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      logs.appendChild(span);
      if (follow) logs.scrollTop = logs.scrollHeight;
    });
    source.addEventListener("end", function () {
      source.close();
      // The finished run's page shows its final timeline and its re-execute buttons.
      setTimeout(function () { window.location.reload(); }, 300);
    });
  }

  // Keep the steps the user opened open across the live refresh.
  var openGroups = [];
  document.addEventListener("htmx:beforeSwap", function (ev) {
    if (ev.detail.target && ev.detail.target.id === "run-live") {
      openGroups = Array.prototype.map.call(ev.detail.target.querySelectorAll("details[open]"), function (d) { return d.id; });
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    openGroups.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
    initCharts(document);
  });

  // --- The catalog: sort by a column (within each group) ---

  function initSort() {
    document.querySelectorAll("table.sortable th[data-sort]").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var table = th.closest("table");
        var asc = th.dataset.dir !== "asc";
        th.dataset.dir = asc ? "asc" : "desc";
        table.querySelectorAll("tbody").forEach(function (tb) {
          var rows = Array.prototype.filter.call(tb.rows, function (r) { return !r.classList.contains("group-row"); });
          rows.sort(function (a, b) {
            var x = a.cells[col].textContent.trim(), y = b.cells[col].textContent.trim();
            var c = x.localeCompare(y, undefined, { numeric: true });
            return asc ? c : -c;
          });
          rows.forEach(function (r) { tb.appendChild(r); });
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initCharts(document);
    initLineage();
    initLive();
    initSort();
  });
})();
