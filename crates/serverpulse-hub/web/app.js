// ServerPulse dashboard behaviour: the live feed (SSE), live rows and tiles, charts with
// uPlot, and forms that call the REST API with the session's CSRF token. Pages are
// rendered on the hub; this file only keeps them current and sends what people change.
"use strict";

(function () {
  const csrf = () => document.body.dataset.csrf || "";

  // ---- the REST API -------------------------------------------------------------------
  async function api(method, url, body) {
    const options = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let json = null;
    try { json = await response.json(); } catch (_) { /* not JSON */ }
    return { ok: response.ok, status: response.status, body: json || {} };
  }

  // ---- figures, as the hub formats them (web/format.rs) ------------------------------
  const dash = "–";
  const percent = (v) => (v == null ? dash : v.toFixed(1) + " %");
  const decimal = (v) => (v == null ? dash : v.toFixed(2));
  function bytes(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let value = Math.max(0, v), unit = 0;
    while (value >= 1024 && unit + 1 < units.length) { value /= 1024; unit += 1; }
    return unit === 0 ? value.toFixed(0) + " B" : value.toFixed(1) + " " + units[unit];
  }
  const rate = (v) => (v == null ? dash : bytes(v) + "/s");
  function duration(seconds) {
    const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600), m = Math.floor((seconds % 3600) / 60);
    if (d > 0) return d + " d " + h + " h";
    if (h > 0) return h + " h " + m + " min";
    if (m > 0) return m + " min";
    return Math.floor(seconds) + " s";
  }
  function ago(at) {
    if (!at) return "never";
    const ms = Date.now() - at;
    return ms < 5000 ? "just now" : duration(Math.floor(ms / 1000)) + " ago";
  }
  const level = (v) => (v == null ? "none" : v >= 90 ? "crit" : v >= 75 ? "warn" : "ok");

  function setGauge(root, field, value) {
    root.querySelectorAll('.gauge[data-field="' + field + '"]').forEach((gauge) => {
      gauge.className = "gauge " + level(value);
      gauge.querySelector(".bar").style.width = Math.min(100, Math.max(0, value || 0)) + "%";
      gauge.querySelector(".value").textContent = percent(value);
    });
  }
  function setText(root, field, text) {
    root.querySelectorAll('[data-field="' + field + '"]').forEach((el) => { el.textContent = text; });
  }
  function setStatus(root, status) {
    root.querySelectorAll('.badge[data-field="status"]').forEach((badge) => {
      badge.className = "badge " + status;
      badge.textContent = status;
    });
  }

  // The figures a fleet row and a server page's tiles share.
  function showFigures(root, s) {
    setStatus(root, s.status);
    setGauge(root, "cpu", s.cpu);
    setGauge(root, "memory", s.memory);
    setGauge(root, "disk", s.disk);
    setText(root, "load", decimal(s.load));
    setText(root, "uptime", s.uptime == null ? dash : duration(s.uptime));
  }

  // ---- the live feed ----------------------------------------------------------------
  const listeners = { server: [], alerts: [] };
  let source = null;
  function live(event, handler) {
    listeners[event].push(handler);
    if (source) return;
    source = new EventSource("/api/v1/live");
    const banner = document.getElementById("live-status");
    source.onopen = () => { if (banner) banner.hidden = true; };
    source.onerror = () => { if (banner) banner.hidden = false; };
    for (const name of Object.keys(listeners)) {
      source.addEventListener(name, (e) => {
        const data = JSON.parse(e.data);
        listeners[name].forEach((h) => h(data));
      });
    }
    // Events were dropped for this page: what it shows may be stale.
    source.addEventListener("resync", () => window.location.reload());
  }
  window.ServerPulse = { live, api };

  // The bell: the open alert count, live; the newest open alerts when opened.
  function bell() {
    const el = document.getElementById("bell");
    if (!el) return;
    live("alerts", (data) => {
      el.dataset.count = String(data.open);
      document.getElementById("bell-count").textContent = String(data.open);
    });
    el.closest("details").addEventListener("toggle", async (e) => {
      if (!e.target.open) return;
      const list = document.getElementById("bell-list");
      const answer = await api("GET", "/api/v1/alerts?state=open&limit=5");
      list.replaceChildren();
      const alerts = answer.ok ? answer.body.alerts : [];
      if (alerts.length === 0) {
        const li = document.createElement("li");
        li.className = "muted";
        li.textContent = answer.ok ? "No open alert." : "Cannot load alerts.";
        list.appendChild(li);
      }
      for (const a of alerts) {
        const li = document.createElement("li");
        const sev = document.createElement("span");
        sev.className = "sev " + a.severity;
        sev.textContent = a.severity;
        const link = document.createElement("a");
        link.href = "/alerts?server=" + a.server_id;
        link.textContent = " " + a.message;
        const when = document.createElement("span");
        when.className = "muted small";
        when.textContent = " " + ago(a.started_at);
        li.append(sev, link, when);
        list.appendChild(li);
      }
    });
  }

  // Re-reads this page and swaps in the region with `id` (what htmx does for filters).
  async function refreshRegion(id) {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById(id), stale = document.getElementById(id);
    if (fresh && stale) { stale.replaceWith(fresh); apiForms(fresh); }
  }

  // ---- fleet overview ---------------------------------------------------------------
  function fleet() {
    // Servers this page does not list (new, or on another page) are counted, not inserted:
    // the list keeps its order and paging until the user refreshes.
    const unseen = new Set();
    live("server", (s) => {
      const row = document.querySelector('tr[data-server-id="' + s.id + '"]');
      if (!row) {
        const news = document.getElementById("fleet-news");
        if (!news || document.querySelector("[data-summary]") === null) return;
        unseen.add(s.id);
        news.querySelector('[data-out="news"]').textContent =
          unseen.size + (unseen.size === 1 ? " server not shown here has" : " servers not shown here have") + " reported.";
        news.hidden = false;
        return;
      }
      const before = row.className.replace("status-", "");
      if (before !== s.status) {
        row.className = "status-" + s.status;
        const from = document.querySelector('[data-summary="' + before + '"]');
        const to = document.querySelector('[data-summary="' + s.status + '"]');
        if (from) from.textContent = String(Math.max(0, Number(from.textContent) - 1));
        if (to) to.textContent = String(Number(to.textContent) + 1);
      }
      showFigures(row, s);
      setText(row, "version", s.agent_version || dash);
      row.querySelectorAll('[data-field="seen"]').forEach((el) => { el.dataset.at = String(s.last_contact || 0); });
      refreshAges(row);
    });
    live("alerts", (a) => {
      const cell = document.querySelector('tr[data-server-id="' + a.server_id + '"] [data-field="alerts"]');
      if (!cell) return;
      const open = cell.querySelector('[data-count="open"]'), failed = cell.querySelector('[data-count="failed"]');
      open.textContent = a.server_open + " open";
      open.hidden = a.server_open === 0;
      failed.textContent = a.server_failed_services + " failed";
      failed.hidden = a.server_failed_services === 0;
      cell.querySelector('[data-count="none"]').hidden = a.server_open > 0 || a.server_failed_services > 0;
    });
    setInterval(() => refreshAges(document), 15000);
  }
  function refreshAges(root) {
    root.querySelectorAll('[data-field="seen"][data-at]').forEach((el) => {
      el.textContent = ago(Number(el.dataset.at));
    });
  }

  // ---- server page: tiles and charts ------------------------------------------------
  const RANGES = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
  // chart → [[label, series key], …]
  const CHARTS = {
    cpu: [["CPU", "cpu"]], memory: [["Memory", "memory"]], disk: [["Disk", "disk"]], load: [["Load", "load"]],
    network: [["Received", "network_rx_rate"], ["Sent", "network_tx_rate"]],
    diskio: [["Read", "disk_read_rate"], ["Written", "disk_write_rate"]],
  };
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function serverPage() {
    const head = document.getElementById("server");
    const id = Number(head.dataset.serverId);
    const container = document.getElementById("charts");
    const note = document.getElementById("chart-note");
    const charts = {};
    let view = { range: container.dataset.range, from: null, to: null, step: null, data: null };

    function axisValue(unit) {
      if (unit === "B/s") return (u, values) => values.map((v) => (v == null ? "" : bytes(v) + "/s"));
      if (unit === "%") return (u, values) => values.map((v) => (v == null ? "" : v + "%"));
      return (u, values) => values.map((v) => (v == null ? "" : String(v)));
    }

    function draw(chart) {
      const figure = container.querySelector('[data-chart="' + chart + '"]');
      const lines = CHARTS[chart];
      const data = view.data;
      const unit = figure.dataset.unit;
      const format = unit === "B/s" ? rate : unit === "%" ? percent : decimal;
      const banded = data.banded && lines.length === 1;
      const columns = [data.t];
      const series = [{}];
      const colors = [css("--chart-1"), css("--chart-2")];
      lines.forEach(([label, key], i) => {
        columns.push(data.series[key].avg);
        series.push({ label, stroke: colors[i], width: 1.5, value: (u, v) => format(v), spanGaps: false });
      });
      const bands = [];
      if (banded) {
        const key = lines[0][1];
        columns.push(data.series[key].max, data.series[key].min);
        series.push({ label: "max", stroke: "transparent", points: { show: false }, value: (u, v) => format(v) });
        series.push({ label: "min", stroke: "transparent", points: { show: false }, value: (u, v) => format(v) });
        bands.push({ series: [2, 3], fill: css("--band") });
      }
      if (charts[chart]) { charts[chart].destroy(); delete charts[chart]; }
      figure.querySelectorAll(".empty-chart, .uplot").forEach((el) => el.remove());
      if (data.t.length === 0) {
        const empty = document.createElement("div");
        empty.className = "empty-chart";
        empty.textContent = "No data in this range";
        figure.appendChild(empty);
        return;
      }
      const options = {
        width: Math.max(280, figure.clientWidth), height: 200, series, bands,
        scales: { x: { time: true, range: [view.from / 1000, view.to / 1000] },
                  y: unit === "%" ? { range: [0, 100] } : { range: (u, min, max) => [0, Math.max(max * 1.1, unit === "" ? 1 : 1024)] } },
        axes: [{ stroke: css("--muted"), grid: { stroke: css("--line") } },
               { stroke: css("--muted"), grid: { stroke: css("--line") }, values: axisValue(unit), size: unit === "B/s" ? 92 : 56 }],
        cursor: { drag: { x: true, y: false } },
        legend: { live: true },
      };
      charts[chart] = new uPlot(options, columns, figure);
      charts[chart].columns = columns;
    }

    async function load() {
      let from, to;
      if (view.range === "custom") { from = view.from; to = view.to; }
      else { to = Date.now(); from = to - RANGES[view.range]; }
      const points = Math.min(1000, Math.max(100, Math.floor(container.clientWidth / 2)));
      note.textContent = "Loading…";
      const answer = await api("GET", "/api/v1/servers/" + id + "/chart?from=" + Math.floor(from) + "&to=" + Math.floor(to) + "&points=" + points);
      if (!answer.ok) { note.textContent = answer.body.error || "Cannot load the history (" + answer.status + ")"; return; }
      view = Object.assign(view, { from, to, step: answer.body.step, data: answer.body });
      note.textContent = answer.body.banded ? "Each point sums up " + duration(answer.body.step / 1000) + ": shaded band = min to max" : "";
      Object.keys(CHARTS).forEach(draw);
    }

    // A live point joins the charts when the range ends now and points are raw samples.
    function append(s) {
      if (view.range === "custom" || !view.data || view.step > 60e3 || s.at == null) return;
      const t = Math.floor(s.at / 1000);
      const last = view.data.t[view.data.t.length - 1];
      if (last != null && t <= last) return;
      const values = { cpu: s.cpu, memory: s.memory, disk: s.disk, load: s.load, network_rx_rate: s.network_rx_rate,
        network_tx_rate: s.network_tx_rate, disk_read_rate: s.disk_read_rate, disk_write_rate: s.disk_write_rate };
      view.data.t.push(t);
      for (const key of Object.keys(values)) {
        const series = view.data.series[key];
        series.avg.push(values[key]); series.min.push(values[key]); series.max.push(values[key]);
      }
      view.to = Math.max(view.to, s.at);
      view.from = view.to - RANGES[view.range];
      Object.keys(CHARTS).forEach(draw);
      container.dataset.lastPoint = String(s.at);
    }

    document.querySelectorAll(".ranges .range").forEach((link) => {
      link.addEventListener("click", (e) => {
        e.preventDefault();
        document.querySelectorAll(".ranges .range").forEach((l) => l.classList.toggle("current", l === link));
        view.range = link.dataset.range;
        history.replaceState(null, "", "?range=" + view.range);
        load();
      });
    });
    document.getElementById("custom-range").addEventListener("submit", (e) => {
      e.preventDefault();
      const form = e.target;
      const from = Date.parse(form.from.value), to = Date.parse(form.to.value);
      if (!(from < to)) { note.textContent = "Pick a start before the end."; return; }
      document.querySelectorAll(".ranges .range").forEach((l) => l.classList.remove("current"));
      view.range = "custom"; view.from = from; view.to = to;
      load();
    });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (view.data) Object.keys(CHARTS).forEach(draw); }, 150);
    });

    live("server", (s) => {
      if (s.id !== id) return;
      showFigures(document, s);
      setText(document, "network", "↓ " + rate(s.network_rx_rate) + " ↑ " + rate(s.network_tx_rate));
      setText(document, "disk_io", "R " + rate(s.disk_read_rate) + " W " + rate(s.disk_write_rate));
      setText(document, "seen", ago(s.last_contact));
      append(s);
    });
    load();
  }

  // ---- forms that call the API ------------------------------------------------------
  // The error slot for an API field: `thresholds.cpu` or `settings.to[0]` fall back to
  // their parent's slot when they have none of their own.
  function slotFor(scope, field) {
    for (let key = field; key; ) {
      const slot = scope.querySelector('.field-error[data-field="' + CSS.escape(key) + '"]');
      if (slot) return slot;
      const shorter = key.replace(/(\.[^.[]*|\[\d+\])$/, "");
      if (shorter === key) return null;
      key = shorter;
    }
    return null;
  }

  // Shows the API's field errors next to the fields they name; the rest above the button.
  function showErrors(form, answer) {
    // The nearest of the form, its parent, its article or section with a general error slot.
    const scope = [form, form.parentElement, form.closest("article, section")]
      .find((el) => el && el.querySelector('.notice.error[data-field=""]')) || form;
    scope.querySelectorAll(".field-error, .notice.error").forEach((el) => { el.hidden = true; el.textContent = ""; });
    if (answer.ok !== false && !answer.body.error && !answer.body.details) return;
    const details = answer.body.details || {};
    const unplaced = [];
    for (const [field, messages] of Object.entries(details)) {
      const message = [].concat(messages).join("; ");
      const slot = slotFor(scope, field);
      if (slot) { slot.textContent = message; slot.hidden = false; } else unplaced.push(field + ": " + message);
    }
    const general = scope.querySelector('.notice.error[data-field=""]');
    if (general && (unplaced.length || !Object.keys(details).length)) {
      general.textContent = unplaced.length ? unplaced.join(" · ") : answer.body.error || "Failed (" + answer.status + ")";
      general.hidden = false;
    }
  }

  function addServer() {
    const form = document.getElementById("add-server");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      const answer = await api("POST", form.dataset.api, { name: form.name.value.trim(), ip: form.ip.value.trim() });
      button.disabled = false;
      if (!answer.ok) { showErrors(form, answer); return; }
      const added = answer.body;
      document.getElementById("add-step").hidden = true;
      const step = document.getElementById("install-step");
      step.querySelector('[data-out="name"]').textContent = added.server.name;
      step.querySelector('[data-out="command"]').textContent = added.install_command;
      const expires = step.querySelector('[data-out="expires"]');
      expires.textContent = new Date(added.expires_at).toLocaleString();
      expires.dateTime = new Date(added.expires_at).toISOString();
      step.hidden = false;
      const link = document.getElementById("server-link");
      link.href = "/servers/" + added.server.id;
      live("server", (s) => {
        if (s.id !== added.server.id || s.status !== "online") return;
        document.getElementById("waiting").hidden = true;
        document.getElementById("connected").hidden = false;
      });
    });
  }

  // What a form sends: each named field at its dotted JSON path (`thresholds.cpu`),
  // converted by its `data-type` (number, list, ints, bool, json, datetime); empty
  // optional fields are left out. A silence form for an alert is built from its data.
  function bodyOf(form) {
    if (form.dataset.silenceServer) {
      const rule = Number(form.dataset.silenceRule);
      return { duration_minutes: Number(form.duration_minutes.value), servers: [Number(form.dataset.silenceServer)],
        rules: rule > 0 ? [rule] : [], comment: "silenced from the alerts page" };
    }
    const body = {};
    let any = false;
    for (const field of form.elements) {
      if (!field.name || field.disabled || field.type === "submit") continue;
      const type = field.dataset.type || "text";
      let value;
      if (type === "bool") value = field.checked;
      else {
        const text = field.value.trim();
        if (text === "" && !field.hasAttribute("data-keep-empty")) continue;
        if (type === "number") value = Number(text);
        else if (type === "list") value = text === "" ? [] : text.split(",").map((t) => t.trim()).filter((t) => t);
        else if (type === "ints") value = text === "" ? [] : text.split(",").map((t) => Number(t.trim()));
        else if (type === "datetime") value = Date.parse(text);
        else if (type === "json") {
          try { value = JSON.parse(text); } catch (e) { throw { field: field.name, message: "is not valid JSON: " + e.message }; }
        } else value = text;
      }
      const path = field.name.split(".");
      let target = body;
      while (path.length > 1) { const key = path.shift(); target = target[key] = target[key] || {}; }
      target[path[0]] = value;
      any = true;
    }
    return any ? body : undefined;
  }

  // Forms marked `data-api` call the API (`data-method`, POST by default). Afterwards,
  // `data-then`: `refresh` re-reads the page's list, `reload` the page, `go:/path` goes
  // there, `show` fills the section's `[data-out]` slots from the answer (one-time values)
  // and reveals its `[data-after]` parts.
  function apiForms(root) {
    root.querySelectorAll("form[data-api][data-then]").forEach((form) => {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
        let body;
        try { body = bodyOf(form); } catch (problem) {
          showErrors(form, { status: 400, body: { details: { [problem.field]: [problem.message] } } });
          return;
        }
        form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
        const answer = await api(form.dataset.method || "POST", form.dataset.api, body);
        form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
        if (!answer.ok) { showErrors(form, answer); return; }
        const then = form.dataset.then;
        if (then === "show") {
          showErrors(form, { body: {} });
          const box = form.closest("section, article") || form.parentElement;
          box.querySelectorAll("[data-out]").forEach((slot) => {
            const value = answer.body[slot.dataset.out];
            const optional = slot.closest("[data-optional]");
            if (value == null) { if (optional) optional.hidden = true; return; }
            slot.textContent = String(value);
            if (optional) optional.hidden = false;
          });
          box.querySelectorAll("[data-after]").forEach((el) => { el.hidden = false; });
          return;
        }
        if (then.startsWith("go:")) { window.location.assign(then.slice(3)); return; }
        const region = form.closest("[id$='-results']");
        if (then === "refresh" && region) refreshRegion(region.id); else window.location.reload();
      });
    });
  }

  function alertsPage() {
    let pending = null;
    live("alerts", () => {
      clearTimeout(pending);
      pending = setTimeout(() => refreshRegion("alerts-results"), 300);
    });
    document.body.addEventListener("htmx:afterSwap", () => apiForms(document.getElementById("alerts-results")));
  }

  function copyButtons() {
    document.querySelectorAll("button.copy[data-copy]").forEach((button) => {
      button.addEventListener("click", async () => {
        const text = document.querySelector(button.dataset.copy).textContent;
        try {
          await navigator.clipboard.writeText(text);
        } catch (_) {
          const range = document.createRange();
          range.selectNodeContents(document.querySelector(button.dataset.copy));
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          document.execCommand("copy");
        }
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = "Copy"; }, 2000);
      });
    });
  }

  const PAGES = { fleet, server: serverPage, "add-server": addServer, alerts: alertsPage };
  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.signedIn !== "true") return;
    bell();
    copyButtons();
    apiForms(document);
    const page = document.querySelector("main").dataset.page;
    if (PAGES[page]) PAGES[page]();
  });
})();
