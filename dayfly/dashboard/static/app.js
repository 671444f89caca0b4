// The dashboard's router: #/ (functions), #/fn/NAME[/TAB], #/buckets, #/b/BUCKET?prefix=P.
import { setToken, setUnauthorizedHandler } from "./api.js";
import { bucketPage, bucketsPage } from "./buckets.js";
import { functionPage } from "./function.js";
import { overviewPage } from "./overview.js";
import { errorBox } from "./ui.js";

const main = document.getElementById("main");
let current = null; // {stop()} of the page on screen: timers and streams end with it

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}

async function route() {
  if (current && current.stop) current.stop();
  current = null;
  const { parts, params } = parse();
  const section = parts[0] === "buckets" || parts[0] === "b" ? "buckets" : "overview";
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === section);
  }
  main.replaceChildren();
  try {
    if (parts[0] === "fn" && parts[1]) current = await functionPage(main, parts[1], parts[2]);
    else if (parts[0] === "buckets") current = await bucketsPage(main);
    else if (parts[0] === "b" && parts[1]) current = await bucketPage(main, parts[1], params.get("prefix") || "");
    else current = await overviewPage(main);
  } catch (err) {
    main.replaceChildren(errorBox(err));
  }
}

const login = document.getElementById("login");
setUnauthorizedHandler(() => { if (!login.open) login.showModal(); });
document.getElementById("login-form").addEventListener("submit", () => {
  setToken(document.getElementById("login-token").value);
  route();
});

window.addEventListener("hashchange", route);
route();
