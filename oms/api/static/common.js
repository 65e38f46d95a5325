// HMS-OMS page: what the operators' board (page.js) and a person's My work (work.js, form.js) share.
// Everything from the server is put in the page as text (textContent / text nodes), never as markup.
"use strict";

window.OMS = (function () {
  const POLL_MS = 2000;
  const LIGHT_MARK = { green: "●", yellow: "▲", red: "■" };
  const LIGHTS = ["green", "yellow", "red"];
  const body = document.body;
  let offset = 0; // the server's clock minus this browser's

  // ---- building the page -----------------------------------------------------------------------------------------

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

  // Puts `nodes` in `node`, keeping each child drawn before that is the same as its new version where it is.
  // Drawing everything again on every read would swap a button from under the pointer (a click whose press and
  // release land on different nodes is lost) and drop its focus. A child is compared as drawn (a copy kept then,
  // before tick() wrote into it), so a node must name in its attributes everything its handlers act on.
  const drawn = new WeakMap(); // a child in the page -> a copy of it as drawn
  function redraw(node, nodes) {
    const old = Array.from(node.children).filter((child) => drawn.has(child));
    nodes.forEach((fresh, i) => {
      const same = (child) => drawn.get(child).isEqualNode(fresh);
      const at = old[i] && same(old[i]) ? i : old.findIndex((child) => child && same(child));
      let kept = fresh;
      if (at >= 0) {
        kept = old[at];
        old[at] = null; // kept once
      } else {
        drawn.set(fresh, fresh.cloneNode(true));
      }
      if (node.childNodes[i] !== kept) node.insertBefore(kept, node.childNodes[i] || null);
    });
    while (node.childNodes.length > nodes.length) node.lastChild.remove();
  }

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  function setStatus(text, error) {
    const line = document.getElementById("status-line");
    line.textContent = text;
    line.classList.toggle("error", Boolean(error));
  }

  // ---- lights and times ------------------------------------------------------------------------------------------

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

  // The server's "now", as this browser's clock corrected by the Date header of the API's last answer.
  function now() {
    return Date.now() + offset;
  }

  // As oms.lights reads a row: the worse of the light recorded and the clock's at ``moment`` (ms).
  function liveLight(recorded, warnAt, expiresAt, moment) {
    const reached = (iso) => iso !== null && iso !== undefined && moment >= when(iso);  // none: never reached
    const clockLight = reached(expiresAt) ? "red" : reached(warnAt) ? "yellow" : "green";
    return LIGHTS[Math.max(LIGHTS.indexOf(recorded), LIGHTS.indexOf(clockLight))];
  }

  // Time left until a deadline, to the second: "4 min 05 s left", "late by 12 s".
  function countdown(ms) {
    if (ms === null || Number.isNaN(ms)) return "–";
    const late = ms < 0;
    let s = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const two = (n) => String(n).padStart(2, "0");
    const text = d ? d + " d " + two(h) + " h" : h ? h + " h " + two(m) + " min" : m ? m + " min " + two(s) + " s"
      : s + " s";
    return late ? "late by " + text : text + " left";
  }

  // ---- the API ---------------------------------------------------------------------------------------------------

  // An answer the API refused: ``status``, and its JSON body in ``data`` (``error``, ``detail``, a form's ``fields``).
  class ApiError extends Error {
    constructor(message, status, data) {
      super(message);
      this.status = status;
      this.data = data;
    }
  }

  async function api(path, options) {
    const init = Object.assign({ credentials: "same-origin" }, options || {});
    init.headers = Object.assign({ Accept: "application/json" }, init.headers || {});
    const response = await fetch(path, init);
    const date = Date.parse(response.headers.get("Date") || "");
    // the Date header has whole seconds: trust it over this browser's clock only when they differ by more
    if (!Number.isNaN(date)) offset = Math.abs(date - Date.now()) > 2000 ? date - Date.now() : 0;
    if (response.status === 401) {
      window.location.assign("/"); // the session ended (signed out, token revoked): back to the form
      throw new ApiError("signed out", 401, null);
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const detail = data && (data.detail || data.error);
      throw new ApiError(typeof detail === "string" ? detail : "HTTP " + response.status, response.status, data);
    }
    return data;
  }

  // An unsafe request: the CSRF cookie's value copied into the header the API checks (double submit).
  function post(path, json) {
    const headers = { [body.dataset.csrfHeader]: cookie(body.dataset.csrfCookie) };
    const init = { method: "POST", headers: headers };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    return api(path, init);
  }

  // ---- the polling loop ------------------------------------------------------------------------------------------

  // Calls ``refresh(mine)`` now and every POLL_MS after the last one ended; ``kick()`` starts over at once (a
  // refresh whose ``mine`` is no longer ``loop.current`` must not draw: a newer one has started).
  function poller(refresh) {
    const loop = { current: 0, timer: null };
    async function run(mine) {
      try {
        await refresh(mine);
        setStatus("updated " + new Date().toLocaleTimeString() + " · refreshes every " + POLL_MS / 1000 + " s", false);
      } catch (error) {
        setStatus("could not refresh: " + error.message, true);
      } finally {
        if (mine === loop.current) loop.timer = window.setTimeout(() => run(mine), POLL_MS);
      }
    }
    loop.kick = function () {
      window.clearTimeout(loop.timer);
      loop.current += 1;
      run(loop.current);
    };
    return loop;
  }

  return { POLL_MS, el, fill, redraw, cookie, setStatus, light, when, clock, seconds, now, liveLight, countdown, ApiError,
    api, post, poller };
})();
