// The metrics plots (uPlot): the API's GET /apps/{app}/metrics, asked through the dashboard
// (metrics.json), drawn per process type and window, refreshed every REFRESH_MS. Events
// (deploys, restarts, scaling, crashes, R14/R15, ...) are drawn as vertical markers.
"use strict";

(() => {
  const REFRESH_MS = 15000;
  const COLORS = ["#2f6fdf", "#e0762c", "#c23b3b", "#3b9e5a", "#8a55c7", "#777777"];
  const PLOTS = [
    {
      id: "plot-response-time",
      series: (m) => [
        ["p50", m.series.response_time_p50_ms],
        ["p95", m.series.response_time_p95_ms],
        ["p99", m.series.response_time_p99_ms],
      ],
    },
    {
      id: "plot-throughput",
      series: (m) => [
        ["2xx", m.series.requests_2xx],
        ["3xx", m.series.requests_3xx],
        ["4xx", m.series.requests_4xx],
        ["5xx", m.series.requests_5xx],
      ],
    },
    {
      id: "plot-errors",
      series: (m) => [
        ...Object.keys(m.router_errors || {}).sort().map((code) => [code, m.router_errors[code]]),
        ["5xx", m.series.requests_5xx],
      ],
    },
    {
      id: "plot-memory",
      series: (m) => [
        ["RSS mean", m.series.memory_rss_mb_mean],
        ["RSS max", m.series.memory_rss_mb_max],
        ["swap", m.series.memory_swap_mb_mean],
        ["quota", m.series.at.map(() => m.memory_quota_mb ?? null)],
      ],
    },
    {
      id: "plot-load",
      series: (m) => [
        ["mean", m.series.load_mean],
        ["max", m.series.load_max],
      ],
    },
  ];
  const plots = new Map(); // id -> {plot, labels}
  let events = [];
  let windowName = "1h";

  // Draws each event of the window as a dashed vertical line across the plot.
  const eventMarkers = {
    hooks: {
      draw: [
        (u) => {
          const { ctx, bbox } = u;
          ctx.save();
          ctx.strokeStyle = "#b04fb0";
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1;
          for (const event of events) {
            const x = Math.round(u.valToPos(event.at, "x", true));
            if (x < bbox.left || x > bbox.left + bbox.width) continue;
            ctx.beginPath();
            ctx.moveTo(x, bbox.top);
            ctx.lineTo(x, bbox.top + bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        },
      ],
    },
  };

  function draw(spec, metrics) {
    const target = document.getElementById(spec.id);
    const series = spec.series(metrics);
    const labels = series.map(([label]) => label).join(",");
    const data = [metrics.series.at, ...series.map(([, values]) => values)];
    const points = series.reduce(
      (sum, [, values]) => sum + values.filter((v) => v !== null && v !== undefined).length, 0);
    target.dataset.points = String(points);
    const existing = plots.get(spec.id);
    if (existing && existing.labels === labels) {
      existing.plot.setData(data);
      return;
    }
    if (existing) existing.plot.destroy();
    const options = {
      width: Math.max(target.clientWidth, 280),
      height: 180,
      plugins: [eventMarkers],
      scales: { x: { time: true } },
      series: [
        {},
        ...series.map(([label], i) => ({
          label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          spanGaps: false,
        })),
      ],
      axes: [{}, { size: 50 }],
    };
    plots.set(spec.id, { plot: new uPlot(options, data, target), labels });
  }

  function showEvents() {
    const list = document.getElementById("metrics-events");
    const items = events.slice(-20).reverse().map((event) => {
      const li = document.createElement("li");
      const when = new Date(event.at * 1000).toLocaleString();
      li.textContent = `${when} · ${event.kind} · ${event.message}`;
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "None in this window.";
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  async function refresh() {
    const status = document.getElementById("metrics-status");
    const type = document.getElementById("metrics-type").value;
    try {
      const query = `process_type=${encodeURIComponent(type)}&window=${windowName}`;
      const response = await dashboard.get(`/metrics.json?${query}`);
      const body = await response.json();
      if (!response.ok) {
        status.textContent = body.message || `metrics: ${response.status}`;
        return;
      }
      events = body.events || [];
      if (typeof uPlot !== "undefined") PLOTS.forEach((spec) => draw(spec, body));
      showEvents();
      status.textContent = `${body.window}, one point per ${body.step_seconds} s; ` +
        `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      status.textContent = "metrics unavailable: retrying";
    }
  }

  if (!dashboard.app) return;
  document.querySelectorAll("button.window").forEach((button) => {
    button.addEventListener("click", () => {
      document.querySelectorAll("button.window").forEach((b) => b.classList.remove("active"));
      button.classList.add("active");
      windowName = button.dataset.window;
      refresh();
    });
  });
  document.getElementById("metrics-type").addEventListener("change", refresh);
  window.addEventListener("resize", () => {
    plots.forEach(({ plot }, id) => {
      const width = Math.max(document.getElementById(id).clientWidth, 280);
      plot.setSize({ width, height: 180 });
    });
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
