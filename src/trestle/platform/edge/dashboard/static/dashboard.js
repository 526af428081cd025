// Trestle's dashboard: live updates (server-sent events), charts (uPlot), live logs, the playground.
// Every call goes to /api/..., the platform's own API with the session's key; changes carry X-CSRF-Token.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const api = (path, options) => {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign({ "X-CSRF-Token": csrf }, opts.headers || {});
    return fetch("/api" + path, opts);
  };

  // live part of the page: swapped in when an event says something changed ------------------------
  const live = document.getElementById("live");
  let refreshing = false;
  let again = false;
  let deferred = false;

  function typingInLive() {
    const el = document.activeElement;
    return el && live.contains(el) && ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName);
  }

  async function refresh() {
    if (!live) return;
    if (typingInLive()) {
      if (!deferred) {
        deferred = true;
        live.addEventListener("focusout", () => { deferred = false; setTimeout(refresh, 0); }, { once: true });
      }
      return;
    }
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const url = new URL(location.href);
      url.searchParams.set("fragment", "1");
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const active = document.activeElement;
        const focusKey = active && live.contains(active) ? keyOf(active) : null;
        live.innerHTML = await response.text();
        if (focusKey) {
          const target = live.querySelector(focusKey);
          if (target) target.focus();
        }
        formatTimes(live);
        document.dispatchEvent(new CustomEvent("trestle:refreshed"));
      }
    } finally {
      refreshing = false;
      if (again) { again = false; setTimeout(refresh, 0); }
    }
  }

  function keyOf(el) {
    if (el.id) return "#" + CSS.escape(el.id);
    const form = el.closest("form");
    const dep = form && form.querySelector('input[name="deployment"]');
    const act = form && form.querySelector('input[name="action"]');
    if (dep && act) return `form:has(input[name="action"][value="${CSS.escape(act.value)}"]):has(input[name="deployment"][value="${CSS.escape(dep.value)}"]) button`;
    if (el.getAttribute("href")) return `a[href="${CSS.escape(el.getAttribute("href"))}"]`;
    return null;
  }

  let timer = null;
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }

  if (live && live.dataset.events) {
    const scope = live.dataset.events;
    const query = scope && scope !== "all" ? "?model=" + encodeURIComponent(scope) : "";
    const source = new EventSource("/api/v1/events/stream" + query);
    source.addEventListener("platform", soon);
    window.trestleEvents = source;
  }
  if (live && live.dataset.refresh) {
    setInterval(refresh, Number(live.dataset.refresh) * 1000);  // rates: once per metrics step, not fast
  }

  function formatTimes(root) {
    root.querySelectorAll("time[data-epoch-ms]").forEach((t) => {
      const at = new Date(Number(t.dataset.epochMs));
      t.textContent = at.toLocaleString();
      t.setAttribute("datetime", at.toISOString());
    });
  }
  formatTimes(document);

  // charts -----------------------------------------------------------------------------------------
  const WINDOWS = { "15m": 900, "1h": 3600, "24h": 86400 };
  const Q = ["0.5", "0.9", "0.99"];
  const CHARTS = [
    { id: "requests", title: "Requests per second by status", unit: "req/s",
      series: ["2xx", "3xx", "4xx", "5xx"].map((s) => ({ metric: "baseten_inference_requests_total", labels: { status: s }, label: s, rate: true })) },
    { id: "latency", title: "End-to-end latency", unit: "ms",
      series: Q.map((q) => ({ metric: "baseten_end_to_end_response_time_seconds", labels: { quantile: q }, label: "p" + Math.round(q * 100), scale: 1000 })) },
    { id: "ttfb", title: "Time to first byte", unit: "ms",
      series: Q.map((q) => ({ metric: "baseten_time_to_first_byte_seconds", labels: { quantile: q }, label: "p" + Math.round(q * 100), scale: 1000 })) },
    { id: "concurrency", title: "Concurrent requests", unit: "requests",
      series: [{ metric: "baseten_concurrent_requests", labels: {}, label: "in flight" }] },
    { id: "replicas", title: "Replicas", unit: "replicas",
      series: [{ metric: "baseten_replicas_active", labels: {}, label: "active" }, { metric: "baseten_replicas_starting", labels: {}, label: "starting" }] },
    { id: "cpu", title: "CPU", unit: "cores",
      series: [{ metric: "baseten_container_cpu_usage_seconds_total", labels: {}, label: "cores" }] },
    { id: "memory", title: "Memory", unit: "MiB",
      series: [{ metric: "baseten_container_cpu_memory_working_set_bytes", labels: {}, label: "working set", scale: 1 / 1048576 }] },
    { id: "gpu", title: "GPU", unit: "% / MiB",
      series: [{ metric: "baseten_gpu_utilization", labels: {}, label: "utilization %", scale: 100 }, { metric: "baseten_gpu_memory_used", labels: {}, label: "memory MiB" }] },
  ];
  const COLORS = ["#2f7d32", "#1565c0", "#ef6c00", "#c62828", "#6a1b9a"];

  function column(body, metric, labels) {
    const d = body.metric_descriptors.findIndex((x) => x.name === metric);
    if (d < 0) return null;
    const sets = body.metric_descriptors[d].label_sets || [{}];
    const c = sets.findIndex((ls) => Object.entries(labels).every(([k, v]) => ls[k] === v));
    return c < 0 ? null : [d, c];
  }

  function drawCharts(box) {
    const model = box.dataset.model;
    const env = box.dataset.env;
    const seconds = WINDOWS[box.dataset.window] || 3600;
    const path = env === "development"
      ? `/v1/models/${model}/deployments/development/metrics`
      : `/v1/models/${model}/environments/${encodeURIComponent(env)}/metrics`;
    const metrics = [...new Set(CHARTS.flatMap((c) => c.series.map((s) => s.metric)))];
    const plots = {};
    box.innerHTML = "";
    CHARTS.forEach((chart) => {
      const fig = document.createElement("figure");
      fig.className = "chart";
      fig.id = "chart-" + chart.id;
      fig.dataset.points = "0";
      fig.innerHTML = `<figcaption>${chart.title} <span class="unit">(${chart.unit})</span></figcaption><div class="plot"></div><p class="no-data">No data in this window yet.</p>`;
      box.appendChild(fig);
    });
    async function load() {
      const end = Date.now();
      const params = new URLSearchParams({ mode: "SERIES", start_epoch_millis: end - seconds * 1000, end_epoch_millis: end });
      metrics.forEach((m) => params.append("metrics", m));
      let body;
      try {
        const response = await api(path + "?" + params);
        body = await response.json();
        if (!response.ok) throw new Error(body.error || response.statusText);
      } catch (err) {
        box.querySelectorAll(".no-data").forEach((p) => { p.textContent = "Metrics unavailable: " + err.message; });
        return 30;
      }
      const step = body.step_seconds || 10;
      const xs = body.metric_values.map((v) => v.start_epoch_millis / 1000);
      CHARTS.forEach((chart) => {
        const fig = document.getElementById("chart-" + chart.id);
        const ys = chart.series.map((s) => {
          const at = column(body, s.metric, s.labels);
          return body.metric_values.map((v) => {
            const value = at ? v.values[at[0]][at[1]] : null;
            if (value === null || value === undefined) return null;
            return value * (s.scale || 1) / (s.rate ? step : 1);
          });
        });
        const points = ys.reduce((n, y) => n + y.filter((v) => v !== null).length, 0);
        fig.dataset.points = String(points);
        fig.querySelector(".no-data").hidden = points > 0;
        const data = [xs, ...ys];
        const width = Math.max(260, Math.min(fig.clientWidth || 560, 720));
        if (plots[chart.id] && plots[chart.id].series.length === data.length) {
          plots[chart.id].setData(data);
        } else {
          const styles = getComputedStyle(document.body);
          const ink = styles.getPropertyValue("--ink").trim() || "#222";
          const grid = styles.getPropertyValue("--grid").trim() || "#ddd";
          const axis = { stroke: ink, grid: { stroke: grid }, ticks: { stroke: grid } };
          plots[chart.id] = new uPlot({
            width, height: 180, legend: { live: false },
            series: [{}, ...chart.series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, points: { show: true, size: 4 } }))],
            axes: [axis, Object.assign({ size: 56 }, axis)],
          }, data, fig.querySelector(".plot"));
        }
      });
      box.dataset.loaded = String(Number(box.dataset.loaded || 0) + 1);
      return step;
    }
    (async function loop() {
      const step = await load();
      setTimeout(loop, Math.max(10, step) * 1000);  // a new point per step
    })();
  }
  document.querySelectorAll(".charts").forEach((box) => { if (window.uPlot) drawCharts(box); });

  // live logs --------------------------------------------------------------------------------------
  const logForm = document.querySelector("form.log-filters");
  const logBox = document.getElementById("logs");
  let logSource = null;
  function followLogs() {
    if (!logForm || !logBox) return;
    if (logSource) logSource.close();
    logBox.innerHTML = "";
    const params = new URLSearchParams();
    new FormData(logForm).forEach((value, name) => { if (value) params.set(name, value); });
    logSource = new EventSource(`/api/v1/deployments/${logForm.dataset.deployment}/logs/stream?` + params);
    logSource.addEventListener("log", (message) => {
      const entry = JSON.parse(message.data);
      const line = document.createElement("div");
      line.className = "line" + (entry.level ? " level-" + entry.level : "");
      line.dataset.replica = entry.replica || "";
      line.dataset.requestId = entry.request_id || "";
      const at = new Date(Number(entry.timestamp.slice(0, -6)));
      line.textContent = `${at.toLocaleTimeString()} ${entry.replica || "platform"} ${entry.message}`;
      const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 24;
      logBox.appendChild(line);
      while (logBox.childElementCount > 2000) logBox.firstElementChild.remove();
      if (atBottom) logBox.scrollTop = logBox.scrollHeight;
    });
    logSource.onerror = () => { logBox.dataset.state = "reconnecting"; };
    logSource.onopen = () => { logBox.dataset.state = "open"; };
  }
  if (logForm) {
    logForm.addEventListener("submit", (e) => { e.preventDefault(); followLogs(); });
    followLogs();
  }
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button.filter-replica");
    if (!button || !logForm) return;
    logForm.elements.replica.value = button.dataset.replica;
    followLogs();
    logBox.focus();
  });

  // playground -------------------------------------------------------------------------------------
  const play = document.querySelector("form.playground");
  if (play) {
    const editor = play.elements.body;
    const error = document.getElementById("request-error");
    const answer = document.getElementById("answer");
    const status = document.getElementById("answer-status");
    const url = play.dataset.url;
    const snippets = () => {
      let body;
      try { body = JSON.stringify(JSON.parse(editor.value)); } catch (_) { return; }
      const quoted = body.replace(/'/g, "'\\''");
      document.getElementById("curl").textContent =
        `curl -X POST ${url} \\\n  -H "Authorization: Api-Key $TRESTLE_API_KEY" \\\n  -H 'Content-Type: application/json' \\\n  -d '${quoted}'`;
      document.getElementById("python").textContent =
        `import json\nimport os\n\nimport httpx\n\nwith httpx.stream(\n    "POST",\n    "${url}",\n` +
        `    headers={"Authorization": f"Api-Key {os.environ['TRESTLE_API_KEY']}"},\n    json=json.loads(${JSON.stringify(body)}),\n` +
        `    timeout=None,\n) as response:\n    for chunk in response.iter_text():\n        print(chunk, end="", flush=True)\n`;
    };
    editor.addEventListener("input", snippets);
    snippets();
    play.addEventListener("submit", async (e) => {
      e.preventDefault();
      let body;
      try { body = JSON.stringify(JSON.parse(editor.value)); } catch (err) {
        error.textContent = "Not valid JSON: " + err.message;
        error.hidden = false;
        editor.focus();
        return;
      }
      error.hidden = true;
      answer.textContent = "";
      answer.dataset.chunks = "0";
      status.textContent = "sending…";
      const started = performance.now();
      const response = await api(play.dataset.path, { method: "POST", headers: { "Content-Type": "application/json" }, body });
      status.textContent = `HTTP ${response.status}`;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const chunk = document.createElement("span");
        chunk.className = "chunk";
        chunk.textContent = decoder.decode(value, { stream: true });
        answer.appendChild(chunk);
        answer.dataset.chunks = String(answer.childElementCount);
      }
      status.textContent = `HTTP ${response.status} in ${Math.round(performance.now() - started)} ms`;
      answer.dataset.done = "1";
    });
  }
  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button.copy");
    if (!button) return;
    const text = document.getElementById(button.dataset.copy).textContent;
    try { await navigator.clipboard.writeText(text); button.textContent = "Copied"; } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(button.dataset.copy));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
})();
