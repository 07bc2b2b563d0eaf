// The history: dates with archived sessions (newest first), the sessions of a date, and
// the archive's figures; a session opens read-only in the session view.

import { api, seg, withQuery } from "./api.js";
import { fill, h } from "./dom.js";

const PAGE = 50;

function pager(total, offset, go) {
  const prev = h("button", { type: "button", disabled: offset === 0, onclick: () => go(Math.max(offset - PAGE, 0)) }, "← Previous");
  const next = h("button", { type: "button", disabled: offset + PAGE >= total, onclick: () => go(offset + PAGE) }, "Next →");
  return h("div", { class: "row spread" }, h("p", { class: "muted" }, `${total} in all`), h("div", { class: "row" }, prev, next));
}

export function historyView(ctx) {
  const stats = h("dl", { class: "facts" });
  const list = h("ul", { class: "dates" });
  const foot = h("div");
  async function go(offset) {
    try {
      const body = await api(withQuery("/api/history/dates", { limit: PAGE, offset }));
      fill(list, (body.dates || []).map((d) => h("li", {}, h("a", { href: `#/history/${seg(d)}` }, d))));
      if (!(body.dates || []).length) fill(list, h("li", { class: "muted" }, "Nothing archived yet."));
      fill(foot, pager(body.total ?? 0, offset, go));
    } catch (e) {
      ctx.error(e);
    }
  }
  api("/api/history/stats")
    .then((s) =>
      fill(
        stats,
        [
          ["Archive", s.archive],
          ["Dates", s.totalDates],
          ["Sessions", s.totalSessions],
          ["Oldest", s.oldestDate || "—"],
          ["Newest", s.newestDate || "—"],
          ["Retention", s.retentionDays ? `${s.retentionDays} days` : "forever"],
          ["Pending", s.pending],
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v ?? "—"))]),
      ),
    )
    .catch((e) => ctx.error(e));
  go(0);
  return { el: h("section", {}, h("h1", {}, "History"), stats, h("h2", {}, "Dates"), list, foot) };
}

export function historyDateView(ctx, date) {
  const list = h("ul", { class: "dates" });
  const foot = h("div");
  async function go(offset) {
    try {
      const body = await api(withQuery(`/api/history/sessions/${seg(date)}`, { limit: PAGE, offset }));
      const ids = body.sessionIds || [];
      fill(list, ids.length ? ids.map((id) => h("li", {}, h("a", { href: `#/archived/${seg(date)}/${seg(id)}` }, id))) : h("li", { class: "muted" }, "No sessions on this date."));
      fill(foot, pager(body.total ?? 0, offset, go));
    } catch (e) {
      ctx.error(e);
    }
  }
  go(0);
  return {
    el: h("section", {}, h("p", {}, h("a", { href: "#/history" }, "← History")), h("h1", {}, `Archived on ${date}`), h("p", { class: "muted" }, "Dates are UTC: the day each session began."), list, foot),
  };
}
