// The console's report charts (/console/reports), drawn with uPlot from the page's JSON block
// (#report-charts: per chart its labels, series and axis). The same numbers are in the table
// under each chart; the page is whole without this script.
(function () {
  "use strict";
  var COLOURS = ["#0a6b4d", "#c2410c", "#1d4ed8", "#a21caf", "#854d0e", "#0e7490", "#4d7c0f", "#be123c"];
  var HEIGHT = 240;
  var plots = [];

  function colour(k) { return COLOURS[k % COLOURS.length]; }

  function width(holder) { return Math.max(holder.clientWidth, 240); }

  // kind: "stacked" (bars, each series on top of the ones before), "bars" and "grouped" (side by
  // side), "lines" (a gap where a value is null). x is the index of a label.
  function draw(holder, spec) {
    var xs = spec.labels.map(function (_label, i) { return i; });
    var n = spec.series.length;
    var data = [xs];
    var series = [{ value: function (_u, i) { return i == null ? "" : spec.labels[i]; } }];
    var order = spec.series.map(function (_s, k) { return k; });
    if (spec.kind === "stacked") {
      var sums = [];
      spec.series.forEach(function (s, k) {
        sums.push(s.values.map(function (v, i) { return Math.round(((v || 0) + (k ? sums[k - 1][i] : 0)) * 100) / 100; }));
      });
      order.reverse(); // the tallest sum first, behind the others: each band shows one series
      order.forEach(function (k) { data.push(sums[k]); });
    } else {
      order.forEach(function (k) { data.push(spec.series[k].values); });
    }
    order.forEach(function (k, j) {
      var s = spec.series[k];
      var one = {
        label: s.label,
        stroke: colour(k),
        value: function (_u, _v, _s, i) { var v = i == null ? null : s.values[i]; return v == null ? "" : v + " " + spec.axis; },
      };
      if (spec.kind === "lines") {
        one.width = 2;
        one.spanGaps = false;
      } else {
        var grouped = spec.kind === "grouped" && n > 1;
        one.fill = colour(k);
        one.width = 0;
        one.points = { show: false };
        one.paths = uPlot.paths.bars({ size: [grouped ? 0.35 : 0.7, 48], align: grouped ? (j % 2 ? 1 : -1) : 0 });
      }
      series.push(one);
    });
    var options = {
      width: width(holder),
      height: HEIGHT,
      scales: {
        x: { time: false, range: [-0.6, xs.length - 0.4] },
        y: { range: function (_u, _min, max) { return [0, Math.max(max || 0, 1)]; } },
      },
      axes: [
        { values: function (_u, splits) { return splits.map(function (i) { return spec.labels[i] === undefined ? "" : spec.labels[i]; }); }, space: 70 },
        { label: spec.axis, size: 60 },
      ],
      cursor: { points: { show: false } },
      series: series,
    };
    plots.push({ plot: new uPlot(options, data, holder), holder: holder });
  }

  var block = document.getElementById("report-charts");
  if (!block || typeof uPlot === "undefined") { return; }
  var charts = JSON.parse(block.textContent);
  document.querySelectorAll(".report-chart[data-chart]").forEach(function (holder) {
    var spec = charts[holder.dataset.chart];
    if (spec && spec.labels.length) { draw(holder, spec); } else { holder.hidden = true; }
  });

  var resizing;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      plots.forEach(function (p) { p.plot.setSize({ width: width(p.holder), height: HEIGHT }); });
    }, 150);
  });
})();
