// The built-in object store: buckets, objects by prefix, download, upload, and trigger wiring.
import { download, get, maybe, request } from "./api.js";
import { ago, errorBox, h, size, table } from "./ui.js";

const enc = encodeURIComponent;
const keyPath = (key) => key.split("/").map(enc).join("/");

export async function bucketsPage(main) {
  const data = await get("/dayfly/v1/buckets");
  const name = h("input", { placeholder: "new-bucket-name", "aria-label": "bucket name" });
  const msg = h("span.muted.small");
  const form = h("form.inline", { onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await request("POST", "/dayfly/v1/buckets", { json: { name: name.value.trim() } });
      location.hash = `#/b/${enc(name.value.trim())}`;
    } catch (err) {
      msg.replaceChildren(errorBox(err));
    }
  } }, name, h("button.primary", { type: "submit" }, "Create bucket"), msg);
  main.append(h("div.toolbar", h("h1", "Buckets"), h("span.spacer"), form),
    table(["Bucket", "Created"], data.buckets.map((b) => ({ name: b.name,
      cells: [h("a", { href: `#/b/${enc(b.name)}` }, b.name), ago(b.created)] })),
    { onRow: (r) => { location.hash = `#/b/${enc(r.name)}`; },
      empty: "No buckets yet: create one here or with `aws s3 mb s3://NAME`." }));
  return {};
}

function crumbs(bucket, prefix) {
  const parts = prefix.split("/").filter(Boolean);
  const out = [h("a.muted", { href: "#/buckets" }, "Buckets"), " / ",
    h("a", { href: `#/b/${enc(bucket)}` }, bucket)];
  let acc = "";
  for (const p of parts) {
    acc += `${p}/`;
    out.push(" / ", h("a", { href: `#/b/${enc(bucket)}?prefix=${enc(acc)}` }, p));
  }
  return h("h1", out);
}

export async function bucketPage(main, bucket, prefix) {
  const body = h("div");
  const file = h("input", { type: "file", multiple: true, "aria-label": "files to upload" });
  const note = h("span.muted.small");
  file.addEventListener("change", async () => {
    try {
      for (const f of file.files) {
        note.textContent = `uploading ${f.name}…`;
        await request("PUT", `/dayfly/v1/buckets/${enc(bucket)}/objects/${keyPath(prefix + f.name)}`,
          { body: f, type: f.type || "application/octet-stream" });
      }
      note.textContent = `uploaded ${file.files.length} file(s)`;
      file.value = "";
      await load();
    } catch (err) {
      note.replaceChildren(errorBox(err));
    }
  });
  main.append(h("div.toolbar", crumbs(bucket, prefix), h("span.spacer"),
    h("label.button", "Upload…", file), note), body);

  async function load(after) {
    const q = new URLSearchParams({ prefix, delimiter: "/", limit: "500" });
    if (after) q.set("after", after);
    try {
      const data = await get(`/dayfly/v1/buckets/${enc(bucket)}/objects?${q}`);
      const rows = data.prefixes.map((p) => ({ prefix: p, cells: [
        h("a", { href: `#/b/${enc(bucket)}?prefix=${enc(p)}` }, `${p.slice(prefix.length)}`),
        "folder", "", ""] }));
      for (const o of data.objects) {
        const base = o.key.slice(prefix.length);
        rows.push({ cells: [base, size(o.size), ago(o.modified), h("span.actions",
          h("button.small", { type: "button", onclick: () => download(
            `/dayfly/v1/buckets/${enc(bucket)}/objects/${keyPath(o.key)}`, base.split("/").pop()) },
          "Download"),
          h("button.small.danger", { type: "button", onclick: async () => {
            if (!confirm(`Delete ${o.key}?`)) return;
            await request("DELETE", `/dayfly/v1/buckets/${enc(bucket)}/objects/${keyPath(o.key)}`);
            await load();
          } }, "Delete"))] });
      }
      body.replaceChildren(table(["Name", ">Size", "Modified", ""], rows,
        { empty: prefix ? "Nothing under this prefix." : "This bucket is empty." }));
      if (data.truncated) {
        body.append(h("button", { type: "button", onclick: () => load(data.after) }, "Next page"));
      }
      const triggers = await maybe(`/dayfly/v1/bucket-triggers?bucket=${enc(bucket)}&source=local`);
      if (triggers && triggers.triggers.length) {
        body.append(h("section.panel", h("h3", "Triggers on this bucket"),
          table(["Function", "Events", "Prefix", "Suffix"], triggers.triggers.map((t) => ({
            cells: [h("a", { href: `#/fn/${enc(t.function)}` }, t.function), t.events.join(", "),
              t.prefix || "–", t.suffix || "–"] })))));
      }
    } catch (err) {
      body.replaceChildren(errorBox(err));
    }
  }
  await load();
  return {};
}
