// HMS-OMS My work: a person's inbox (read every two seconds, countdowns ticking every second), claim and release,
// the step she opened with its form (form.js), and for a supervisor, reassigning it. No framework, no build step. Everything from the server is put
// in the page as text (textContent / text nodes), never as markup.
"use strict";

(function () {
  const { el, fill, redraw, light, when, clock, now, liveLight, countdown, api, post } = window.OMS;
  const TICK_MS = 1000;
  const supervisor = document.body.dataset.role === "supervisor";
  const state = {
    user: document.body.dataset.name,
    items: [],
    message: { text: "", error: false }, // My work's message (a claim refused, a step completed)
    open: null, // the step shown: {id, task, form, busy}
  };

  const path = (id, verb) => "/v1/tasks/" + encodeURIComponent(id) + (verb ? "/" + verb : "");

  function route() {
    const match = /^#\/tasks\/(.+)$/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  function say(node, text, error) {
    node.textContent = text;
    node.className = error ? "error" : "ok";
  }

  // ---- lights and countdowns, live ---------------------------------------------------------------------------------

  // A step's light and time left, redrawn every second by tick() from its clock (frozen while paused).
  function clockNodes(item) {
    // time left is read only while paused: a running clock's changes every read and would redraw its row each time
    const data = { light: item.light, warn: item.warn_at, expires: item.expires_at, paused: item.paused ? "true" : "" };
    if (item.paused) data.left = String(item.time_left_s);
    return [el("span", { class: "live-light", dataset: data }), " ", el("span", { class: "countdown", dataset: data })];
  }

  function tick() {
    const moment = now();
    for (const node of document.querySelectorAll(".live-light, .countdown")) {
      const data = node.dataset;
      const paused = data.paused === "true";
      if (node.classList.contains("countdown")) {
        const left = paused ? Number(data.left) * 1000 : when(data.expires) - moment;
        node.textContent = countdown(left) + (paused ? " (clock paused)" : "");
        node.classList.toggle("late", left < 0);
      } else {
        const shown = paused ? data.light : liveLight(data.light, data.warn, data.expires, moment);
        if (node.dataset.shown !== shown) {
          node.dataset.shown = shown;
          fill(node, light(shown));
        }
      }
    }
  }

  function holder(item) {
    if (!item.claimed_by) return el("span", { class: "holder queued" }, "queued");
    if (item.claimed_by === state.user) return el("span", { class: "holder mine" }, "yours");
    return el("span", { class: "holder taken" }, "taken by " + item.claimed_by);
  }

  // ---- claim and release ----------------------------------------------------------------------------------------

  async function claim(id, button) {
    if (button) button.disabled = true;
    try {
      await post(path(id, "claim"));
      state.message = { text: "", error: false };
      if (route() === id) state.open = null; // shown again, now hers
      window.location.hash = "#/tasks/" + encodeURIComponent(id);
    } catch (error) {
      state.message = { text: "Could not claim it: " + error.message, error: true };
      if (button) button.disabled = false; // drawn again unchanged, so the same button
      if (route() === id) say(document.getElementById("task-message"), state.message.text, true);
    }
    loop.kick();
  }

  async function release(id, button) {
    if (button) button.disabled = true;
    try {
      await post(path(id, "release"), {});
      state.message = { text: "Released: back in its queue.", error: false };
      state.open = null;
      window.location.hash = "#/";
    } catch (error) {
      state.message = { text: "Could not release it: " + error.message, error: true };
      if (button) button.disabled = false; // drawn again unchanged, so the same button
      if (route() === id) say(document.getElementById("task-message"), state.message.text, true);
    }
    loop.kick();
  }

  // ---- the inbox ------------------------------------------------------------------------------------------------

  function title(item) {
    return [item.business_key ? el("strong", { class: "key" }, item.business_key) : el("em", null, "no form number"),
      " · " + item.workflow_id + " · step ", el("strong", null, item.step_id)];
  }

  function row(item) {
    const mine = item.claimed_by === state.user;
    const buttons = [];
    if (!item.claimed_by) {
      buttons.push(el("button", { type: "button", class: "claim", onclick: (e) => claim(item.task_id, e.target) },
        "Claim"));
    }
    const href = "#/tasks/" + encodeURIComponent(item.task_id);
    if (!mine) { // its form and case, read only before a claim; a supervisor reassigns it there
      buttons.push(el("a", { class: "view", href: href }, supervisor ? "View · Reassign" : "View"));
    }
    if (mine) {
      buttons.push(el("a", { class: "open", href: href }, "Open"));
      buttons.push(el("button", { type: "button", class: "release", onclick: (e) => release(item.task_id, e.target) },
        "Release"));
    }
    return el("li", { class: "item" + (item.actionable ? "" : " not-mine"),
      dataset: { task: item.task_id, holder: item.claimed_by || "", step: item.step_id } },
    el("div", { class: "item-clock" }, clockNodes(item)),
    el("div", { class: "item-what" }, el("div", null, title(item)),
      el("div", { class: "hint" }, "instance " + item.instance_id + " · ready " + clock(item.ready_at) + " UTC")),
    el("div", { class: "item-who" }, holder(item)),
    el("div", { class: "item-actions" }, buttons));
  }

  function drawInbox() {
    redraw(document.getElementById("inbox"),
      state.items.length ? state.items.map(row) : [el("li", { class: "empty" }, "Nothing queued for you.")]);
    say(document.getElementById("work-message"), state.message.text, state.message.error);
  }

  // ---- one step and its form --------------------------------------------------------------------------------------

  function drawHead(item) {
    const task = state.open.task;
    fill(document.getElementById("task-head"),
      el("h2", null, title(task)),
      el("p", null, "workflow " + task.workflow_id + " · instance " + task.instance_id + " · attempt " + task.attempt),
      el("p", { class: "task-clock" }, item ? clockNodes(item) : "–", " · ",
        el("span", { id: "task-holder" }, item ? holder(item) : "no longer in your inbox")));
    const actions = [];
    if (item && !item.claimed_by) {
      actions.push(el("button", { type: "button", id: "claim-button", onclick: (e) => claim(task.task_id, e.target) },
        "Claim"));
    }
    if (item && item.claimed_by === state.user) {
      actions.push(el("button", { type: "button", id: "release-button",
        onclick: (e) => release(task.task_id, e.target) }, "Release"));
    }
    fill(document.getElementById("task-actions"), actions);
  }

  function drawTask(task) {
    const mine = task.claimed_by === state.user;
    const form = document.getElementById("task-form");
    const built = window.OMS.form.build(form, task.form, !mine);
    if (mine) form.append(el("button", { type: "submit", id: "complete-button" }, "Complete"));
    else form.append(el("p", { class: "hint" }, task.claimed_by ? "Taken by " + task.claimed_by + ": read only."
      : "Claim it to fill in its form."));
    drawReassign(task);
    fill(document.getElementById("task-payload"), window.OMS.form.show(task.payload));
    fill(document.getElementById("task-results"), window.OMS.form.show(task.results));
    say(document.getElementById("task-message"), "", false);
    state.open = { id: task.task_id, task: task, form: built, holder: task.claimed_by, busy: false };
  }

  // ---- a supervisor reassigns ------------------------------------------------------------------------------------

  // Her form under the step's head: a person (who holds it at once) and/or groups (whose queue it joins).
  function drawReassign(task) {
    const form = document.getElementById("task-reassign");
    form.hidden = !supervisor;
    if (!supervisor) return;
    fill(form, el("fieldset", null, el("legend", null, "Reassign"),
      el("label", null, "to person ", el("input", { type: "text", name: "user", id: "reassign-user",
        autocomplete: "off" })),
      el("label", null, " or to groups ", el("input", { type: "text", name: "groups", id: "reassign-groups",
        placeholder: "inspectors, supervisors", autocomplete: "off" })),
      el("button", { type: "submit", id: "reassign-button" }, "Reassign"),
      el("span", { class: "hint" }, task.claimed_by ? " " + task.claimed_by + "'s claim goes back." : "")));
  }

  async function reassign(event) {
    event.preventDefault();
    const open = state.open;
    if (!open) return;
    const user = document.getElementById("reassign-user").value.trim();
    const groups = document.getElementById("reassign-groups").value.split(",").map((g) => g.trim()).filter(Boolean);
    const message = document.getElementById("task-message");
    if (!user && !groups.length) {
      say(message, "Not reassigned: name a person or a group.", true);
      return;
    }
    const body = {};
    if (user) body.user = user;
    if (groups.length) body.groups = groups;
    document.getElementById("reassign-button").disabled = true;
    try {
      const done = await post(path(open.id, "reassign"), body);
      state.message = { text: "Reassigned: " + (open.task.business_key || open.task.instance_id) + " · step " +
        open.task.step_id + (done.claimed_by ? ", held by " + done.claimed_by : ", queued for " +
        (done.assign.groups || []).join(", ")) + ".", error: false };
      state.open = null;
      window.location.hash = "#/";
    } catch (error) {
      say(message, "Not reassigned: " + error.message, true);
      const button = document.getElementById("reassign-button");
      if (button) button.disabled = false;
    }
    loop.kick();
  }

  async function complete(event) {
    event.preventDefault();
    const open = state.open;
    if (!open || open.busy || !document.getElementById("complete-button")) return;
    const message = document.getElementById("task-message");
    const read = open.form.read();
    if (read.problems) {
      open.form.showErrors(read.problems);
      say(message, "Not sent: correct the fields marked.", true);
      return;
    }
    open.busy = true;
    document.getElementById("complete-button").disabled = true;
    try {
      await post(path(open.id, "complete"), { result: read.result });
      open.form.showErrors({});
      state.message = { text: "Completed: " + (open.task.business_key || open.task.instance_id) + " · step " +
        open.task.step_id + ".", error: false };
      state.open = null;
      window.location.hash = "#/";
    } catch (error) {
      // the form's refusals next to their fields; the API's detail always said (none is lost)
      const fields = error.data && error.data.fields ? error.data.fields : {};
      open.form.showErrors(fields);
      say(message, "Not completed: " + error.message, true);
      open.busy = false;
      const button = document.getElementById("complete-button");
      if (button) button.disabled = false;
    }
  }

  async function showTask(id, mine) {
    const item = state.items.find((i) => i.task_id === id);
    if (!state.open || state.open.id !== id || (item && item.claimed_by !== state.open.holder)) {
      // a new step, or its holder changed (claimed, released, taken over): read it again and redraw its form
      let task;
      try {
        task = await api(path(id));
      } catch (error) {
        if (mine !== loop.current) return;
        state.open = null;
        fill(document.getElementById("task-head"), el("h2", null, "Step " + id));
        fill(document.getElementById("task-actions"));
        document.getElementById("task-reassign").hidden = true;
        fill(document.getElementById("task-form"));
        fill(document.getElementById("task-payload"));
        fill(document.getElementById("task-results"));
        say(document.getElementById("task-message"), "Cannot show it: " + error.message, true);
        return;
      }
      if (mine !== loop.current) return;
      drawTask(task);
    }
    drawHead(item);
    if (!item) {
      say(document.getElementById("task-message"), "This step is no longer in your inbox: completed, or given to " +
        "someone else.", true);
      const button = document.getElementById("complete-button");
      if (button) button.disabled = true;
    }
  }

  // ---- the loop -------------------------------------------------------------------------------------------------

  async function refresh(mine) {
    const inbox = await api("/v1/inbox");
    if (mine !== loop.current) return;
    state.user = inbox.user;
    state.items = inbox.items;
    const id = route();
    document.getElementById("work").hidden = id !== null;
    document.getElementById("task").hidden = id === null;
    if (id === null) {
      state.open = null;
      drawInbox();
    } else {
      await showTask(id, mine);
    }
    tick();
  }

  const loop = window.OMS.poller(refresh);
  document.getElementById("task-form").addEventListener("submit", complete);
  document.getElementById("task-reassign").addEventListener("submit", reassign);
  window.addEventListener("hashchange", loop.kick);
  window.setInterval(tick, TICK_MS);
  loop.kick();
})();
