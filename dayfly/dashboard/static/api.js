// The dashboard's one way to talk to dayfly: the same HTTP API as the CLI.
const KEY = "dayfly.token";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.Message)) || `HTTP ${status}`);
    this.status = status;
    this.hint = body && body.hint;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }
export function setToken(token) { localStorage.setItem(KEY, token.trim()); }

function headers(extra = {}) {
  const h = { ...extra };
  const token = localStorage.getItem(KEY);
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

export async function request(method, path, { json, body, type, signal } = {}) {
  const opts = { method, headers: headers(), signal };
  if (json !== undefined) {
    opts.body = JSON.stringify(json);
    opts.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    opts.body = body;
    if (type) opts.headers["Content-Type"] = type;
  }
  const res = await fetch(path, opts);
  if (res.status === 401) onUnauthorized();
  if (!res.ok) {
    let err = null;
    try { err = await res.json(); } catch (e) { err = null; }
    throw new ApiError(res.status, err);
  }
  return res;
}

export async function get(path) {
  const res = await request("GET", path);
  return res.status === 204 ? null : res.json();
}

/** GET that answers null instead of failing (endpoints that may not exist on this node). */
export async function maybe(path) {
  try { return await get(path); } catch (e) { return null; }
}

/** Every item of a Lambda-style paged listing (Marker / NextMarker). */
export async function pages(path, key) {
  const out = [];
  let marker = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await get(marker ? `${path}${sep}Marker=${encodeURIComponent(marker)}` : path);
    out.push(...(page[key] || []));
    marker = page.NextMarker;
    if (!marker) return out;
  }
}

/** NDJSON lines of a streamed response, until `signal` aborts it. */
export async function stream(path, onRecord, signal) {
  const res = await request("GET", path, { signal });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) onRecord(JSON.parse(line));
    }
  }
}

/** Download through fetch (so the token goes along) and hand the file to the browser. */
export async function download(path, filename) {
  const res = await request("GET", path);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
