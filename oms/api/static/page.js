// HMS-OMS operator board. Reads the JSON API every two seconds and redraws; no framework, no build step.
// Everything from the server is put in the page as text (textContent / text nodes), never as markup.
"use strict";

(function () {
  const POLL_MS = 2000;
  const PAGE_SIZE = 20;
  const LIGHT_MARK = { green: "●", yellow: "▲", red: "■" };
  const body = document.body;
  const isAdmin = body.dataset.role === "admin";
  const state = {
    filters: { workflow: "", status: "", light: "" },
    cursors: [""], // cursors[n] opens page n; "" is the newest page
    next: null,
    offset: 0, // the server's clock minus this browser's
    message: { instance: null, text: "", error: false },
    timer: null,
    loop: 0,
  };

  // ---- small helpers -------------------------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fill(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  }

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  function light(name) {
    const known = Object.prototype.hasOwnProperty.call(LIGHT_MARK, name) ? name : "unknown";
    return el("span", { class: "light light-" + known, dataset: { light: known } },
      (LIGHT_MARK[known] || "?") + " " + (name || "unknown"));
  }

  function when(iso) {
    if (!iso) return null;
    const text = String(iso);
    return Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : text + "Z");
  }

  function clock(iso) {
    const ms = when(iso);
    return ms === null || Number.isNaN(ms) ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  }

  function seconds(ms) {
    if (ms === null || Number.isNaN(ms)) return "–";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    if (s < 3600) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function setStatus(text, error) {
    const line = document.getElementById("status-line");
    line.textContent = text;
    line.classList.toggle("error", Boolean(error));
  }

  // ---- the API ---------------------------------------------------------------------------------------------------

  async function api(path, options) {
    const init = Object.assign({ credentials: "same-origin" }, options || {});
    init.headers = Object.assign({ Accept: "application/json" }, init.headers || {});
    const response = await fetch(path, init);
    const date = Date.parse(response.headers.get("Date") || "");
    // the Date header has whole seconds: trust it over this browser's clock only when they differ by more
    if (!Number.isNaN(date)) state.offset = Math.abs(date - Date.now()) > 2000 ? date - Date.now() : 0;
    if (response.status === 401) {
      window.location.assign("/"); // the session ended (signed out, token revoked): back to the form
      throw new Error("signed out");
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const detail = data && (data.detail || data.error);
      throw new Error(typeof detail === "string" ? detail : "HTTP " + response.status);
    }
    return data;
  }

  function unsafe(path) {
    const headers = { [body.dataset.csrfHeader]: cookie(body.dataset.csrfCookie) };
    return api(path, { method: "POST", headers: headers });
  }

  // ---- the board -------------------------------------------------------------------------------------------------

  function countCell(n, name) {
    return el("td", { class: "count " + name + (n ? "" : " zero") }, String(n));
  }

  async function drawBoard(mine) {
    const workflows = await api("/v1/board");
    if (mine !== state.loop) return; // a newer refresh has started: its answer is the one to show
    const cards = workflows.map((wf) => el("article", { class: "workflow", dataset: { workflow: wf.id } },
      el("h3", null,
        el("button", { type: "button", title: "show its instances", onclick: () => setFilter("workflow", wf.id) }, wf.id),
        " ", el("span", { class: "version" }, "v" + wf.version)),
      el("table", null,
        el("thead", null, el("tr", null, el("th", null, "step"),
          el("th", null, light("green")), el("th", null, light("yellow")), el("th", null, light("red")),
          el("th", null, "breaches 24 h"))),
        el("tbody", null, wf.steps.map((step) => el("tr", { dataset: { step: step.id } },
          el("td", null, step.id), countCell(step.green, "green"), countCell(step.yellow, "yellow"),
          countCell(step.red, "red"), countCell(step.breaches_24h, "red")))))));
    fill(document.getElementById("board"), cards.length ? cards : el("p", null, "No workflow saved yet."));
    const select = document.getElementById("f-workflow");
    const known = new Set(Array.from(select.options).map((o) => o.value));
    for (const wf of workflows) if (!known.has(wf.id)) select.append(el("option", { value: wf.id }, wf.id));
  }

  // ---- the list of instances -------------------------------------------------------------------------------------

  function setFilter(name, value) {
    state.filters[name] = value;
    document.getElementById("f-" + name).value = value;
    state.cursors = [""];
    kick();
  }

  async function drawList(mine) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const [key, value] of Object.entries(state.filters)) if (value) query.set(key, value);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    const data = await api("/v1/instances?" + query.toString());
    if (mine !== state.loop) return;
    state.next = data.next_cursor || null; // the API's page: {instances, next_cursor}
    const rows = data.instances.map((i) => el("tr", { dataset: { instance: i.id } },
      el("td", null, el("a", { href: "#/instances/" + encodeURIComponent(i.id) }, i.id)),
      el("td", null, i.workflow_id), el("td", { class: "status" }, i.status), el("td", null, i.current_step || ""),
      el("td", null, light(i.light)), el("td", null, clock(i.created_at)), el("td", null, clock(i.finished_at))));
    fill(document.querySelector("#instances tbody"),
      rows.length ? rows : el("tr", null, el("td", { colspan: 7 }, "No instance matches.")));
    document.getElementById("page-number").textContent = "page " + state.cursors.length;
    document.getElementById("page-newer").disabled = state.cursors.length === 1;
    document.getElementById("page-older").disabled = !state.next;
  }

  // ---- one instance ----------------------------------------------------------------------------------------------

  function bar(task) {
    const now = Date.now() + state.offset;
    const ready = when(task.ready_at);
    const started = when(task.started_at);
    const finished = when(task.finished_at);
    const sla = when(task.expires_at) - ready;
    const wait = (started || finished || now) - ready;
    const run = started ? (finished || now) - started : 0;
    const scale = Math.max(sla, wait + run, 1) * 1.15;
    const pct = (ms) => Math.max(0, Math.min(100, (100 * ms) / scale)).toFixed(2) + "%";
    const waitBar = el("div", { class: "wait", title: "queue wait" });
    waitBar.style.left = "0";
    waitBar.style.width = pct(wait);
    const runBar = el("div", { class: "run", title: "run time" });
    runBar.style.left = pct(wait);
    runBar.style.width = pct(run);
    const slaLine = el("div", { class: "sla", title: "SLA " + seconds(sla) });
    slaLine.style.left = pct(sla);
    const facts = ["queue " + seconds(wait), "run " + (started ? seconds(run) : "–"), "SLA " + seconds(sla),
      "worker " + (task.worker_id || "–")];
    if (!finished) facts.push("open");
    if (task.error) facts.push("error: " + task.error);
    return [el("div", { class: "bar", role: "img", "aria-label": facts.join(", ") }, waitBar, runBar, slaLine),
      el("div", { class: "facts" }, facts.join(" · "))];
  }

  // As oms.lights reads a row: the worse of the light recorded and the clock's (at its end, or now while open).
  function seenLight(task) {
    const moment = when(task.finished_at) || Date.now() + state.offset;
    const clockLight = moment >= when(task.expires_at) ? "red" : moment >= when(task.warn_at) ? "yellow" : "green";
    const order = ["green", "yellow", "red"];
    return order[Math.max(order.indexOf(task.light), order.indexOf(clockLight))];
  }

  function attempt(task) {
    const item = task.item_index === null || task.item_index === undefined ? "" : " [item " + task.item_index + "]";
    return el("div", { class: "attempt", dataset: { task: task.id } },
      el("div", { class: "attempt-head" }, el("span", null, "attempt " + task.attempt + item),
        el("span", { class: "status" }, task.status), light(seenLight(task))),
      bar(task));
  }

  function steps(instance) {
    const tasks = instance.tasks || [];
    const list = instance.steps && instance.steps.length ? instance.steps
      : Array.from(new Set(tasks.map((t) => t.step_id))).map((id) => ({ id: id }));
    return list.map((step) => el("div", { class: "step", dataset: { step: step.id, light: step.light || "" } },
      el("div", { class: "step-head" }, el("strong", null, step.id),
        step.status ? el("span", { class: "status" }, step.status) : null,
        step.light && step.attempts !== 0 ? light(step.light) : null,
        step.attempts !== undefined ? el("span", null, step.attempts + " attempt(s)") : null),
      tasks.filter((t) => t.step_id === step.id).map(attempt)));
  }

  function actions(instance) {
    if (!isAdmin) return [];
    const act = (verb, label) => el("button", { type: "button", id: verb + "-button", dataset: { action: verb },
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await unsafe("/v1/instances/" + encodeURIComponent(instance.id) + "/" + verb);
          state.message = { instance: instance.id, text: label + ": sent", error: false };
        } catch (error) {
          state.message = { instance: instance.id, text: label + " refused: " + error.message, error: true };
        }
        kick();
      } }, label);
    const buttons = [];
    if (instance.status === "pending" || instance.status === "running") buttons.push(act("cancel", "Cancel"));
    if (instance.status === "failed") buttons.push(act("retry", "Retry"));
    return buttons;
  }

  async function drawInstance(id, mine) {
    const path = "/v1/instances/" + encodeURIComponent(id);
    const [instance, events] = await Promise.all([api(path), api(path + "/history")]);
    if (mine !== state.loop) return;
    const worst = ["red", "yellow", "green"].find((l) => l === instance.light ||
      (instance.steps || []).some((s) => s.light === l)) || "green";
    fill(document.getElementById("instance-head"),
      el("h2", null, instance.id),
      el("p", null, "workflow ", el("strong", null, instance.workflow_id), " v" + instance.version,
        " · status ", el("span", { class: "status", id: "instance-status" }, instance.status),
        " · light ", el("span", { id: "instance-light" }, light(worst)),
        " · at step ", instance.current_step || "–"),
      instance.error ? el("p", { class: "error" }, instance.error) : null,
      el("p", { class: "legend" }, el("span", { class: "swatch wait" }), "queue wait",
        el("span", { class: "swatch run" }), "run time", el("span", { class: "swatch sla" }), "SLA line"));
    fill(document.getElementById("instance-actions"), actions(instance));
    const message = document.getElementById("action-message");
    message.textContent = state.message.instance === id ? state.message.text : "";
    message.className = state.message.error ? "error" : "";
    fill(document.getElementById("timeline"), steps(instance));
    fill(document.querySelector("#events tbody"), events.map((e) => el("tr", { dataset: { kind: e.kind } },
      el("td", null, clock(e.at)), el("td", null, e.kind), el("td", null, e.step_id || ""),
      el("td", null, e.attempt === null || e.attempt === undefined ? "" : String(e.attempt)),
      el("td", { class: "data" }, e.data && Object.keys(e.data).length ? JSON.stringify(e.data) : ""))));
  }

  // ---- routing and the polling loop ------------------------------------------------------------------------------

  function route() {
    const match = /^#\/instances\/(.+)$/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  async function refresh(mine) {
    const id = route();
    document.getElementById("overview").hidden = id !== null;
    document.getElementById("instance").hidden = id === null;
    if (id !== null) await drawInstance(id, mine);
    else await Promise.all([drawBoard(mine), drawList(mine)]);
  }

  async function run(mine) {
    try {
      await refresh(mine);
      setStatus("updated " + new Date().toLocaleTimeString() + " · refreshes every " + POLL_MS / 1000 + " s", false);
    } catch (error) {
      setStatus("could not refresh: " + error.message, true);
    } finally {
      if (mine === state.loop) state.timer = window.setTimeout(() => run(mine), POLL_MS);
    }
  }

  function kick() {
    window.clearTimeout(state.timer);
    state.loop += 1;
    run(state.loop);
  }

  for (const name of Object.keys(state.filters)) {
    document.getElementById("f-" + name).addEventListener("change", (event) => setFilter(name, event.target.value));
  }
  document.getElementById("page-older").addEventListener("click", () => {
    if (state.next) { state.cursors.push(state.next); kick(); }
  });
  document.getElementById("page-newer").addEventListener("click", () => {
    if (state.cursors.length > 1) { state.cursors.pop(); kick(); }
  });
  window.addEventListener("hashchange", kick);
  kick();
})();
