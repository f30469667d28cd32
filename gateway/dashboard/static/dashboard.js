// Agent Gym dashboard: live updates of an experiment's page over Server-Sent Events.
//
// Hand-written, no build step, no third-party code. The server renders every page
// complete; this script only follows an experiment's stream (the browser's native
// EventSource on /dashboard/experiments/{id}/stream, authenticated by the session
// cookie) and, without a reload:
//   - appends a circle.cs-point (with its interval) to svg#cs-plot for every statistics
//     snapshot of the primary metric, and lays the plot out again with the same rule as
//     the server (agentgym/gateway/dashboard/charts.py: cs_layout);
//   - updates #units, #p-value, #srm and #estimate;
//   - fills div#decision when a decision arrives.
// svg#cs-plot gets data-live="connected" once the stream is positioned (its `ready`
// event): every snapshot written after that is shown. Text goes in with textContent only.
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";

  function finite(x) {
    return typeof x === "number" && isFinite(x) ? x : null;
  }

  function sig(x) {
    return x === null || x === undefined ? "\u2013" : Number(x).toPrecision(3).replace(/\.?0+$/, "").replace(/\.?0+e/, "e");
  }

  function iso(ms) {
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function num(attr) {
    if (attr === null || attr === "") return null;
    var x = Number(attr);
    return isFinite(x) ? x : null;
  }

  // The same layout as charts.cs_layout: x over the series' time span, y over every finite
  // estimate and interval end and zero, 10% margin; an infinite end at the plot's edge.
  function layout(svg) {
    var width = Number(svg.dataset.width), height = Number(svg.dataset.height), pad = Number(svg.dataset.pad);
    var circles = Array.prototype.slice.call(svg.querySelectorAll("circle.cs-point"));
    var lines = Array.prototype.slice.call(svg.querySelectorAll("line.cs-interval"));
    var values = [0], ts = [];
    circles.forEach(function (c) {
      ["estimate", "lo", "hi"].forEach(function (k) {
        var v = num(c.getAttribute("data-" + k));
        if (v !== null) values.push(v);
      });
      ts.push(Number(c.getAttribute("data-ts")));
    });
    var yMin = Math.min.apply(null, values), yMax = Math.max.apply(null, values);
    if (yMax - yMin < 1e-9) { yMin = -1; yMax = 1; }
    var margin = (yMax - yMin) * 0.1;
    yMin -= margin; yMax += margin;
    var tsMin = ts.length ? Math.min.apply(null, ts) : 0, tsMax = ts.length ? Math.max.apply(null, ts) : 1;
    var span = Math.max(tsMax - tsMin, 1), innerW = width - 2 * pad, innerH = height - 2 * pad;
    function xOf(t) { return pad + (circles.length > 1 ? innerW * (t - tsMin) / span : innerW / 2); }
    function yOf(v) { return pad + innerH * (yMax - v) / (yMax - yMin); }
    var upper = [], lower = [];
    circles.forEach(function (c, i) {
      var x = xOf(Number(c.getAttribute("data-ts")));
      var est = num(c.getAttribute("data-estimate")), lo = num(c.getAttribute("data-lo")), hi = num(c.getAttribute("data-hi"));
      var yLo = lo !== null ? yOf(lo) : height - pad, yHi = hi !== null ? yOf(hi) : pad;
      c.setAttribute("cx", x.toFixed(1));
      c.setAttribute("cy", yOf(est !== null ? est : 0).toFixed(1));
      if (lines[i]) {
        lines[i].setAttribute("x1", x.toFixed(1)); lines[i].setAttribute("x2", x.toFixed(1));
        lines[i].setAttribute("y1", yLo.toFixed(1)); lines[i].setAttribute("y2", yHi.toFixed(1));
      }
      upper.push(x.toFixed(1) + "," + yHi.toFixed(1));
      lower.push(x.toFixed(1) + "," + yLo.toFixed(1));
    });
    setAttr(svg, "polyline.cs-upper", "points", upper.join(" "));
    setAttr(svg, "polyline.cs-lower", "points", lower.join(" "));
    var zero = svg.querySelector("line.cs-zero");
    if (zero) { zero.setAttribute("y1", yOf(0).toFixed(1)); zero.setAttribute("y2", yOf(0).toFixed(1)); }
    setText(svg, "text.cs-ymax", sig(yMax));
    setText(svg, "text.cs-ymin", sig(yMin));
    setText(svg, "text.cs-xmin", ts.length ? iso(tsMin) : "");
    setText(svg, "text.cs-xmax", ts.length ? iso(tsMax) : "");
  }

  function setAttr(root, selector, name, value) {
    var el = root.querySelector(selector);
    if (el) el.setAttribute(name, value);
  }

  function setText(root, selector, text) {
    var el = root.querySelector(selector);
    if (el) el.textContent = text;
  }

  function addPoint(svg, snapshot) {
    var comparison = (snapshot.comparisons || [])[0] || {};
    var n = (snapshot.arms || []).reduce(function (sum, a) { return sum + (a.n || 0); }, 0);
    var group = svg.querySelector("g.cs-points") || svg;
    var line = document.createElementNS(SVG_NS, "line");
    line.setAttribute("class", "cs-interval");
    line.setAttribute("stroke", "#9db7dc");
    var circle = document.createElementNS(SVG_NS, "circle");
    circle.setAttribute("class", "cs-point");
    circle.setAttribute("r", "3");
    circle.setAttribute("fill", "#1d4f91");
    circle.setAttribute("data-ts", String(snapshot.timestamp_ms));
    circle.setAttribute("data-n", String(n));
    var est = finite(comparison.estimate), lo = finite(comparison.ci_low), hi = finite(comparison.ci_high);
    circle.setAttribute("data-estimate", est === null ? "" : String(est));
    circle.setAttribute("data-lo", lo === null ? "" : String(lo));
    circle.setAttribute("data-hi", hi === null ? "" : String(hi));
    var title = document.createElementNS(SVG_NS, "title");
    title.textContent = "n = " + n + ": " + sig(est) + " [" + sig(lo) + ", " + sig(hi) + "]";
    circle.appendChild(title);
    group.appendChild(line);
    group.appendChild(circle);
    var empty = document.getElementById("cs-empty");
    if (empty) empty.remove();
    layout(svg);
  }

  function updateFigures(snapshot) {
    var comparison = (snapshot.comparisons || [])[0];
    var units = document.getElementById("units");
    if (units) {
      units.textContent = (snapshot.arms || []).map(function (a) { return a.variant + " " + a.n.toLocaleString("en"); }).join(" \u00b7 ");
    }
    var p = document.getElementById("p-value");
    if (p && comparison) { p.textContent = sig(comparison.p_value); p.setAttribute("data-value", String(comparison.p_value)); }
    var estimate = document.getElementById("estimate");
    if (estimate && comparison) {
      estimate.textContent = comparison.variant + " \u2212 " + comparison.control + ": " + sig(finite(comparison.estimate)) +
        " [" + sig(finite(comparison.ci_low)) + ", " + sig(finite(comparison.ci_high)) + "]";
    }
    var srm = document.getElementById("srm");
    if (srm && typeof snapshot.srm_p_value === "number") {
      srm.textContent = "p = " + sig(snapshot.srm_p_value) + " (" + (snapshot.srm_p_value < 0.001 ? "MISMATCH" : "ok") + ")";
      srm.setAttribute("data-value", String(snapshot.srm_p_value));
    }
  }

  function showDecision(decision) {
    var box = document.getElementById("decision");
    if (!box) return;
    box.textContent = "";
    var head = document.createElement("p");
    var action = document.createElement("strong");
    action.className = "action";
    action.textContent = decision.action;
    head.appendChild(action);
    if (decision.winner) {
      head.appendChild(document.createTextNode(" \u00b7 winner "));
      var winner = document.createElement("strong");
      winner.className = "winner";
      winner.textContent = decision.winner;
      head.appendChild(winner);
    }
    head.appendChild(document.createTextNode(" \u00b7 " + iso(decision.timestamp_ms)));
    var reason = document.createElement("p");
    reason.className = "reason";
    reason.textContent = decision.reason || "";
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    summary.textContent = "evidence";
    var pre = document.createElement("pre");
    pre.className = "evidence";
    try {
      pre.textContent = JSON.stringify(JSON.parse(decision.evidence_json || "{}"), null, 2);
    } catch (e) {
      pre.textContent = decision.evidence_json || "";
    }
    details.appendChild(summary);
    details.appendChild(pre);
    box.appendChild(head);
    box.appendChild(reason);
    box.appendChild(details);
  }

  function follow(svg) {
    if (!window.EventSource || !svg.dataset.stream) return;
    var source = new EventSource(svg.dataset.stream);
    source.addEventListener("ready", function () { svg.setAttribute("data-live", "connected"); });
    source.addEventListener("stats", function (event) {
      var snapshot = JSON.parse(event.data);
      if (snapshot.metric !== svg.dataset.metric || (snapshot.role && snapshot.role !== "primary")) return;
      addPoint(svg, snapshot);
      updateFigures(snapshot);
    });
    source.addEventListener("decision", function (event) {
      var decision = JSON.parse(event.data);
      if (decision.action === "continue") return;
      showDecision(decision);
      // the configuration follows the decision (config.py's transitions): show where it is going
      var next = {promote_winner: "concluded", rollback: "rolled_back", stop: "stopped"}[decision.action];
      var status = document.getElementById("status");
      if (status && next && status.textContent !== next) status.textContent = next + " (decided; the configuration follows)";
    });
    // EventSource reconnects by itself; until its next `ready`, the plot is not live
    source.addEventListener("error", function () { svg.setAttribute("data-live", "reconnecting"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var svg = document.getElementById("cs-plot");
    if (svg) follow(svg);
  });
})();
