// The sessions list: `GET /api/sessions` a page at a time (by cursor, as the API pages),
// filtered by status and user, searched by id or cwd; each listed session followed on the
// WebSocket (its row changes as its events arrive), and the page read again every 15 s for
// sessions that began meanwhile.

import { api, seg, withQuery } from "./api.js";
import { ago, badge, fill, h } from "./dom.js";

const PAGE = 25;
const STATUSES = ["", "pending", "in_progress", "completed", "failed", "skipped"];

export function sessionsView(ctx, params) {
  const state = {
    status: params.get("status") || "",
    user: params.get("user") || "",
    q: params.get("q") || "",
    cursors: [null],
    page: 0,
    sessions: [],
    next: null,
  };
  const rows = h("tbody");
  const info = h("p", { class: "muted", role: "status" });
  const prev = h("button", { type: "button", onclick: () => go(state.page - 1) }, "← Newer");
  const next = h("button", { type: "button", onclick: () => go(state.page + 1) }, "Older →");
  const users = h("select", { id: "f-user", onchange: (e) => set("user", e.target.value) }, h("option", { value: "" }, "Any user"));
  const status = h(
    "select",
    { id: "f-status", onchange: (e) => set("status", e.target.value) },
    STATUSES.map((s) => h("option", { value: s, selected: s === state.status }, s ? s.replace("_", " ") : "Any status")),
  );
  const search = h("input", {
    id: "f-q",
    type: "search",
    placeholder: "Session id or cwd",
    value: state.q,
    oninput: (e) => {
      state.q = e.target.value.trim();
      render();
    },
  });

  function set(k, v) {
    state[k] = v;
    state.cursors = [null];
    go(0);
  }

  async function go(page) {
    if (page < 0 || page >= state.cursors.length) return;
    state.page = page;
    await load();
  }

  async function load() {
    try {
      const path = withQuery("/api/sessions", {
        limit: PAGE,
        status: state.status,
        user: state.user,
        cursor: state.cursors[state.page],
      });
      const body = await api(path);
      state.sessions = body.sessions || [];
      state.next = body.nextCursor || null;
      if (state.next) state.cursors[state.page + 1] = state.next;
      else state.cursors.length = state.page + 1;
      follow();
      render();
    } catch (e) {
      ctx.error(e);
    }
  }

  // Follows the listed sessions: subscribes to the new ones and drops the ones that left
  // the page, so a refresh sends nothing for sessions still listed (afw bounds the
  // messages a client sends per second).
  function follow() {
    const listed = new Set(state.sessions.map((s) => s.id));
    for (const id of [...ctx.live.subs.keys()]) if (!listed.has(id)) ctx.live.unsubscribe(id);
    for (const s of state.sessions) if (!ctx.live.subs.has(s.id)) ctx.live.subscribe(s.id, handlers(s.id));
  }

  function handlers(id) {
    const row = () => state.sessions.find((x) => x.id === id);
    return {
      onEvent: (ev) => {
        const s = row();
        if (!s) return;
        s.eventCount = (s.eventCount || 0) + 1;
        s.lastActivityAt = ev.timestamp || s.lastActivityAt;
        if (ev.data) Object.assign(s, ev.data);
        if (ev.type === "chain:compiled" || ev.type === "chain:started") s.currentChain = ev.chainId || s.currentChain;
        render();
      },
      onNotice: (n) => {
        const s = row();
        if (s && n.data) Object.assign(s, n.data);
        if (n.type === "session:deleted") state.sessions = state.sessions.filter((x) => x.id !== id);
        render();
      },
    };
  }

  function matches(s) {
    if (!state.q) return true;
    const q = state.q.toLowerCase();
    return s.id.toLowerCase().includes(q) || (s.cwd || "").toLowerCase().includes(q);
  }

  function render() {
    const shown = state.sessions.filter(matches);
    fill(
      rows,
      shown.map((s) =>
        h(
          "tr",
          { "data-session": s.id },
          h("td", {}, h("a", { href: `#/session/${seg(s.id)}` }, s.id)),
          h("td", {}, badge(s.status)),
          h("td", {}, s.user || "—"),
          h("td", { class: "path" }, s.cwd || "—"),
          h("td", { title: s.startedAt || "" }, ago(s.startedAt)),
          h("td", { title: s.lastActivityAt || "" }, ago(s.lastActivityAt)),
          h("td", { class: "num", "data-count": "" }, String(s.eventCount ?? 0)),
          h("td", {}, s.currentChain || "—"),
        ),
      ),
    );
    const open =
      state.q && !shown.length
        ? h("a", { href: `#/session/${seg(state.q)}` }, ` Open session “${state.q}”`)
        : null;
    fill(info, `${shown.length} of ${state.sessions.length} on this page (page ${state.page + 1})`, open);
    prev.disabled = state.page === 0;
    next.disabled = !state.next;
  }

  const view = h(
    "section",
    { "aria-labelledby": "sessions-title" },
    h("div", { class: "row spread" }, h("h1", { id: "sessions-title" }, "Sessions"), h("button", { type: "button", onclick: load }, "Refresh")),
    h(
      "div",
      { class: "filters" },
      h("label", { for: "f-status" }, "Status"),
      status,
      h("label", { for: "f-user" }, "User"),
      users,
      h("label", { for: "f-q" }, "Search"),
      search,
    ),
    h(
      "table",
      { class: "list" },
      h(
        "thead",
        {},
        h("tr", {}, ["Session", "Status", "User", "Cwd", "Started", "Last activity", "Events", "Current chain"].map((t) => h("th", { scope: "col" }, t))),
      ),
      rows,
    ),
    h("div", { class: "row spread" }, info, h("div", { class: "row" }, prev, next)),
  );

  api("/api/users")
    .then((body) => {
      for (const u of body.users || []) {
        const name = u.user || u.id;
        users.append(h("option", { value: name, selected: name === state.user }, `${name} (${u.sessionCount})`));
      }
    })
    .catch((e) => ctx.error(e));
  load();
  const timer = setInterval(() => {
    if (state.page === 0) load();
  }, 15_000);
  return { el: view, leave: () => clearInterval(timer) };
}
