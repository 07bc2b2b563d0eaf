// One session: its chains and steps as a timeline, its prompt with quick responses, the
// actions a person can take (input, commands, delete), its terminal output and its event
// stream, live from the WebSocket with resume. An archived session (from the history, or
// one that has left live storage) is the same view, read-only.

import { api, seg, withQuery } from "./api.js";
import { badge, duration, fill, h, when } from "./dom.js";

const SHOWN_EVENTS = 500;
const SHOWN_LINES = 2000;

export function sessionView(ctx, id, { date = null, archived = false } = {}) {
  const head = h("div", { class: "head" });
  const prompt = h("section", { class: "card", "aria-label": "Prompt and input" });
  const actions = h("section", { class: "card", "aria-label": "Commands" });
  const chains = h("section", { class: "card", "aria-label": "Chains" });
  const terminal = h("pre", { class: "terminal", tabindex: "0", "aria-label": "Terminal output" });
  const stream = h("ol", { class: "stream", "aria-label": "Events" });
  const streamInfo = h("p", { class: "muted", role: "status" });
  const state = { session: null, events: [], readOnly: archived, lastSeq: 0, epoch: null };
  let reloadTimer = null;

  const view = h(
    "section",
    { class: "session" },
    head,
    h("div", { class: "grid" }, h("div", {}, prompt, actions, chains), h("div", {}, h("section", { class: "card" }, h("h2", {}, "Terminal"), terminal))),
    h("section", { class: "card" }, h("h2", {}, "Events"), streamInfo, stream),
  );

  async function loadLive() {
    const session = await api(`/api/sessions/${seg(id)}`);
    if (session.archived) {
      state.readOnly = true;
      return loadArchived();
    }
    state.session = session;
    const page = await api(withQuery(`/api/events/${seg(id)}`, { limit: 1000 }));
    state.events = page.events || [];
    state.lastSeq = page.lastSeq ?? 0;
    state.epoch = page.epoch || session.epoch || null;
    render();
    ctx.live.unsubscribeAll();
    ctx.live.subscribe(
      id,
      {
        onEvent: (ev) => {
          state.events.push(ev);
          state.lastSeq = ev.seq;
          appendEvent(ev);
          if (ev.type === "terminal:output") appendOutput(ev);
          if (/^(chain|step|session|interaction):/.test(ev.type)) reloadSoon();
        },
        onNotice: (n) => {
          if (n.type === "session:deleted") {
            ctx.notice(`Session ${id} was deleted.`, "warn");
            location.hash = "#/sessions";
            return;
          }
          if (n.type === "command:queued") ctx.notice(`Command ${n.command?.type || n.commandType || ""} queued.`);
          reloadSoon();
        },
        onReset: (p) => {
          ctx.notice(`The server could not resume this session's stream (recovered: false, last seq ${p.lastSeq}); reloaded.`, "warn", "recovered-false");
          load();
        },
      },
      state.lastSeq,
      state.epoch,
    );
  }

  async function loadArchived() {
    const snap = await api(withQuery(`/api/history/session/${seg(id)}`, { date }));
    state.session = { ...snap.session, chains: snap.chains || [] };
    state.events = snap.events || [];
    state.savedAt = snap.savedAt;
    render();
  }

  async function load() {
    try {
      if (state.readOnly) await loadArchived();
      else await loadLive();
    } catch (e) {
      ctx.error(e);
      if (e.status === 404) fill(head, h("h1", {}, id), h("p", {}, "No such session, live or archived."));
    }
  }

  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(async () => {
      try {
        state.session = await api(`/api/sessions/${seg(id)}`);
        renderHead();
        renderPrompt();
        renderChains();
      } catch (e) {
        if (e.status !== 404) ctx.error(e);
      }
    }, 250);
  }

  function renderHead() {
    const s = state.session;
    const facts = [
      ["User", s.user || "—"],
      ["Cwd", s.cwd || "—"],
      ["Host", s.hostname || "—"],
      ["Started", when(s.startedAt)],
      ["Last activity", when(s.lastActivityAt)],
      ["Duration", duration(s.duration) || "—"],
      ["Conversation", (s.conversationState || "—").replace("_", " ")],
      ["Events", String(s.eventCount ?? state.events.length)],
    ];
    fill(
      head,
      h("div", { class: "row spread" }, h("h1", {}, s.id || id, " ", badge(s.status)), state.readOnly ? h("span", { class: "badge s-archived" }, state.savedAt ? `archived ${when(state.savedAt)}` : "archived") : null),
      h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      s.summary ? h("p", {}, s.summary) : null,
    );
  }

  function renderPrompt() {
    const s = state.session;
    const p = s.lastPrompt;
    const input = h("input", { id: "input-text", type: "text", autocomplete: "off", placeholder: "Type input for the agent", required: true });
    const send = async (text) => {
      try {
        await api(`/api/sessions/${seg(id)}/input`, { method: "POST", body: { input: text } });
        ctx.notice(`Input queued: “${text}”.`);
        input.value = "";
      } catch (e) {
        ctx.error(e);
      }
    };
    fill(
      prompt,
      h("h2", {}, "Prompt"),
      p ? h("p", { class: "prompt" }, p.text || "(no text)") : h("p", { class: "muted" }, "No prompt yet."),
      p && p.quickResponses?.length && !state.readOnly
        ? h("div", { class: "row wrap" }, p.quickResponses.map((r) => h("button", { type: "button", class: "quick", onclick: () => send(r) }, r)))
        : null,
      state.readOnly
        ? null
        : h(
            "form",
            {
              class: "row",
              onsubmit: (e) => {
                e.preventDefault();
                if (input.value.trim()) send(input.value);
              },
            },
            h("label", { for: "input-text", class: "sr" }, "Input"),
            input,
            h("button", { type: "submit", class: "primary" }, "Send input"),
          ),
    );
  }

  function failedStep() {
    for (const c of state.session.chains || []) {
      const f = (c.steps || []).find((st) => st.status === "failed");
      if (f) return f.stepNumber;
    }
    return "";
  }

  function renderActions() {
    if (state.readOnly) {
      fill(actions, h("h2", {}, "Commands"), h("p", { class: "muted" }, "Archived: read-only."));
      return;
    }
    const step = h("input", { id: "cmd-step", type: "number", min: "1", value: failedStep(), class: "narrow" });
    const queue = async (type) => {
      const body = { type };
      if (type === "retry" || type === "skip") {
        const n = Number(step.value);
        if (!Number.isInteger(n) || n < 1) {
          ctx.notice(`${type} needs a step number.`, "error");
          step.focus();
          return;
        }
        body.payload = { stepNumber: n };
      }
      try {
        const res = await api(`/api/sessions/${seg(id)}/commands`, { method: "POST", body });
        ctx.notice(`Command ${type} queued (${res.commandId}).`);
      } catch (e) {
        ctx.error(e);
      }
    };
    const remove = async () => {
      if (!confirm(`Delete session ${id} and everything it holds? This cannot be undone.`)) return;
      try {
        await api(`/api/sessions/${seg(id)}`, { method: "DELETE" });
        ctx.notice(`Session ${id} deleted.`);
        location.hash = "#/sessions";
      } catch (e) {
        ctx.error(e);
      }
    };
    fill(
      actions,
      h("h2", {}, "Commands"),
      h("div", { class: "row wrap" }, ["pause", "resume", "cancel"].map((t) => h("button", { type: "button", "data-command": t, onclick: () => queue(t) }, t))),
      h(
        "div",
        { class: "row wrap" },
        h("label", { for: "cmd-step" }, "Step"),
        step,
        ["retry", "skip"].map((t) => h("button", { type: "button", "data-command": t, onclick: () => queue(t) }, t)),
      ),
      h("div", { class: "row end" }, h("button", { type: "button", class: "danger", onclick: remove }, "Delete session")),
    );
  }

  function renderChains() {
    const list = state.session.chains || [];
    fill(
      chains,
      h("h2", {}, `Chains (${list.length})`),
      list.length ? null : h("p", { class: "muted" }, "No chains yet."),
      list.map((c) =>
        h(
          "article",
          { class: "chain", "data-status": c.status },
          h("div", { class: "row spread" }, h("h3", {}, c.title || c.id), badge(c.status)),
          h("p", { class: "muted" }, `${when(c.startedAt)}${c.duration !== undefined ? ` · ${duration(c.duration)}` : ""}`),
          h(
            "ol",
            { class: "steps" },
            (c.steps || []).map((st) =>
              h(
                "li",
                { class: st.status === "failed" ? "step failed" : "step", "data-status": st.status },
                h("span", { class: "num" }, `#${st.stepNumber}`),
                h("span", {}, st.action || "—"),
                badge(st.status),
                h("span", { class: "muted" }, duration(st.duration)),
                st.error ? h("span", { class: "error" }, st.error) : null,
              ),
            ),
          ),
        ),
      ),
    );
  }

  function line(ev) {
    const bits = [ev.stepNumber && `step ${ev.stepNumber}`, ev.chainId, ev.path, ev.question, ev.input, ev.status].filter(Boolean);
    return h(
      "li",
      { "data-seq": ev.seq ?? "" },
      h("span", { class: "num" }, ev.seq ?? ""),
      h("span", { class: "etype" }, ev.type),
      h("span", { class: "muted" }, when(ev.timestamp)),
      h("span", {}, bits.join(" · ")),
    );
  }

  function appendEvent(ev) {
    stream.append(line(ev));
    while (stream.childElementCount > SHOWN_EVENTS) stream.firstElementChild.remove();
    fill(streamInfo, `${state.events.length} events; last seq ${state.lastSeq}`);
  }

  function appendOutput(ev) {
    const span = h("span", { class: ev.stream === "stderr" ? "stderr" : "" }, ev.output || "");
    terminal.append(span);
    while (terminal.childElementCount > SHOWN_LINES) terminal.firstElementChild.remove();
    terminal.scrollTop = terminal.scrollHeight;
  }

  function render() {
    renderHead();
    renderPrompt();
    renderActions();
    renderChains();
    fill(stream, state.events.slice(-SHOWN_EVENTS).map(line));
    fill(terminal);
    for (const ev of state.events) if (ev.type === "terminal:output") appendOutput(ev);
    fill(streamInfo, `${state.events.length} events${state.readOnly ? "" : `; last seq ${state.lastSeq}`}`);
  }

  load();
  return { el: view, leave: () => clearTimeout(reloadTimer) };
}
