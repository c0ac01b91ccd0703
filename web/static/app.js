// orch web UI: the live tail of a run page (server-sent events). No build step.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
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
    tr.appendChild(cell(ev.timestamp));
    tr.appendChild(cell(ev.kind, "kind"));
    tr.appendChild(cell(ev.step_key, "mono"));
    tr.appendChild(cell(ev.message + (ev.error ? " " + ev.error : "")));
    body.appendChild(tr);
    if (ev.kind.indexOf("STEP_") === 0 && window.htmx) {
      htmx.ajax("GET", live.dataset.gantt, { target: "#gantt", swap: "innerHTML" });
    }
  });
  source.addEventListener("log", function (e) {
    var line = JSON.parse(e.data);
    var logs = document.getElementById("logs");
    if (!logs) return;
    var span = document.createElement("span");
    span.className = "log-" + line.stream;
    span.textContent = line.timestamp + " " + line.step_key + " [" + line.stream + "] " + line.level + " " + line.message + "\n";
    logs.appendChild(span);
  });
  source.addEventListener("status", function (e) {
    var status = document.getElementById("run-status");
    if (status) {
      status.textContent = e.data;
      status.className = "status s-" + e.data;
    }
  });
  source.addEventListener("end", function () {
    source.close();
    // The finished run's page shows its final timeline and its re-execute buttons.
    setTimeout(function () { window.location.reload(); }, 300);
  });
});
