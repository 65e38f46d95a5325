// HMS-OMS SLA report: GET /v1/sla/report drawn as charts (uPlot, shipped in static/vendor/) and two tables.
// page.js shows it at #/report?since=YYYY-MM-DD&until=YYYY-MM-DD&workflow=W. Everything from the server is put in
// the page as text (textContent / text nodes), never as markup; uPlot writes its legend's labels as text too.
"use strict";

window.OMS.report = (function () {
  const { el, fill, clock, seconds, api } = window.OMS;
  const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22"];
  const WIDTH = 560;
  const HEIGHT = 240;
  const state = { drawn: null, charts: [] };

  function day(date) {
    return date.toISOString().slice(0, 10);
  }

  // The period the hash names, or the last four weeks (today included), and the workflow if any.
  function query(hash) {
    const params = new URLSearchParams((hash.split("?")[1]) || "");
    const today = new Date(window.OMS.now());
    const tomorrow = new Date(today.getTime() + 86400000);
    const since = params.get("since") || day(new Date(tomorrow.getTime() - 28 * 86400000));
    const until = params.get("until") || day(tomorrow);
    return { since: since, until: until, workflow: params.get("workflow") || "" };
  }

  function percent(share) {
    return share === null || share === undefined ? "–" : (100 * share).toFixed(1) + "%";
  }

  function triple(figure) {
    const shown = (s) => (s === null || s === undefined ? "–" : seconds(s * 1000));
    return shown(figure.p50_s) + " / " + shown(figure.p90_s) + " / " + shown(figure.p99_s);
  }

  function stepName(row) {
    return row.step_id === null ? "(whole workflow)" : row.step_id;
  }

  // ---- charts ----------------------------------------------------------------------------------------------------

  function series(label, index, extra) {
    return Object.assign({ label: label, stroke: COLOURS[index % COLOURS.length], width: 2, points: { show: true },
      spanGaps: true }, extra || {});
  }

  // Per week (x) and step (one line each): ``value(point)`` or a gap.
  function weekly(weeks, value) {
    const xs = Array.from(new Set(weeks.map((w) => w.week))).sort();
    const keys = Array.from(new Set(weeks.map((w) => w.workflow_id + " · " + (w.step_id === null ? "(whole)" : w.step_id))));
    const lines = keys.map(() => xs.map(() => null));
    for (const w of weeks) {
      const key = w.workflow_id + " · " + (w.step_id === null ? "(whole)" : w.step_id);
      const y = value(w);
      if (y !== null && y !== undefined) lines[keys.indexOf(key)][xs.indexOf(w.week)] = y;
    }
    const shown = keys.map((_, i) => i).filter((i) => lines[i].some((y) => y !== null)); // a line with no point: none
    return { xs: xs.map((w) => Date.parse(w + "T00:00:00Z") / 1000), keys: shown.map((i) => keys[i]),
      lines: shown.map((i) => lines[i]) };
  }

  function percentAxis(label) {
    return { label: label, values: (u, values) => values.map((v) => v + "%") };
  }

  function weekAxis() {
    return { values: (u, values) => values.map((v) => new Date(v * 1000).toISOString().slice(5, 10)) };
  }

  function shareChart(target, weeks) {
    const data = weekly(weeks, (w) => (w.share_within === null ? null : Math.round(1000 * w.share_within) / 10));
    return new window.uPlot({
      width: WIDTH, height: HEIGHT, legend: { live: false },
      scales: { x: { time: true }, y: { range: [0, 100] } },
      series: [{ label: "week" }, ...data.keys.map((k, i) => series(k, i))],
      axes: [weekAxis(), percentAxis("within SLA")],
    }, [data.xs, ...data.lines], target);
  }

  function p90Chart(target, weeks) {
    const data = weekly(weeks, (w) => (w.total_p90_s === null || !w.sla_s ? null
      : Math.round(1000 * w.total_p90_s / w.sla_s) / 10));
    const most = Math.max(120, ...data.lines.flat().filter((v) => v !== null));
    return new window.uPlot({
      width: WIDTH, height: HEIGHT, legend: { live: false },
      scales: { x: { time: true }, y: { range: [0, Math.ceil(most / 20) * 20] } },
      series: [{ label: "week" }, ...data.keys.map((k, i) => series(k, i)),
        { label: "SLA", stroke: "#444", width: 2, dash: [6, 4], points: { show: false } }],
      axes: [weekAxis(), percentAxis("p90 of the SLA")],
    }, [data.xs, ...data.lines, data.xs.map(() => 100)], target);
  }

  function hoursChart(target, counts) {
    const hours = Array.from({ length: 24 }, (_, h) => h);
    const ys = hours.map((h) => counts[h] || counts[String(h)] || 0);
    return new window.uPlot({
      width: WIDTH, height: HEIGHT, legend: { live: false },
      scales: { x: { time: false, range: [-0.5, 23.5] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{ label: "hour", value: (u, v) => (v === null ? "–" : String(v).padStart(2, "0") + ":00") },
        { label: "breaches", stroke: "#b03a2e", fill: "rgba(176, 58, 46, 0.6)", width: 1,
          paths: window.uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false } }],
      axes: [{ splits: () => [0, 3, 6, 9, 12, 15, 18, 21], values: (u, values) => values.map((v) => v + ":00") },
        { label: "breaches" }],
    }, [hours, ys], target);
  }

  // ---- tables ----------------------------------------------------------------------------------------------------

  function rows(report) {
    return report.rows.map((row) => el("tr", { dataset: { workflow: row.workflow_id, step: row.step_id || "" } },
      el("td", null, row.workflow_id), el("td", null, stepName(row)), el("td", null, row.calendar_id || "wall time"),
      el("td", null, row.sla_s === null ? "–" : seconds(row.sla_s * 1000)),
      el("td", { class: "count finished" }, String(row.finished)),
      el("td", { class: "share" }, percent(row.share_within)),
      el("td", { class: "count late" }, String(row.late)), el("td", { class: "count breaches" }, String(row.breaches)),
      el("td", null, triple(row.queue_wait)), el("td", null, triple(row.run)), el("td", null, triple(row.total)),
      el("td", null, seconds(row.over_s * 1000))));
  }

  function worst(report) {
    const found = [];
    for (const row of report.rows) {
      for (const w of row.worst) if (w.over_s > 0) found.push([row, w]);
    }
    found.sort((a, b) => b[1].over_s - a[1].over_s || b[1].total_s - a[1].total_s);
    return found.slice(0, 10).map(([row, w]) => el("tr", { dataset: { instance: w.instance_id } },
      el("td", null, row.workflow_id), el("td", null, stepName(row)),
      el("td", null, el("a", { href: w.link }, w.instance_id)), el("td", { class: "key" }, w.business_key || ""),
      el("td", null, clock(w.finished_at)), el("td", null, seconds(w.over_s * 1000)),
      el("td", null, seconds(w.total_s * 1000))));
  }

  // ---- drawing ---------------------------------------------------------------------------------------------------

  function form(wanted, workflows) {
    document.getElementById("r-since").value = wanted.since;
    document.getElementById("r-until").value = wanted.until;
    const select = document.getElementById("r-workflow");
    const known = new Set(Array.from(select.options).map((o) => o.value));
    for (const id of workflows) if (!known.has(id)) select.append(el("option", { value: id }, id));
    select.value = wanted.workflow;
  }

  // Draws the report the hash names, unless it is the one on the page already (``force``: read it again).
  async function draw(hash, isCurrent, force) {
    const wanted = query(hash);
    const key = JSON.stringify(wanted);
    if (!force && state.drawn === key) return;
    const params = new URLSearchParams({ since: wanted.since, until: wanted.until });
    if (wanted.workflow) params.set("workflow", wanted.workflow);
    const message = document.getElementById("report-message");
    let report;
    let workflows;
    try {
      [report, workflows] = await Promise.all([api("/v1/sla/report?" + params.toString()), api("/v1/workflows")]);
    } catch (error) {
      if (!isCurrent()) return;
      message.textContent = "The report could not be read: " + error.message;
      message.className = "error";
      state.drawn = key;
      return;
    }
    if (!isCurrent()) return;
    state.drawn = key;
    message.textContent = "";
    message.className = "";
    form(wanted, workflows.map((w) => w.id));
    const finished = report.rows.filter((r) => r.step_id !== null).reduce((n, r) => n + r.finished, 0);
    const within = report.rows.filter((r) => r.step_id !== null).reduce((n, r) => n + r.within_sla, 0);
    const breaches = report.rows.filter((r) => r.step_id !== null).reduce((n, r) => n + r.breaches, 0);
    document.getElementById("report-summary").textContent = report.since + " to " + report.until + " (excluded), UTC "
      + "days: " + finished + " step(s) finished, " + percent(finished ? within / finished : null) + " within their "
      + "SLA, " + breaches + " breach(es). Times are working time; percentiles within "
      + (100 * report.precision).toFixed(1) + "%.";
    for (const chart of state.charts) chart.destroy();
    const targets = ["chart-share", "chart-p90", "chart-hours"].map((id) => document.getElementById(id));
    targets.forEach((t) => fill(t));
    state.charts = [shareChart(targets[0], report.weeks), p90Chart(targets[1], report.weeks),
      hoursChart(targets[2], report.breach_hours)];
    const body = rows(report);
    fill(document.querySelector("#report-table tbody"),
      body.length ? body : el("tr", null, el("td", { colspan: 12 }, "No step finished or breached in this period.")));
    const late = worst(report);
    fill(document.querySelector("#report-worst tbody"),
      late.length ? late : el("tr", null, el("td", { colspan: 7 }, "None was late.")));
  }

  document.getElementById("report-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams({ since: document.getElementById("r-since").value,
      until: document.getElementById("r-until").value });
    const workflow = document.getElementById("r-workflow").value;
    if (workflow) params.set("workflow", workflow);
    const hash = "#/report?" + params.toString();
    if (window.location.hash === hash) state.drawn = null; // the same again: read it anew
    window.location.hash = hash;
    if (state.drawn === null) window.dispatchEvent(new HashChangeEvent("hashchange"));
  });

  return { draw: draw, query: query };
})();
