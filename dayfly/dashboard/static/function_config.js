// A function's configuration, capabilities, versions and aliases; its triggers and DLQ.
import { get, maybe, request } from "./api.js";
import { ago, badge, errorBox, fnOfArn, h, size, table } from "./ui.js";

const enc = encodeURIComponent;
const list = (v) => (v && v.length ? v.join(", ") : h("span.muted", "none"));

function kv(rows) {
  return h("dl.kv", rows.map(([k, v]) => [h("dt", k), h("dd", v === undefined || v === null ? "–" : v)]));
}

// Rows a tier may not enforce, by their Lambda API names (Dayfly.NotEnforced): a weak tier's
// panel leaves them out rather than show limits that are not there.
function capabilities(cfg, d, env) {
  const hidden = new Set(d.NotEnforced || []);
  const rows = [
    ["Isolation", d.IsolationWeak ? h("span", badge(d.Isolation, "weak"), " ",
      h("strong.bad.weak-isolation", d.IsolationWarning)) : d.Isolation],
    ["Network", list(d.Network), "Network"], ["Files", list(d.Files), "Files"],
    ["Buckets", list(d.Buckets), "Buckets"], ["Secrets", list(d.Secrets), "Secrets"],
    ["Environment", list(env)],
    ["/tmp", `${(cfg.EphemeralStorage || {}).Size} MB`, "EphemeralStorage"],
    ["Processes", d.Pids, "Pids"],
    ["Memory", `${cfg.MemorySize} MB`], ["Timeout", `${cfg.Timeout} s`],
    ["Max output", size(d.MaxOutput || 0)]];
  const note = d.IsolationWeak
    ? h("p.bad.small", "Only these limits are enforced: the function can reach whatever "
      + "this node's user can (its files, network and processes).")
    : h("p.muted.small", "Everything else is off.");
  return h("section.panel", h("h3", "Capabilities"), note,
    kv(rows.filter(([, , field]) => !hidden.has(field)).map(([k, v]) => [k, v])));
}

export async function configTab(body, name, fn) {
  const cfg = fn.Configuration;
  const d = cfg.Dayfly || {};
  const [versions, aliases, instances] = await Promise.all([
    get(`/2015-03-31/functions/${enc(name)}/versions`),
    get(`/2015-03-31/functions/${enc(name)}/aliases`),
    get(`/dayfly/v1/functions/${enc(name)}/instances`)]);
  const env = Object.keys((cfg.Environment || {}).Variables || {});
  body.append(h("div.split",
    h("section.panel", h("h3", "Configuration"), kv([
      ["Handler", h("code", cfg.Handler)], ["Runtime", cfg.Runtime],
      ["Memory", `${cfg.MemorySize} MB`], ["Timeout", `${cfg.Timeout} s`],
      ["Code", `${size(cfg.CodeSize)}, sha256 ${cfg.CodeSha256.slice(0, 12)}…`],
      ["Modified", cfg.LastModified], ["Description", cfg.Description || "–"],
      ["Max instances", d.MaxInstances], ["Min warm", d.MinWarm],
      ["Idle timeout", `${d.IdleTimeout} s`],
      ["Reserved concurrency", fn.Concurrency ? fn.Concurrency.ReservedConcurrentExecutions : "–"],
      ["Public", d.Public ? "yes: invocable without a token" : "no"]])),
    capabilities(cfg, d, env)));
  body.append(h("div.split",
    h("section.panel", h("h3", "Versions"), table(["Version", "Modified", "Description", "Code"],
      versions.Versions.map((v) => ({ cells: [v.Version, v.LastModified, v.Description || "",
        v.CodeSha256.slice(0, 12)] })))),
    h("section.panel", h("h3", "Aliases"), table(["Alias", "Version", "Routing"],
      aliases.Aliases.map((a) => ({ cells: [a.Name, a.FunctionVersion,
        a.RoutingConfig ? JSON.stringify(a.RoutingConfig.AdditionalVersionWeights) : ""] })),
      { empty: "No aliases." }))));
  body.append(h("section.panel", h("h3", "Instances now"), table(
    ["Id", ">PID", "State", "Version", ">Invocations", ">Idle", ">PSS"],
    instances.instances.map((i) => ({ cells: [i.id || "–", i.pid || "–", badge(i.state, "plain"),
      i.version, i.invocations ?? "–", i.idle_s !== undefined ? `${i.idle_s} s` : "–",
      i.pss_kb ? size(i.pss_kb * 1024) : "–"] })), { empty: "No instances: scaled to zero." })));
  return {};
}

