// Charts drawn as inline SVG: bars and lines over time, and a stacked breakdown bar.
import { h, clock } from "./ui.js";

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

const hhmm = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * A time chart. points: [{t, ...}]; series: [{key, label, color, kind: "bar" | "line"}].
 * Bars of several series stack; lines skip missing (null) values.
 */
export function timeChart(title, points, series, { yFmt = String, height = 170 } = {}) {
  const W = 640, H = height, L = 52, R = 12, T = 12, B = 24;
  const iw = W - L - R, ih = H - T - B;
  const bars = series.filter((x) => x.kind === "bar");
  const lines = series.filter((x) => x.kind !== "bar");
  let max = 0;
  for (const p of points) {
    max = Math.max(max, bars.reduce((a, x) => a + (p[x.key] || 0), 0));
    for (const x of lines) if (p[x.key] !== null && p[x.key] !== undefined) max = Math.max(max, p[x.key]);
  }
  max = niceMax(max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": title });
  for (const f of [0, 0.5, 1]) {
    const y = T + ih - f * ih;
    svg.append(s("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "axis" }, yFmt(max * f)));
  }
  const n = Math.max(points.length, 1);
  const bw = iw / n;
  const x = (i) => L + bw * i + bw / 2;
  const y = (v) => T + ih - (v / max) * ih;
  points.forEach((p, i) => {
    let base = 0;
    for (const ser of bars) {
      const v = p[ser.key] || 0;
      if (v > 0) {
        const rect = s("rect", { x: L + bw * i + bw * 0.12, width: Math.max(bw * 0.76, 1),
          y: y(base + v), height: Math.max(y(base) - y(base + v), 1), fill: ser.color });
        rect.append(s("title", {}, `${clock(p.t)} ${ser.label}: ${yFmt(v)}`));
        svg.append(rect);
      }
      base += v;
    }
  });
  for (const ser of lines) {
    let d = "";
    let pen = false;
    points.forEach((p, i) => {
      const v = p[ser.key];
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      const dot = s("circle", { cx: x(i), cy: y(v), r: 2.2, fill: ser.color });
      dot.append(s("title", {}, `${clock(p.t)} ${ser.label}: ${yFmt(v)}`));
      svg.append(dot);
    });
    if (d) svg.append(s("path", { d, fill: "none", stroke: ser.color, "stroke-width": 1.8 }));
  }
  if (points.length) {
    const last = points.length - 1;
    for (const [i, anchor] of [[0, "start"], [Math.floor(last / 2), "middle"], [last, "end"]]) {
      const at = anchor === "start" ? L : anchor === "end" ? W - R : x(i);
      svg.append(s("text", { x: at, y: H - 6, "text-anchor": anchor, class: "axis" },
        hhmm(points[i].t)));
    }
  }
  const legend = h("div.legend", series.map((ser) =>
    h("span", h("i", { style: `background:${ser.color}` }), ser.label)));
  const box = h("figure.chart-box", h("figcaption", title, legend));
  box.append(svg);
  return box;
}

/** One horizontal bar split into parts: [{label, value, color}] (values in ms). */
export function breakdown(parts, fmt) {
  const total = parts.reduce((a, p) => a + (p.value || 0), 0);
  if (!total) return h("p.muted", "No cold starts in this window.");
  const bar = h("div.stack", parts.filter((p) => p.value > 0).map((p) =>
    h("span", { style: `width:${(100 * p.value) / total}%;background:${p.color}`,
      title: `${p.label}: ${fmt(p.value)}` })));
  const legend = h("div.legend", parts.map((p) =>
    h("span", h("i", { style: `background:${p.color}` }), `${p.label} ${fmt(p.value)}`)));
  return h("div.breakdown", bar, legend);
}
