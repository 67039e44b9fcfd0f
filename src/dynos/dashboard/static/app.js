// The app page's live parts: the dynos table, the log tail, config var reveals, and the
// confirmation before a rollback. No inline script anywhere (the CSP forbids it): the page
// hands over its app and CSRF token in data attributes and a meta tag.
"use strict";

const dashboard = (() => {
  const app = document.body.dataset.app;
  const prefix = document.body.dataset.prefix;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const base = `${prefix}/apps/${encodeURIComponent(app)}`;

  // Every script request carries the session's CSRF token; a lost session means sign in.
  async function get(path, init = {}) {
    const response = await fetch(base + path, {
      ...init,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, ...(init.headers || {}) },
    });
    if (response.status === 401) {
      window.location.assign(`${prefix}/sign-in`);
      throw new Error("signed out");
    }
    return response;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function renderDynos(state) {
    const rows = document.getElementById("dyno-rows");
    const fresh = state.dynos.map((dyno) => {
      const tr = document.createElement("tr");
      tr.dataset.dyno = dyno.name;
      const badge = document.createElement("span");
      badge.className = `state state-${dyno.state}`;
      badge.textContent = dyno.state;
      const stateCell = cell("");
      stateCell.append(badge);
      const node = cell(dyno.node || "", "node");
      node.hidden = !state.has_nodes;
      tr.append(cell(dyno.name), stateCell, cell(dyno.size), cell(`v${dyno.release}`), node,
        cell(dyno.updated_at));
      return tr;
    });
    rows.replaceChildren(...fresh);
    document.querySelectorAll("th.node").forEach((th) => { th.hidden = !state.has_nodes; });
    document.getElementById("no-dynos").hidden = state.dynos.length > 0;
  }

  async function refreshDynos() {
    try {
      const response = await get("/processes.json");
      if (response.ok) renderDynos(await response.json());
    } catch (error) {
      // The server may be restarting: the next tick tries again.
    }
  }

  // The log: the stream of an API log session (Server-Sent Events framing), read with fetch
  // so that it can send the CSRF header; it reconnects when the stream ends.
  const MAX_LOG_LINES = 500;
  function appendLog(line) {
    const pre = document.getElementById("log-lines");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(document.createTextNode(line + "\n"));
    while (pre.childNodes.length > MAX_LOG_LINES) pre.firstChild.remove();
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  async function tailLog() {
    const status = document.getElementById("log-status");
    for (;;) {
      try {
        document.getElementById("log-lines").replaceChildren();
        const response = await get("/log-stream", { headers: { Accept: "text/event-stream" } });
        if (!response.ok) throw new Error(`log stream: ${response.status}`);
        status.textContent = "live";
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = event.split("\n").filter((l) => l.startsWith("data: "))
              .map((l) => l.slice(6));
            if (data.length) appendLog(data.join("\n"));
          }
        }
      } catch (error) {
        if (error.message === "signed out") return;
      }
      status.textContent = "reconnecting…";
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }

  function setUpReveals() {
    document.querySelectorAll("button.reveal").forEach((button) => {
      button.addEventListener("click", async () => {
        const name = button.dataset.name;
        const target = [...document.querySelectorAll("code.secret")]
          .find((el) => el.dataset.name === name);
        if (button.dataset.shown) {
          target.textContent = "••••••••";
          button.textContent = "Reveal";
          delete button.dataset.shown;
          return;
        }
        const response = await get(`/config-var.json?name=${encodeURIComponent(name)}`);
        const body = await response.json();
        target.textContent = response.ok ? body.value : body.message;
        button.textContent = "Hide";
        button.dataset.shown = "1";
      });
    });
  }

  function setUpConfirmations() {
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  if (app) {
    setUpReveals();
    setUpConfirmations();
    setInterval(refreshDynos, 2000);
    tailLog();
  }
  return { get, app };
})();