async function dlqPanel(name) {
  const panel = h("section.panel");
  async function load() {
    try {
      const data = await get(`/dayfly/v1/functions/${enc(name)}/dlq?limit=100`);
      const rows = data.dead_letters.map((e) => ({ cells: [h("code", e.id.slice(0, 12)),
        ago(e.failed), e.attempts, e.trigger, h("span.clip", e.error),
        h("button.small", { type: "button", onclick: (ev) => { ev.stopPropagation(); redrive([e.id]); } },
          "Redrive")] }));
      panel.replaceChildren(h("div.toolbar", h("h3", `Dead letters (${rows.length})`),
        h("span.spacer"), rows.length ? h("button.primary", { type: "button",
          onclick: () => redrive(null) }, "Redrive all") : null),
      table(["Event", "Failed", ">Attempts", "Trigger", "Error", ""], rows,
        { empty: "The dead-letter queue is empty." }));
    } catch (err) {
      panel.replaceChildren(errorBox(err));
    }
  }
  async function redrive(ids) {
    await request("POST", `/dayfly/v1/functions/${enc(name)}/dlq/redrive`,
      { json: ids ? { ids } : {} });
    await load();
  }
  await load();
  return panel;
}

export async function triggersTab(body, name) {
  const [routes, buckets, mappings, schedules] = await Promise.all([
    maybe(`/dayfly/v1/routes?function=${enc(name)}`),
    maybe(`/dayfly/v1/bucket-triggers?function=${enc(name)}`),
    maybe(`/2015-03-31/event-source-mappings/?FunctionName=${enc(name)}`),
    maybe(`/dayfly/v1/schedules?FunctionName=${enc(name)}`)]);
  const rows = [];
  for (const r of (routes && routes.routes) || []) {
    rows.push({ cells: ["route", h("code", r.route), `auth ${r.auth}, payload ${r.payload_version}` +
      (r.rate_limit ? `, ${r.rate_limit.rps}/s per node` : "") + (r.cors ? ", CORS" : ""),
      badge("serving", "success")] });
  }
  for (const u of (routes && routes.urls) || []) {
    rows.push({ cells: ["function URL", h("a", { href: u.path_url, target: "_blank" }, u.url),
      `auth ${u.auth_type}${u.qualifier ? `, alias ${u.qualifier}` : ""}; also ${u.path_url}`,
      badge("serving", "success")] });
  }
  for (const t of (buckets && buckets.triggers) || []) {
    rows.push({ cells: ["bucket", `${t.source === "local" ? "" : t.source + ":"}${t.bucket}`,
      [t.events.join(", "), t.prefix ? ` prefix ${t.prefix}` : "", t.suffix ? ` suffix ${t.suffix}` : ""].join(""),
      badge("enabled", "success")] });
  }
  for (const m of (mappings && mappings.EventSourceMappings) || []) {
    if (fnOfArn(m.FunctionArn) !== name) continue;
    rows.push({ cells: ["table", (m.Dayfly || {}).Table || m.EventSourceArn,
      `batch ${m.BatchSize}, ${m.LastProcessingResult}`,
      badge(m.Health || m.State, m.Health === "healthy" ? "success" : "error")] });
  }
  for (const s of (schedules && schedules.Schedules) || []) {
    rows.push({ cells: ["schedule", s.ScheduleExpression, s.NextFire ? `next ${s.NextFire}` : "",
      badge(s.State.toLowerCase(), s.State === "ENABLED" ? "success" : "plain")] });
  }
  body.append(h("section.panel", h("h3", "Triggers"), table(["Kind", "Source", "Detail", "State"],
    rows, { empty: "No triggers or routes: invoked through the Lambda API only." })));
  body.append(await dlqPanel(name));
  return {};
}
