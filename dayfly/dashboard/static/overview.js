// The functions overview: every function with its stats, and the platform's health.
import { get, maybe } from "./api.js";
import { ago, badge, card, errorBox, fnOfArn, h, ms, num, pct, table } from "./ui.js";

const WINDOWS = [["5 min", 300], ["1 hour", 3600], ["24 hours", 86400]];
let windowS = 3600;

/** {function: ["bucket photos", "table …", "cron(…)"]} from whichever trigger APIs answer. */
async function triggersByFunction() {
  const [buckets, mappings, schedules] = await Promise.all([
    maybe("/dayfly/v1/bucket-triggers"),
    maybe("/2015-03-31/event-source-mappings/"),
    maybe("/dayfly/v1/schedules"),
  ]);
  const out = {};
  const add = (fn, what) => (out[fn] = out[fn] || []).push(what);
  for (const t of (buckets && buckets.triggers) || []) add(t.function, `bucket ${t.bucket}`);
  for (const m of (mappings && mappings.EventSourceMappings) || []) {
    add(fnOfArn(m.FunctionArn), `table${m.Health && m.Health !== "healthy" ? " (" + m.Health + ")" : ""}`);
  }
  for (const s of (schedules && schedules.Schedules) || []) add(s.FunctionName, s.ScheduleExpression);
  return out;
}

function health(p) {
  const unhealthy = p.sources.unhealthy.length;
  const c = p.cluster;
  const sent = Object.values(c.forwarded).reduce((a, b) => a + b, 0);
  return h("section.cards",
    card("Functions", p.functions),
    card("Nodes", c.nodes.length, c.name ? `cluster ${c.name}` : "single node"),
    card("Forwarded", sent, sent ? Object.entries(c.forwarded).map(([k, v]) => `${k} ${v}`)
      .join(", ") : "sync invokes sent to other nodes"),
    card("Async queue", p.queue_depth,
      p.oldest_event_age_s !== null ? `oldest ${num(p.oldest_event_age_s, 0)} s` : "empty"),
    card("Dead letters", p.dead_letters, p.dead_letters ? "see each function's DLQ" : "none"),
    card("Table sources", p.sources.total,
      unhealthy ? h("span.bad", `${unhealthy} unhealthy`) : "all healthy"),
    card("Default isolation", p.isolation, p.isolation_refused
      ? h("span.bad", "weak: functions refused (--allow-weak-isolation)")
      : p.isolation_warning ? h("span.bad", p.isolation_warning) : null));
}

/** Every live node: address, load, warm instances per function, last heartbeat. */
function nodesPanel(c) {
  const rows = c.nodes.map((n) => ({
    attrs: { "data-node": n.id },
    cells: [n.self ? [h("strong", n.id), h("span.muted", " (this node)")] : n.id,
      h("code", n.address), `${n.running}/${n.capacity}`,
      Object.entries(n.warm).map(([f, k]) => `${f}: ${k}`).join(", ") || h("span.muted", "–"),
      n.self ? "now" : `${num(n.age_s, 1)} s ago`, n.version],
  }));
  return h("section.panel.nodes",
    h("h3", c.name ? `Nodes of cluster ${c.name}` : "Node (single-node mode)"),
    table(["Node", "Address", ">Load", "Warm instances", ">Heartbeat", "Version"], rows),
    h("p.muted.small", `Queue streams: events ${c.streams.events}, dead letters ${c.streams.dlq}.`));
}

function functionsTable(stats, triggers) {
  const names = Object.keys(stats.functions);
  const rows = names.map((name) => {
    const f = stats.functions[name];
    const warm = f.instances.idle + f.instances.busy;
    return {
      name,
      attrs: { "data-function": name },
      cells: [
        h("a", { href: `#/fn/${encodeURIComponent(name)}` }, name),
        f.published ? `v${f.published}` : "$LATEST",
        f.isolation_weak ? badge(`${f.isolation} (weak)`, "weak") : badge(f.isolation, "tier"),
        (triggers[name] || []).join(", ") || h("span.muted", "–"),
        warm + (f.instances.starting ? ` (+${f.instances.starting})` : ""),
        num(f.per_min, 2), f.invocations,
        f.errors ? h("span.bad", pct(f.error_rate)) : pct(f.error_rate),
        ms(f.p50_ms), ms(f.p99_ms), pct(f.cold_share), ago(f.last),
      ],
    };
  });
  return table(["Function", "Version", "Isolation", "Triggers", ">Warm", ">Inv/min",
    ">Invocations", ">Errors", ">p50", ">p99", ">Cold", "Last"], rows,
  { onRow: (r) => { location.hash = `#/fn/${encodeURIComponent(r.name)}`; },
    empty: "No functions yet: deploy one with `dayfly deploy DIR`." });
}

export async function overviewPage(main) {
  const body = h("div");
  const picker = h("div.toolbar", h("h1", "Functions"), h("span.spacer"),
    WINDOWS.map(([label, s]) => h(s === windowS ? "button.tab.active" : "button.tab",
      { type: "button", onclick: () => { windowS = s; refresh(); } }, label)));
  main.append(picker, body);
  let timer = null;
  let triggers = {};
  async function refresh() {
    for (const b of picker.querySelectorAll("button")) {
      b.classList.toggle("active", b.textContent === WINDOWS.find((w) => w[1] === windowS)[0]);
    }
    try {
      const stats = await get(`/dayfly/v1/stats?window=${windowS}`);
      body.replaceChildren(health(stats.platform),
        h("p.muted.small", `Last ${WINDOWS.find((w) => w[1] === windowS)[0]}; refreshed every 5 s.`),
        functionsTable(stats, triggers), nodesPanel(stats.platform.cluster));
    } catch (err) {
      body.replaceChildren(errorBox(err));
    }
  }
  triggers = await triggersByFunction();
  await refresh();
  timer = setInterval(refresh, 5000);
  return { stop: () => clearInterval(timer) };
}
