// Small DOM and formatting helpers shared by the pages.

/** h("div.card", {onclick}, child, ...) → an element; strings become text (never HTML). */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs !== null && attrs !== undefined &&
      (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function table(columns, rows, { onRow, empty = "Nothing here yet." } = {}) {
  if (!rows.length) return h("p.muted.empty", empty);
  const head = h("tr", columns.map((c) => h(c.startsWith(">") ? "th.num" : "th",
    c.replace(/^>/, ""))));
  const body = rows.map((r) => {
    const cells = r.cells.map((v, i) => h(columns[i].startsWith(">") ? "td.num" : "td", v));
    const tr = h("tr", r.attrs || {}, cells);
    if (onRow) {
      tr.classList.add("clickable");
      tr.addEventListener("click", () => onRow(r));
    }
    return tr;
  });
  return h("table.grid", h("thead", head), h("tbody", body));
}

export const card = (label, value, sub) =>
  h("div.card", h("div.card-label", label), h("div.card-value", value), sub ? h("div.card-sub", sub) : null);

export function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1) return `${v.toFixed(2)} ms`;
  if (v < 100) return `${v.toFixed(1)} ms`;
  if (v < 10000) return `${Math.round(v)} ms`;
  return `${(v / 1000).toFixed(1)} s`;
}

export const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(v && v < 0.1 ? 1 : 0)} %`);
export const num = (v, digits = 1) => (v === null || v === undefined ? "–" :
  Number.isInteger(v) ? String(v) : v.toFixed(digits));

export function ago(epoch) {
  if (!epoch) return "–";
  const s = Date.now() / 1000 - epoch;
  if (s < 60) return `${Math.max(0, Math.floor(s))}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400 * 2) return `${Math.floor(s / 3600)}h ago`;
  return new Date(epoch * 1000).toLocaleDateString();
}

export const clock = (epoch) => new Date(epoch * 1000).toLocaleTimeString();
export const size = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` :
  `${(n / 1048576).toFixed(1)} MiB`);

export function badge(text, kind) {
  return h(`span.badge.${kind || text}`, text);
}

export function errorBox(err) {
  return h("div.error", h("strong", err.message || String(err)),
    err.hint ? h("div.muted", `hint: ${err.hint}`) : null);
}

export function tabs(names, current, onPick) {
  return h("div.tabs", names.map((n) => h(n === current ? "button.tab.active" : "button.tab",
    { onclick: () => onPick(n), type: "button" }, n)));
}

/** Function name of an ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]). */
export const fnOfArn = (arn) => (arn || "").split(":function:")[1]?.split(":")[0] || arn;
