// Health: `/health` (storage, Redis and Pub/Sub, the archive, instance id) and a few live
// figures from `/metrics` read every 2 s: events stored per second as a small chart,
// WebSocket clients, queue lengths, archival.

import { api } from "./api.js";
import { fill, h } from "./dom.js";

const EVERY_MS = 2000;
const POINTS = 60;
const SVG = "http://www.w3.org/2000/svg";

/** Sums of the samples of each metric name in Prometheus text (labels summed over). */
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!m) continue;
    const key = m[2] ? `${m[1]}${m[2]}` : m[1];
    const v = Number(m[3]);
    if (Number.isNaN(v)) continue;
    out.set(m[1], (out.get(m[1]) || 0) + v);
    out.set(key, v);
  }
  return out;
}

function chart(points) {
  const max = Math.max(1, ...points);
  const w = 300;
  const hgt = 80;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Events stored per second, last ${points.length} readings, at most ${max.toFixed(0)}`);
  const line = document.createElementNS(SVG, "polyline");
  const step = w / Math.max(POINTS - 1, 1);
  line.setAttribute("points", points.map((p, i) => `${(i * step).toFixed(1)},${(hgt - (p / max) * (hgt - 4) - 2).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

export function healthView(ctx) {
  const facts = h("dl", { class: "facts" });
  const figures = h("dl", { class: "facts" });
  const graph = h("div", { class: "graph" });
  const rates = [];
  let last = null;

  async function tick() {
    try {
      const health = await api("/health");
      const rows = [
        ["Status", health.status],
        ["Instance", health.instanceId],
        ["Storage", health.storage],
        ["Uptime", `${Math.round(health.uptime)} s`],
      ];
      if (health.redis) {
        rows.push(["Redis", health.redis.connected ? `connected, ${health.redis.latencyMs ?? "?"} ms` : "unreachable"]);
        rows.push(["Pub/Sub", health.redis.pubsub]);
      }
      if (health.archive) rows.push(["Archive", `${health.archive.kind}: ${health.archive.state}, ${health.archive.pending} pending${health.archive.lastError ? ` (${health.archive.lastError})` : ""}`]);
      fill(facts, rows.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, String(v))]));
    } catch (e) {
      ctx.error(e);
    }
    try {
      const m = parseMetrics(await api("/metrics", { raw: true, login: false }));
      const stored = m.get("afw_events_stored_total") || 0;
      const now = performance.now();
      if (last) rates.push(((stored - last.stored) * 1000) / (now - last.at));
      while (rates.length > POINTS) rates.shift();
      last = { stored, at: now };
      const mean = (q) => {
        const n = m.get(`afw_queue_length_count{queue="${q}"}`);
        return n ? (m.get(`afw_queue_length_sum{queue="${q}"}`) / n).toFixed(1) : "—";
      };
      fill(
        figures,
        [
          ["Events stored", stored],
          ["Events per second", rates.length ? rates[rates.length - 1].toFixed(1) : "—"],
          ["WebSocket clients", m.get("afw_ws_clients") ?? "—"],
          ["Input queue, mean length", mean("input")],
          ["Commands claimed, mean per poll", mean("commands")],
          ["Archive pending", m.get("afw_archive_pending") ?? "—"],
        ].map(([k, v]) => [h("dt", {}, k), h("dd", { "data-figure": k }, String(v))]),
      );
      fill(graph, chart(rates));
    } catch (e) {
      ctx.error(e);
    }
  }
  tick();
  const timer = setInterval(tick, EVERY_MS);
  return {
    el: h("section", {}, h("h1", {}, "Health"), facts, h("h2", {}, "Live figures"), graph, figures),
    leave: () => clearInterval(timer),
  };
}
