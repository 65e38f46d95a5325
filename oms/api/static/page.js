// HMS-OMS operator board. Reads the JSON API every two seconds and redraws; no framework, no build step.
// Everything from the server is put in the page as text (textContent / text nodes), never as markup.
"use strict";

(function () {
  const { el, fill, redraw, light, when, clock, seconds, api, post } = window.OMS;
  const PAGE_SIZE = 20;
  const body = document.body;
  const isAdmin = body.dataset.role === "admin";
  const readsNotices = isAdmin || body.dataset.role === "reader"; // GET /v1/notices: admin and reader
  const NOTICES_SHOWN = 20;
  const state = {
    filters: { workflow: "", status: "", light: "", business_key: "", escalations: "false" },
    cursors: [""], // cursors[n] opens page n; "" is the newest page
    next: null,
    message: { instance: null, text: "", error: false },
    noticesFailed: false,
  };

  // ---- the board -------------------------------------------------------------------------------------------------

  function countCell(n, name) {
    return el("td", { class: "count " + name + (n ? "" : " zero") }, String(n));
  }

  async function drawBoard(mine) {
    const workflows = await api("/v1/board");
    if (!current(mine)) return; // a newer refresh has started: its answer is the one to show
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
    redraw(document.getElementById("board"), cards.length ? cards : [el("p", null, "No workflow saved yet.")]);
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
    if (!current(mine)) return;
    state.next = data.next_cursor || null; // the API's page: {instances, next_cursor}
    const rows = data.instances.map((i) => el("tr", { dataset: { instance: i.id } },
      el("td", null, el("a", { href: "#/instances/" + encodeURIComponent(i.id) }, i.id)),
      el("td", null, i.workflow_id), el("td", { class: "key" }, i.business_key || ""),
      el("td", { class: "status" }, i.status), el("td", null, i.current_step || ""),
      el("td", null, light(i.light)), el("td", null, clock(i.created_at)), el("td", null, clock(i.finished_at))));
    redraw(document.querySelector("#instances tbody"),
      rows.length ? rows : [el("tr", null, el("td", { colspan: 8 }, "No instance matches."))]);
    document.getElementById("page-number").textContent = "page " + state.cursors.length;
    document.getElementById("page-newer").disabled = state.cursors.length === 1;
    document.getElementById("page-older").disabled = !state.next;
  }

  // ---- the notices escalations sent ------------------------------------------------------------------------------

  async function drawNotices(mine) {
    if (!readsNotices) return;
    const query = new URLSearchParams({ limit: String(NOTICES_SHOWN) });
    if (state.noticesFailed) query.set("status", "failed");
    const notices = await api("/v1/notices?" + query.toString());
    if (!current(mine)) return;
    const rows = notices.map((n) => el("tr", { dataset: { notice: n.id, status: n.status } },
      el("td", null, clock(n.created_at)), el("td", null, n.target),
      el("td", null, n.instance_id ? el("a", { href: "#/instances/" + encodeURIComponent(n.instance_id) },
        n.instance_id) : ""),
      el("td", null, n.step_id || ""), el("td", null, n.light ? light(n.light) : ""),
      el("td", { class: "status notice-" + n.status }, n.status), el("td", { class: "count" }, String(n.attempts)),
      el("td", null, clock(n.status === "sent" ? n.sent_at : n.next_attempt_at)),
      el("td", { class: "notice-error" }, n.last_error || "")));
    redraw(document.querySelector("#notices-table tbody"), rows.length ? rows
      : [el("tr", null, el("td", { colspan: 9 }, state.noticesFailed ? "No notice failed." : "No notice yet."))]);
  }

  // ---- one instance ----------------------------------------------------------------------------------------------

  function bar(task) {
    const now = window.OMS.now();
    const ready = when(task.ready_at);
    const started = when(task.started_at);
    const finished = when(task.finished_at);
    const sla = task.expires_at ? when(task.expires_at) - ready : null;  // none: a step with no SLA of its own
    const wait = (started || finished || now) - ready;
    const run = started ? (finished || now) - started : 0;
    const scale = Math.max(sla || 0, wait + run, 1) * 1.15;
    const pct = (ms) => Math.max(0, Math.min(100, (100 * ms) / scale)).toFixed(2) + "%";
    const waitBar = el("div", { class: "wait", title: "queue wait" });
    waitBar.style.left = "0";
    waitBar.style.width = pct(wait);
    const runBar = el("div", { class: "run", title: "run time" });
    runBar.style.left = pct(wait);
    runBar.style.width = pct(run);
    const slaText = sla === null ? "no SLA of its own" : "SLA " + seconds(sla);
    const slaLine = el("div", { class: "sla", title: slaText });
    slaLine.style.left = pct(sla || 0);
    if (sla === null) slaLine.hidden = true;
    const facts = ["queue " + seconds(wait), "run " + (started ? seconds(run) : "–"), slaText,
      "worker " + (task.worker_id || "–")];
    if (!finished) facts.push("open");
    if (task.error) facts.push("error: " + task.error);
    return [el("div", { class: "bar", role: "img", "aria-label": facts.join(", ") }, waitBar, runBar, slaLine),
      el("div", { class: "facts" }, facts.join(" · "))];
  }

  // As oms.lights reads a row: the worse of the light recorded and the clock's (at its end, or now while open).
  function seenLight(task) {
    return window.OMS.liveLight(task.light, task.warn_at, task.expires_at, when(task.finished_at) || window.OMS.now());
  }

  function attempt(task) {
    const item = task.item_index === null || task.item_index === undefined ? "" : " [item " + task.item_index + "]";
    return el("div", { class: "attempt", dataset: { task: task.id } },
      el("div", { class: "attempt-head" }, el("span", null, "attempt " + task.attempt + item),
        el("span", { class: "status" }, task.status), light(seenLight(task))),
      bar(task));
  }

  // What a step's kind shows: who may claim a human step and who holds it, the signal a step waits for, when a
  // timer ends.
  function kindFacts(step) {
    const facts = [];
    if (step.kind === "human") {
      const assign = step.assign || {};
      const who = [...(assign.users || []), ...(assign.groups || []).map((g) => "group " + g)];
      facts.push("human" + (who.length ? ": " + who.join(", ") : ""));
      facts.push(step.held_by ? "held by " + step.held_by : "not claimed");
    } else if (step.kind === "wait") {
      facts.push("waits for signal " + step.wait_for + (step.signal_kept ? " (received, kept)" : ""));
    } else if (step.kind === "timer") {
      facts.push("sleep " + step.sleep);
      facts.push(step.wake_at ? "ends " + clock(step.wake_at) + " UTC" : "not started");
    }
    return facts.length ? el("span", { class: "kind", dataset: { kind: step.kind } }, facts.join(" · ")) : null;
  }

  function steps(instance) {
    const tasks = instance.tasks || [];
    const list = instance.steps && instance.steps.length ? instance.steps
      : Array.from(new Set(tasks.map((t) => t.step_id))).map((id) => ({ id: id }));
    return list.map((step) => el("div", { class: "step", dataset: { step: step.id, light: step.light || "" } },
      el("div", { class: "step-head" }, el("strong", null, step.id),
        step.status ? el("span", { class: "status" }, step.status) : null,
        step.light && step.attempts !== 0 ? light(step.light) : null,
        step.attempts !== undefined ? el("span", null, step.attempts + " attempt(s)") : null,
        kindFacts(step)),
      tasks.filter((t) => t.step_id === step.id).map(attempt)));
  }

  function actions(instance) {
    if (!isAdmin) return [];
    const act = (verb, label) => el("button", { type: "button", id: verb + "-button",
      dataset: { action: verb, instance: instance.id },
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await post("/v1/instances/" + encodeURIComponent(instance.id) + "/" + verb);
          state.message = { instance: instance.id, text: label + ": sent", error: false };
        } catch (error) {
          state.message = { instance: instance.id, text: label + " refused: " + error.message, error: true };
          event.target.disabled = false; // drawn again unchanged, so the same button
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
    if (!current(mine)) return;
    const worst = ["red", "yellow", "green"].find((l) => l === instance.light ||
      (instance.steps || []).some((s) => s.light === l)) || "green";
    fill(document.getElementById("instance-head"),
      el("h2", null, instance.id),
      el("p", null, "workflow ", el("strong", null, instance.workflow_id), " v" + instance.version,
        " · status ", el("span", { class: "status", id: "instance-status" }, instance.status),
        " · light ", el("span", { id: "instance-light" }, light(worst)),
        " · at step ", instance.current_step || "–",
        instance.business_key ? [" · business key ", el("strong", { id: "instance-key" }, instance.business_key)]
          : null),
      instance.error ? el("p", { class: "error" }, instance.error) : null,
      el("p", { class: "legend" }, el("span", { class: "swatch wait" }), "queue wait",
        el("span", { class: "swatch run" }), "run time", el("span", { class: "swatch sla" }), "SLA line"));
    redraw(document.getElementById("instance-actions"), actions(instance));
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
    const report = window.location.hash.startsWith("#/report");
    document.getElementById("overview").hidden = id !== null || report;
    document.getElementById("instance").hidden = id === null;
    document.getElementById("report").hidden = !report;
    if (report) await window.OMS.report.draw(window.location.hash, () => current(mine), false);
    else if (id !== null) await drawInstance(id, mine);
    else await Promise.all([drawBoard(mine), drawList(mine), drawNotices(mine)]);
  }

  const loop = window.OMS.poller(refresh);
  const kick = loop.kick;
  const current = (mine) => mine === loop.current;

  for (const name of Object.keys(state.filters)) {
    document.getElementById("f-" + name).addEventListener("change",
      (event) => setFilter(name, event.target.value.trim()));
  }
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault(); // Enter in the business key: search it
    setFilter("business_key", document.getElementById("f-business_key").value.trim());
  });
  document.getElementById("page-older").addEventListener("click", () => {
    if (state.next) { state.cursors.push(state.next); kick(); }
  });
  document.getElementById("page-newer").addEventListener("click", () => {
    if (state.cursors.length > 1) { state.cursors.pop(); kick(); }
  });
  document.getElementById("notices").hidden = !readsNotices;
  document.getElementById("f-notices-failed").addEventListener("change", (event) => {
    state.noticesFailed = event.target.checked;
    kick();
  });
  window.addEventListener("hashchange", kick);
  kick();
})();
