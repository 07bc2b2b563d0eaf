// The page's one WebSocket to afw (`/ws`): subscriptions by session, each with the cursor
// (`after`, `epoch`) of the last event it delivered, so a dropped connection resumes without
// a gap or a duplicate; `recovered: false` from afw is passed on (the view reloads).
// Reconnects by itself with backoff, and gives a connection up when nothing (not even afw's
// 20 s heartbeat) arrives for 30 s. The key goes as `?apiKey=` on the upgrade only: browsers
// cannot set headers on it. Nothing here renders.

import { auth } from "./api.js";

const SILENCE_MS = 30_000;

export class Live {
  constructor(onState) {
    this.subs = new Map();
    this.onState = onState;
    this.ws = null;
    this.backoff = 500;
    this.reconnects = 0;
    this.silence = null;
  }

  url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const key = auth.key();
    const q = key ? `?apiKey=${encodeURIComponent(key)}` : "";
    return `${proto}//${location.host}/ws${q}`;
  }

  start() {
    if (this.ws) return;
    this.onState("connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 500;
      this.onState("live");
      for (const id of this.subs.keys()) this.sendSubscribe(id);
      this.heard();
    };
    ws.onmessage = (m) => {
      this.heard();
      let frame;
      try {
        frame = JSON.parse(m.data);
      } catch {
        return;
      }
      this.handle(frame);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearTimeout(this.silence);
      this.onState("reconnecting");
      this.reconnects += 1;
      setTimeout(() => this.start(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10_000);
    };
  }

  /** Drops the connection (as a network failure would); it comes back by itself. */
  drop() {
    if (this.ws) this.ws.close();
  }

  /** Reconnects now, e.g. with a new key. */
  restart() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.start();
  }

  heard() {
    clearTimeout(this.silence);
    this.silence = setTimeout(() => this.drop(), SILENCE_MS);
  }

  /**
   * Follows a session. `handlers`: onEvent(frame) for each stored event once, in seq
   * order; onNotice(frame) for notifications (`session:updated`, `command:queued`, …);
   * onConfirmed(payload); onReset(payload) when afw cannot resume (`recovered: false`).
   * `after`: the seq already shown (events after it are replayed), or null for live only.
   */
  subscribe(id, handlers, after = null, epoch = null) {
    this.subs.set(id, { ...handlers, after, epoch });
    this.sendSubscribe(id);
  }

  unsubscribe(id) {
    if (!this.subs.delete(id)) return;
    this.send({ type: "unsubscribe", sessionId: id });
  }

  unsubscribeAll() {
    for (const id of [...this.subs.keys()]) this.unsubscribe(id);
  }

  sendSubscribe(id) {
    const sub = this.subs.get(id);
    const msg = { type: "subscribe", sessionId: id };
    if (sub.after !== null) msg.after = sub.after;
    if (sub.after !== null && sub.epoch) msg.epoch = sub.epoch;
    this.send(msg);
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  handle(frame) {
    const sub = frame.sessionId ? this.subs.get(frame.sessionId) : null;
    if (!sub) return;
    if (frame.type === "subscription_confirmed") {
      const p = frame.payload || {};
      sub.epoch = p.epoch || sub.epoch;
      if (p.recovered === false) {
        sub.after = p.lastSeq ?? 0;
        sub.onReset?.(p);
      } else if (sub.after === null) {
        sub.after = p.lastSeq ?? 0;
      }
      sub.onConfirmed?.(p);
      return;
    }
    if (frame.type === "error") {
      sub.onError?.(frame);
      return;
    }
    if (typeof frame.seq !== "number") {
      sub.onNotice?.(frame);
      return;
    }
    const epoch = frame.data?.epoch;
    if (epoch && sub.epoch && epoch !== sub.epoch) {
      // The session began again (a new incarnation): its seqs start over.
      sub.epoch = epoch;
      sub.after = frame.seq - 1;
      sub.onReset?.({ lastSeq: frame.seq - 1, epoch });
    }
    if (sub.after !== null && frame.seq <= sub.after) return;
    sub.after = frame.seq;
    if (epoch) sub.epoch = epoch;
    sub.onEvent?.(frame);
  }
}
