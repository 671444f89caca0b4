// One function: stats and charts, invocations, live logs, configuration, triggers and DLQ.
import { get, stream } from "./api.js";
import { breakdown, timeChart } from "./charts.js";
import { ago, badge, card, clock, errorBox, h, ms, num, pct, table, tabs } from "./ui.js";
import { configTab, triggersTab } from "./function_config.js";

const TABS = ["Overview", "Invocations", "Logs", "Configuration", "Triggers & DLQ"];
const slug = (t) => t.toLowerCase().split(" ")[0];
const enc = encodeURIComponent;
const COLORS = { ok: "#3b82f6", err: "#ef4444", cold: "#f59e0b", p50: "#3b82f6", p99: "#a855f7",
  fork: "#64748b", init: "#f59e0b", handler: "#3b82f6" };

export async function functionPage(main, name, tab) {
  const fn = await get(`/2015-03-31/functions/${enc(name)}`);
  const cfg = fn.Configuration;
  const current = TABS.find((t) => slug(t) === tab) || TABS[0];
  const d = cfg.Dayfly || {};
  main.append(
    h("div.toolbar", h("h1", h("a.muted", { href: "#/" }, "Functions"), " / ", name),
      h("span.spacer"), d.IsolationWeak ? h("span.badge.weak", { title: d.IsolationWarning },
        `${d.Isolation}: ${d.IsolationWarning}`) : badge(d.Isolation || "?", "tier"),
      badge(d.Public ? "public" : "private", d.Public ? "public" : "private"),
      badge(cfg.Runtime, "plain"), badge(`${cfg.MemorySize} MB`, "plain"),
      badge(`${cfg.Timeout} s`, "plain")),
    tabs(TABS, current, (t) => { location.hash = `#/fn/${enc(name)}/${slug(t)}`; }));
  const body = h("div.tab-body");
  main.append(body);
  const page = { overview: overviewTab, invocations: invocationsTab, logs: logsTab,
    configuration: configTab, triggers: triggersTab }[slug(current)];
  return page(body, name, fn);
}

async function overviewTab(body, name) {
  let windowS = 3600;
  async function refresh() {
    try {
      const st = await get(`/dayfly/v1/functions/${enc(name)}/stats?window=${windowS}`);
      const s = st.summary;
      const series = st.series.map((p) => ({ ...p, ok: p.invocations - p.errors }));
      body.replaceChildren(
        h("section.cards",
          card("Invocations", s.invocations, `${num(s.per_min, 2)} / min`),
          card("Errors", s.errors, pct(s.error_rate)),
          card("p50 latency", ms(s.p50_ms), `p99 ${ms(s.p99_ms)}`),
          card("Cold starts", s.cold, pct(s.cold_share)),
          card("Instances", st.instances.idle + st.instances.busy,
            `${st.instances.busy} busy, ${st.instances.starting} starting`),
          card("Last invocation", ago(s.last))),
        h("div.charts",
          timeChart(`Invocations per ${st.step} s`, series, [
            { key: "ok", label: "success", color: COLORS.ok, kind: "bar" },
            { key: "errors", label: "errors", color: COLORS.err, kind: "bar" }]),
          timeChart("Latency (handler)", series, [
            { key: "p50_ms", label: "p50", color: COLORS.p50 },
            { key: "p99_ms", label: "p99", color: COLORS.p99 }], { yFmt: (v) => ms(v) })),
        h("div.split",
          h("section.panel", h("h3", "Cold vs warm"), table(["", ">Count", ">p50", ">p99"], [
            { cells: ["Warm", st.warm.count, ms(st.warm.p50_ms), ms(st.warm.p99_ms)] },
            { cells: ["Cold", st.cold.count, ms(st.cold.p50_ms), ms(st.cold.p99_ms)] }])),
          h("section.panel", h("h3", "Cold-start breakdown (average)"), breakdown([
            { label: "fork", value: st.cold_start.fork_ms, color: COLORS.fork },
            { label: "init", value: st.cold_start.init_ms, color: COLORS.init },
            { label: "handler", value: st.cold_start.handler_ms, color: COLORS.handler }], ms))),
        h("p.muted.small", `Last ${windowS / 3600} h; refreshed every 5 s.`));
    } catch (err) {
      body.replaceChildren(errorBox(err));
    }
  }
  await refresh();
  const timer = setInterval(refresh, 5000);
  return { stop: () => clearInterval(timer) };
}

