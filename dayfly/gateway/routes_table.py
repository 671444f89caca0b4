"""HTTP routes and function URLs: the `[http]` table's validation, and the in-memory table a
request is matched against.

A route key is API Gateway HTTP API's: `METHOD /path`, METHOD one of GET POST PUT PATCH DELETE
HEAD OPTIONS or ANY, path segments literal, `{name}` (one segment) or, last, `{name+}` (the
rest of the path), or `$default` (whatever no other route matched). The most specific route
wins, as in API Gateway: a literal segment over a parameter, a parameter over a greedy one, a
method over ANY, any route over `$default`.

Routes are served at the root of the node's port; paths whose first segment belongs to
dayfly's own APIs (`RESERVED`) can be neither declared nor matched, so no route ever shadows
the Lambda, dayfly or Function URL API, the dashboard or /metrics (docs/decisions/0010).

The table is rebuilt from the registry's memory when the registry changes (its `generation`);
the request path never touches the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidParameter, ResourceConflict

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
DEFAULT_KEY = "$default"
# every first segment of gateway/app.py's routes, and the streaming invoke's (fastpath):
# tests/security/test_attacks_session5.py checks the app's against this list
RESERVED = frozenset({"2014-11-13", "2015-03-31", "2017-10-31", "2018-10-31", "2019-09-25",
                      "2019-09-30", "2021-10-31", "2021-11-15", "dayfly", "ui", "url", "metrics",
                      "healthz", "openapi.json", "favicon.ico"})
AUTHS = ("none", "token", "jwt")
PAYLOAD_VERSIONS = ("1.0", "2.0")
MAX_ROUTES = 64
MAX_BODY = 6 * 1024 * 1024  # Lambda's synchronous payload limit
_LITERAL_RE = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]+$")
_PARAM_RE = re.compile(r"^\{([A-Za-z0-9_]{1,64})(\+?)\}$")
_STAGE_VAR_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# CORS settings are written out as header values: methods and header names are HTTP tokens, an
# origin is one printable word (no CR/LF, space or comma, which would make it two)
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ORIGIN_RE = re.compile(r"^[\x21-\x2b\x2d-\x7e]+$")
_CORS_KEYS = {"allow_origins", "allow_methods", "allow_headers", "expose_headers",
              "max_age", "allow_credentials"}


def _fail(msg: str) -> InvalidParameter:
    return InvalidParameter(f"dayfly.toml: [http] {msg}")


def parse_key(key: Any) -> tuple[str, list[str]]:
    """(method, segments) of a route key; `$default` is ("$default", [])."""
    if key == DEFAULT_KEY:
        return DEFAULT_KEY, []
    if not isinstance(key, str) or len(key) > 300:
        raise _fail(f"route {key!r} must be 'METHOD /path' (e.g. 'GET /users/{{id}}') or "
                    "'$default'")
    method, _, path = key.strip().partition(" ")
    path = path.strip()
    if method not in METHODS:
        raise _fail(f"route {key!r}: method must be one of {', '.join(METHODS)}")
    if not path.startswith("/") or path == "/" or path.endswith("/") or "//" in path:
        raise _fail(f"route {key!r}: the path must start with '/', have at least one segment, "
                    "and no empty segment")
    segments = path[1:].split("/")
    names = set()
    for i, seg in enumerate(segments):
        m = _PARAM_RE.match(seg)
        if m:
            if m.group(2) and i != len(segments) - 1:
                raise _fail(f"route {key!r}: a greedy parameter {{name+}} must be the last "
                            "segment")
            if m.group(1) in names:
                raise _fail(f"route {key!r}: parameter {m.group(1)!r} appears twice")
            names.add(m.group(1))
        elif not _LITERAL_RE.match(seg):
            raise _fail(f"route {key!r}: segment {seg!r} is neither a literal nor {{name}}")
    if segments[0] in RESERVED:
        raise _fail(f"route {key!r}: /{segments[0]} belongs to dayfly's own APIs (reserved: "
                    f"{', '.join('/' + r for r in sorted(RESERVED))})")
    return method, segments


def shape(key: str) -> str:
    """What two conflicting routes share: the key with parameter names dropped."""
    method, segments = parse_key(key)
    if method == DEFAULT_KEY:
        return DEFAULT_KEY
    out = []
    for seg in segments:
        m = _PARAM_RE.match(seg)
        out.append(("{+}" if m.group(2) else "{}") if m else seg)
    return f"{method} /{'/'.join(out)}"


def _auth(v: Any, where: str) -> str:
    if v not in AUTHS:
        raise _fail(f"{where}auth must be one of {', '.join(AUTHS)}, got {v!r}")
    return v


def _max_body(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_BODY:
        raise _fail(f"{where}max_body must be an integer from 1 to {MAX_BODY} (bytes), got {v!r}")
    return v


def _rate(v: Any, where: str) -> dict[str, float] | None:
    """`rate_limit = 10` (requests per second) or `{ rps = 10, burst = 20 }`."""
    if v is None:
        return None
    if isinstance(v, int | float) and not isinstance(v, bool):
        v = {"rps": v}
    if not isinstance(v, dict) or set(v) - {"rps", "burst"} or "rps" not in v:
        raise _fail(f"{where}rate_limit must be a number (requests per second) or "
                    "{ rps = N, burst = M }")
    rps, burst = v["rps"], v.get("burst", max(1, v["rps"]))
    for name, x in (("rps", rps), ("burst", burst)):
        if isinstance(x, bool) or not isinstance(x, int | float) or not 0 < x <= 1_000_000:
            raise _fail(f"{where}rate_limit.{name} must be a number above 0, got {x!r}")
    return {"rps": float(rps), "burst": float(max(burst, 1))}


def validate_cors(v: Any, where: str = "dayfly.toml: [http] cors") -> dict[str, Any]:
    """CORS settings, lower-case names as in dayfly.toml (the Function URL API maps to them)."""
    if not isinstance(v, dict) or set(v) - _CORS_KEYS:
        raise InvalidParameter(f"{where} must be a table with some of "
                               f"{', '.join(sorted(_CORS_KEYS))}")
    out: dict[str, Any] = {}
    for k in ("allow_origins", "allow_methods", "allow_headers", "expose_headers"):
        items = v.get(k, [])
        if (not isinstance(items, list) or len(items) > 100
                or not all(isinstance(i, str) and 0 < len(i) <= 253 for i in items)):
            raise InvalidParameter(f"{where}.{k} must be a list of strings")
        form = _ORIGIN_RE if k == "allow_origins" else _TOKEN_RE
        bad = next((i for i in items if not form.fullmatch(i)), None)  # `$` passes a "\n"
        if bad is not None:
            raise InvalidParameter(f"{where}.{k}: {bad[:80]!r} is not "
                                   f"{'an origin' if form is _ORIGIN_RE else 'an HTTP token'}"
                                   " (it is sent as a header value)")
        out[k] = ([i.rstrip("/").lower() for i in items] if k == "allow_origins"
                  else [i.upper() for i in items] if k == "allow_methods"
                  else [i.lower() for i in items])
    age = v.get("max_age", 0)
    if isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= 86400:
        raise InvalidParameter(f"{where}.max_age must be 0 to 86400 seconds")
    out["max_age"] = age
    cred = v.get("allow_credentials", False)
    if not isinstance(cred, bool):
        raise InvalidParameter(f"{where}.allow_credentials must be true or false")
    if cred and "*" in out["allow_origins"]:  # as API Gateway: it would let every site read
        raise InvalidParameter(f"{where}: allow_credentials cannot be used with the origin '*' "
                               "(every site could read credentialed answers): name the origins")
    out["allow_credentials"] = cred
    return out


def _jwt(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict) or set(v) - {"issuer", "audiences", "jwks"}:
        raise _fail("jwt must be { issuer = \"...\", audiences = [...], jwks = \"path or URL\" }")
    issuer, audiences, jwks = v.get("issuer"), v.get("audiences", []), v.get("jwks")
    if not isinstance(issuer, str) or not issuer:
        raise _fail("jwt.issuer must be the tokens' `iss`")
    if (not isinstance(audiences, list) or not audiences
            or not all(isinstance(a, str) and a for a in audiences)):
        raise _fail("jwt.audiences must be a non-empty list of accepted `aud` values")
    if not isinstance(jwks, str) or not (jwks.startswith(("http://", "https://", "/"))):
        raise _fail("jwt.jwks must be an absolute file path or an http(s) URL of a JWKS")
    return {"issuer": issuer, "audiences": audiences, "jwks": jwks}


def validate_http(v: Any) -> dict[str, Any]:
    """The `[http]` table, normalised: every route carries its own auth, limits and version."""
    if not isinstance(v, dict):
        raise _fail("must be a table")
    known = {"routes", "auth", "jwt", "cors", "payload_version", "max_body", "rate_limit",
             "stage_variables", "stage"}
    if set(v) - known:
        raise _fail(f"unknown key(s) {', '.join(sorted(set(v) - known))} "
                    f"(known: {', '.join(sorted(known))})")
    auth = _auth(v.get("auth", "none"), "")
    version = v.get("payload_version", "2.0")
    if version not in PAYLOAD_VERSIONS:
        raise _fail(f"payload_version must be \"2.0\" or \"1.0\", got {version!r}")
    max_body = _max_body(v.get("max_body", MAX_BODY), "")
    rate = _rate(v.get("rate_limit"), "")
    stage_vars = v.get("stage_variables", {})
    if (not isinstance(stage_vars, dict) or len(stage_vars) > 64
            or not all(_STAGE_VAR_RE.match(k) and isinstance(x, str) and len(x) <= 2048
                       for k, x in stage_vars.items())):
        raise _fail("stage_variables must be a table of name = \"value\" (names: letters, "
                    "digits, _)")
    stage = v.get("stage", "$default")
    if not isinstance(stage, str) or not re.match(r"^\$?[A-Za-z0-9_-]{1,64}$", stage):
        raise _fail(f"stage must be a name, got {stage!r}")
    raw_routes = v.get("routes", [])
    if not isinstance(raw_routes, list) or len(raw_routes) > MAX_ROUTES:
        raise _fail(f"routes must be a list of at most {MAX_ROUTES} routes")
    routes: list[dict[str, Any]] = []
    shapes: dict[str, str] = {}
    for r in raw_routes:
        if isinstance(r, str):
            r = {"route": r}
        if not isinstance(r, dict) or "route" not in r or set(r) - {
                "route", "auth", "payload_version", "max_body", "rate_limit"}:
            raise _fail("each route is 'METHOD /path' or { route = 'METHOD /path', auth, "
                        "payload_version, max_body, rate_limit }")
        key = " ".join(r["route"].split()) if isinstance(r["route"], str) else r["route"]
        where = f"route {key!r}: "
        s = shape(key)
        if s in shapes:
            raise _fail(f"routes {shapes[s]!r} and {key!r} are the same route")
        shapes[s] = key
        rv = r.get("payload_version", version)
        if rv not in PAYLOAD_VERSIONS:
            raise _fail(f"{where}payload_version must be \"2.0\" or \"1.0\"")
        routes.append({"key": key, "auth": _auth(r.get("auth", auth), where),
                       "payload_version": rv,
                       "max_body": _max_body(r.get("max_body", max_body), where),
                       "rate_limit": _rate(r.get("rate_limit", rate), where)})
    out: dict[str, Any] = {"routes": routes, "stage": stage, "stage_variables": dict(stage_vars)}
    if "cors" in v:
        out["cors"] = validate_cors(v["cors"])
    if any(r["auth"] == "jwt" for r in routes) or "jwt" in v:
        if "jwt" not in v:
            raise _fail("auth = \"jwt\" needs a [http.jwt] table (issuer, audiences, jwks)")
        out["jwt"] = _jwt(v["jwt"])
    return out


# -- the table ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One route of one function, ready to serve."""

    function: str
    key: str  # "GET /users/{id}", the routeKey of events
    method: str
    auth: str
    payload_version: str
    max_body: int
    rate: dict[str, float] | None
    cors: dict[str, Any] | None
    jwt: dict[str, Any] | None
    stage: str
    stage_variables: dict[str, str]
    literal: tuple[str, ...] = ()  # segments; parameters are None in `pattern`
    pattern: tuple[tuple[str, str | None, bool], ...] = ()  # (literal, param name, greedy)
    qualifier: str | None = None  # function URLs: the alias they invoke
    url_auth: str = ""  # function URLs: "NONE" or "AWS_IAM"
    kind: str = "route"  # "route" | "url"


