// The UI's shell: the hash router (#/sessions, #/session/:id, #/history, #/history/:date,
// #/archived/:date/:id, #/health), the notices every API error ends up in (never
// swallowed), the key dialog, and the one WebSocket the views share.

import { ApiError, auth } from "./api.js";
import { h } from "./dom.js";
import { healthView } from "./health.js";
import { historyDateView, historyView } from "./history.js";
import { Live } from "./live.js";
import { sessionView } from "./session.js";
import { sessionsView } from "./sessions.js";

const main = document.getElementById("main");
const notices = document.getElementById("notices");
const conn = document.getElementById("conn");
const logout = document.getElementById("logout");

function notice(text, kind = "info", tag = "") {
  const el = h(
    "div",
    { class: `notice ${kind}`, "data-notice": tag || kind },
    h("span", {}, text),
    h("button", { type: "button", class: "quiet", "aria-label": "Dismiss", onclick: () => el.remove() }, "×"),
  );
  notices.append(el);
  while (notices.childElementCount > 5) notices.firstElementChild.remove();
  if (kind === "info") setTimeout(() => el.remove(), 6000);
}

function error(e) {
  const text = e instanceof ApiError ? `${e.status ? `${e.status}: ` : ""}${e.message}` : String(e?.message || e);
  notice(text, "error", "api-error");
}

const live = new Live((state) => {
  conn.textContent = state;
  conn.dataset.state = state;
});

// The key dialog: opened when afw answers 401; resolves once a key has been entered.
const dialog = document.getElementById("login");
const form = document.getElementById("login-form");
const keyInput = document.getElementById("login-key");
const loginError = document.getElementById("login-error");
let waiting = null;
auth.onUnauthorized = (message) => {
  if (!waiting) {
    waiting = new Promise((resolve) => {
      loginError.hidden = !auth.key();
      loginError.textContent = auth.key() ? message : "";
      auth.forget();
      keyInput.value = "";
      dialog.showModal();
      form.onsubmit = () => {
        auth.set(keyInput.value.trim());
        logout.hidden = false;
        waiting = null;
        live.restart();
        resolve();
      };
    });
  }
  return waiting;
};
logout.hidden = !auth.key();
logout.addEventListener("click", () => {
  auth.forget();
  logout.hidden = true;
  live.restart();
  route();
});

let current = null;
function route() {
  current?.leave?.();
  live.unsubscribeAll();
  const [path, query = ""] = (location.hash.slice(1) || "/sessions").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  const ctx = { live, notice, error };
  let view;
  let nav = parts[0];
  if (parts[0] === "session" && parts[1]) view = sessionView(ctx, parts[1]);
  else if (parts[0] === "archived" && parts[2]) {
    view = sessionView(ctx, parts[2], { date: parts[1], archived: true });
    nav = "history";
  } else if (parts[0] === "history" && parts[1]) view = historyDateView(ctx, parts[1]);
  else if (parts[0] === "history") view = historyView(ctx);
  else if (parts[0] === "health") view = healthView(ctx);
  else {
    view = sessionsView(ctx, params);
    nav = "sessions";
  }
  current = view;
  main.replaceChildren(view.el);
  main.focus({ preventScroll: true });
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.toggleAttribute("aria-current", a.dataset.nav === nav);
  }
}

window.addEventListener("hashchange", route);
// For the browser tests and for a person at the console: the shared connection.
window.afw = { live };
live.start();
route();