function detail(inv) {
  let error = inv.error;
  if (error) {
    try { error = JSON.stringify(JSON.parse(error), null, 2); } catch (e) { /* as sent */ }
  }
  const fields = [["Request id", inv.request_id], ["Status", badge(inv.status)],
    ["Started", new Date(inv.start * 1000).toLocaleString()], ["Version", inv.version],
    ["Trigger", inv.trigger], ["Duration", ms(inv.duration_ms)],
    ["Cold start", inv.cold ? `yes (fork ${ms(inv.fork_ms)}, init ${ms(inv.init_ms)})` : "no"],
    ["Memory used", `${Math.max(1, Math.round(inv.max_rss_kb / 1024))} MB of ${inv.memory_mb} MB`],
    ["Instance", inv.instance_id], ["Node", inv.node || "this node (single-node mode)"],
    ["Trace", inv.trace_id || "–"]];
  return h("section.panel.detail",
    h("h3", "Invocation ", h("code", inv.request_id)),
    h("dl", fields.map(([k, v]) => [h("dt", k), h("dd", v)])),
    h("h4", "Event"), h("pre.code", pretty(inv.event)),
    inv.result != null ? [h("h4", "Result"), h("pre.code", pretty(inv.result))] : null,
    error ? [h("h4", "Error"), h("pre.code", error)] : null,
    h("h4", "Logs"), h("pre.code.logs", inv.logs || ""));
}

function pretty(text) {
  if (text == null) return "–";
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
}

async function invocationsTab(body, name) {
  const filter = h("select", { "aria-label": "status" },
    ["all", "success", "error", "timeout", "crash"].map((s) => h("option", { value: s }, s)));
  const list = h("div");
  const side = h("div");
  body.append(h("div.toolbar", h("label", "Status ", filter), h("span.spacer"),
    h("span.muted.small", "newest first; click one for its logs")), h("div.split.wide", list, side));
  async function load() {
    const q = filter.value === "all" ? "" : `&status=${filter.value}`;
    try {
      const data = await get(`/dayfly/v1/functions/${enc(name)}/invocations?limit=100${q}`);
      list.replaceChildren(table([
        "Time", "Request id", "Status", "Cold", ">Duration", "Version", "Trigger", "Node"],
      data.invocations.map((inv) => ({ inv, attrs: { "data-request-id": inv.request_id },
        cells: [clock(inv.start), h("code", inv.request_id.slice(0, 8)), badge(inv.status),
          inv.cold ? "cold" : "", ms(inv.duration_ms), inv.version, inv.trigger,
          inv.node || h("span.muted", "–")] })),
      { onRow: (r) => side.replaceChildren(detail(r.inv)), empty: "No invocations yet." }));
      if (!side.childElementCount && data.invocations.length) side.append(detail(data.invocations[0]));
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  }
  filter.addEventListener("change", () => { side.replaceChildren(); load(); });
  await load();
  return {};
}

async function logsTab(body, name) {
  const out = h("pre.code.logs.tall");
  const state = h("span.muted.small");
  let abort = null;
  const button = h("button.primary", { type: "button" }, "Follow");
  function stop() {
    if (abort) abort.abort();
    abort = null;
    button.textContent = "Follow";
    state.textContent = "stopped";
  }
  async function follow() {
    abort = new AbortController();
    button.textContent = "Stop";
    state.textContent = "following (new invocations appear here)";
    out.textContent = "";
    try {
      await stream(`/dayfly/v1/functions/${enc(name)}/logs?follow=1&limit=20`, (rec) => {
        out.textContent += rec.text;
        if (out.textContent.length > 200000) out.textContent = out.textContent.slice(-150000);
        out.scrollTop = out.scrollHeight;
      }, abort.signal);
      stop();
    } catch (err) {
      if (err.name !== "AbortError") state.textContent = `stream ended: ${err.message}`;
    }
  }
  button.addEventListener("click", () => (abort ? stop() : follow()));
  body.append(h("div.toolbar", button, state,
    h("button", { type: "button", onclick: () => { out.textContent = ""; } }, "Clear")), out);
  follow();
  return { stop };
}