@dataclass(slots=True)
class Match:
    entry: Entry
    params: dict[str, str] = field(default_factory=dict)


def _rank(e: Entry) -> tuple:
    """Sort key: more specific first (literal < param < greedy per segment, method < ANY)."""
    kinds = tuple(2 if greedy else 1 if name else 0 for _, name, greedy in e.pattern)
    return (e.method == DEFAULT_KEY, kinds, -len(e.pattern), e.method == "ANY", e.function)


class Table:
    """Every function's routes and URLs, compiled; rebuilt when the registry changes."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, str], Entry] = {}  # (method, path) of literal routes
        self.patterns: list[Entry] = []  # routes with parameters, most specific first
        self.default: Entry | None = None
        self.urls: dict[str, Entry] = {}  # url id (lower case) -> function URL
        self.entries: list[Entry] = []
        self.conflicts: list[str] = []  # routes dropped at build time (two nodes raced)

    @classmethod
    def build(cls, functions: dict[str, Any]) -> Table:
        t = cls()
        seen: dict[str, str] = {}
        for name in sorted(functions):
            latest = functions[name].latest
            http = getattr(latest, "http", None) or {}
            for r in http.get("routes", []):
                s = shape(r["key"])
                if s in seen:  # refused at deploy; possible only if two nodes raced
                    t.conflicts.append(f"{r['key']} of {name} (taken by {seen[s]})")
                    continue
                seen[s] = name
                t._add(name, r, http)
            for qualifier, url in sorted((getattr(latest, "urls", None) or {}).items()):
                t._add_url(name, qualifier or None, url)
        t.patterns.sort(key=_rank)
        return t

    def _add(self, name: str, r: dict[str, Any], http: dict[str, Any]) -> None:
        method, segments = parse_key(r["key"])
        pattern = []
        for seg in segments:
            m = _PARAM_RE.match(seg)
            pattern.append((seg, m.group(1), bool(m.group(2))) if m else (seg, None, False))
        e = Entry(name, r["key"], method, r["auth"], r["payload_version"], r["max_body"],
                  r["rate_limit"], http.get("cors"), http.get("jwt"), http.get("stage", "$default"),
                  http.get("stage_variables") or {}, tuple(segments), tuple(pattern))
        self.entries.append(e)
        if method == DEFAULT_KEY:
            self.default = e
        elif all(p is None for _, p, _ in pattern):
            self.exact[(method, "/" + "/".join(segments))] = e
        else:
            self.patterns.append(e)

    def _add_url(self, name: str, qualifier: str | None, url: dict[str, Any]) -> None:
        e = Entry(name, DEFAULT_KEY, "ANY", "none", "2.0", MAX_BODY, None, url.get("cors"), None,
                  "$default", {}, qualifier=qualifier, url_auth=url.get("auth_type", "NONE"),
                  kind="url")
        self.urls[url_id(name, qualifier).lower()] = e
        self.entries.append(e)

    def match(self, method: str, path: str) -> Match | None:
        """The route for a request at the root (None: not a route's; dayfly's APIs answer)."""
        first = path[1:].split("/", 1)[0]
        if first in RESERVED or path == "/":
            return None
        e = self.exact.get((method, path)) or self.exact.get(("ANY", path))
        if e is not None:
            return Match(e)
        if self.patterns:
            segments = path[1:].split("/")
            for e in self.patterns:
                params = _match(e, method, segments)
                if params is not None:
                    return Match(e, params)
        if self.default is not None:
            return Match(self.default)
        return None


def _match(e: Entry, method: str, segments: list[str]) -> dict[str, str] | None:
    if e.method != "ANY" and e.method != method:
        return None
    pattern = e.pattern
    greedy = pattern[-1][2]
    if len(segments) != len(pattern) and not (greedy and len(segments) >= len(pattern)):
        return None
    params = {}
    for i, (lit, name, is_greedy) in enumerate(pattern):
        if is_greedy:
            rest = "/".join(segments[i:])
            if not rest:
                return None
            params[name or ""] = rest
            return params
        seg = segments[i]
        if name is None:
            if seg != lit:
                return None
        elif not seg:
            return None
        else:
            params[name] = seg
    return params


def url_id(function: str, qualifier: str | None) -> str:
    """The host label and path segment of a function URL: `fn`, or `fn--alias`."""
    return f"{function}--{qualifier}" if qualifier else function


def check_conflicts(functions: dict[str, Any], name: str, http: dict[str, Any] | None) -> None:
    """Refuse (409) routes another function already serves, naming it."""
    if not http:
        return
    mine = {shape(r["key"]): r["key"] for r in http.get("routes", [])}
    for other in sorted(functions):
        if other == name:
            continue
        theirs = getattr(functions[other].latest, "http", None) or {}
        for r in theirs.get("routes", []):
            s = shape(r["key"])
            if s in mine:
                raise ResourceConflict(
                    f"route {mine[s]!r} conflicts with route {r['key']!r} of function "
                    f"{other!r}; remove it there first or choose another path")
