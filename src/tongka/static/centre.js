// The personal centre's usage charts (/account): for each line, the last 30 days per zone, each
// day's bar split by network, and the data left projected as a dashed line from today on (its own
// axis, on the right). Drawn with uPlot from /account/usage/{line_id}.json; the same usage is in the
// table under each chart and the forecast in words above it (the page is whole without this script).
(function () {
  "use strict";
  var MB = 1048576;
  var COLOURS = ["#0a6b4d", "#c2410c", "#1d4ed8", "#a21caf", "#854d0e", "#0e7490", "#4d7c0f"];
  var PROJECTION = "#374151";
  var HEIGHT = 220;
  var plots = [];

  function mb(bytes) {
    return Math.round((bytes / MB) * 100) / 100;
  }

  // Stacked bars: series k is the sum of the networks 0..k, drawn from the tallest (behind) down,
  // so each network's own share is the band of its colour; the legend tells its own volume.
  function chart(holder, usage, zone) {
    var figure = document.createElement("figure");
    var caption = document.createElement("figcaption");
    var plot = document.createElement("div");
    caption.textContent = zone.title;
    figure.appendChild(caption);
    figure.appendChild(plot);
    holder.appendChild(figure);

    var projection = zone.projection || null;
    var labels = projection ? usage.labels.concat(usage.ahead) : usage.labels;
    var days = labels.map(function (_label, i) { return i; });
    var today = usage.labels.length - 1;
    var sums = [];
    zone.networks.forEach(function (network, k) {
      var bars = network.bytes.map(function (b, i) { return mb(b) + (k ? sums[k - 1][i] : 0); });
      while (bars.length < days.length) { bars.push(null); }
      sums.push(bars);
    });
    var order = zone.networks.map(function (_n, k) { return k; }).reverse();
    var bars = uPlot.paths.bars({ size: [0.7, 24] });
    var series = [{ label: usage.day, value: function (_u, i) { return i == null ? "" : labels[i]; } }];
    order.forEach(function (k) {
      var network = zone.networks[k];
      series.push({
        label: network.operator,
        stroke: COLOURS[k % COLOURS.length],
        fill: COLOURS[k % COLOURS.length],
        width: 0,
        paths: bars,
        points: { show: false },
        value: function (_u, _v, _s, i) { return i == null || i > today ? "" : mb(network.bytes[i]) + " MB"; },
      });
    });
    var axes = [
      { values: function (_u, splits) { return splits.map(function (i) { return labels[i] || ""; }); }, space: 60 },
      { label: usage.axis, size: 50 },
    ];
    var scales = { x: { time: false, range: [-0.6, days.length - 0.4] }, y: { range: function (_u, _min, max) { return [0, Math.max(max * 1.1, 1)]; } } };
    var left = [];
    if (projection) {
      // Data left: now on today, then at the end of each day ahead.
      left = days.map(function (i) { return i < today || i - today >= projection.length ? null : mb(projection[i - today]); });
      scales.left = { range: function (_u, _min, max) { return [0, Math.max(max * 1.1, 1)]; } };
      axes.push({ scale: "left", side: 1, label: usage.left_axis, size: 60, grid: { show: false } });
      series.push({
        label: usage.projected,
        scale: "left",
        stroke: PROJECTION,
        width: 2,
        dash: [6, 4],
        points: { show: false },
        value: function (_u, v) { return v == null ? "" : v + " MB"; },
      });
    }
    var options = {
      width: Math.max(holder.clientWidth, 200),
      height: HEIGHT,
      scales: scales,
      axes: axes,
      cursor: { points: { show: false } },
      series: series,
    };
    var data = [days].concat(order.map(function (k) { return sums[k]; }));
    if (projection) { data.push(left); }
    plots.push({ plot: new uPlot(options, data, plot), holder: holder });
  }

  function load(holder) {
    fetch(holder.dataset.usage, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (usage) {
        usage.zones.forEach(function (zone) { if (zone.networks.length) { chart(holder, usage, zone); } });
      })
      .catch(function () { holder.hidden = true; }); // the table below still has the numbers
  }

  var resizing;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      plots.forEach(function (p) { p.plot.setSize({ width: Math.max(p.holder.clientWidth, 200), height: HEIGHT }); });
    }, 150);
  });
  document.querySelectorAll(".usage-chart[data-usage]").forEach(load);
})();
