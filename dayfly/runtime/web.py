"""ASGI and WSGI applications as functions: an API Gateway (payload 2.0 or 1.0) or function URL
event becomes one HTTP request to the app, and its response becomes the answer (runtime/streaming.py).

The app object is loaded once per instance; an ASGI app's lifespan startup runs at init and its
shutdown when the host hangs up. An exception the app raises before its response is complete
is a function error (API Gateway answers 502); after it (Starlette's ServerErrorMiddleware sends
its 500, then raises), the app's own response stands and the traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import base64
import io
import sys
import traceback
from urllib.parse import unquote, unquote_to_bytes, urlencode

from .streaming import Answer


class Request:
    """The HTTP request an event describes."""

    __slots__ = ("body", "client", "headers", "method", "path", "query")

    def __init__(self, event: object) -> None:
        if not isinstance(event, dict):
            raise ValueError("a web app function takes an API Gateway or function URL event")
        ctx = event.get("requestContext") or {}
        http = ctx.get("http") if isinstance(ctx, dict) else None
        headers: list[tuple[str, str]] = []
        if isinstance(http, dict) and "rawPath" in event:  # payload 2.0, function URLs
            self.method = str(http.get("method") or "GET").upper()
            self.path = str(event["rawPath"] or "/")
            self.query = str(event.get("rawQueryString") or "")
            self.client = str(http.get("sourceIp") or "")
            headers = [(str(k).lower(), str(v)) for k, v in (event.get("headers") or {}).items()]
            cookies = event.get("cookies") or []
            if cookies:
                headers = [h for h in headers if h[0] != "cookie"]
                headers.append(("cookie", "; ".join(str(c) for c in cookies)))
        elif "httpMethod" in event:  # payload 1.0 (the REST API proxy shape)
            self.method = str(event["httpMethod"]).upper()
            self.path = str(event.get("path") or "/")
            multi = event.get("multiValueQueryStringParameters")
            self.query = urlencode(multi or event.get("queryStringParameters") or {},
                                   doseq=bool(multi))
            ident = ctx.get("identity") if isinstance(ctx, dict) else None
            self.client = str((ident or {}).get("sourceIp") or "")
            mheaders = event.get("multiValueHeaders")
            if mheaders:
                headers = [(str(k).lower(), str(v)) for k, vs in mheaders.items() for v in vs]
            else:
                headers = [(str(k).lower(), str(v))
                           for k, v in (event.get("headers") or {}).items()]
        else:
            raise ValueError("a web app function takes an API Gateway or function URL event "
                             "(rawPath and requestContext.http, or httpMethod and path)")
        self.headers = headers
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            self.body = base64.b64decode(body)
        else:
            self.body = body.encode() if isinstance(body, str) else bytes(body)

    def header(self, name: str, default: str = "") -> str:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def server(self) -> tuple[str, str, int]:
        """Scheme, host and port the client addressed."""
        scheme = self.header("x-forwarded-proto", "https").split(",")[0].strip() or "https"
        host = self.header("host", "localhost")
        name, sep, port = host.rpartition(":")
        if sep and name and port.isdigit():  # "[::1]" alone splits into "[:" and "1]"
            return scheme, name, int(port)
        fwd = self.header("x-forwarded-port")
        return scheme, host, int(fwd) if fwd.isdigit() else (443 if scheme == "https" else 80)


def _head(answer: Answer, status: int, pairs, flush: bool) -> None:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for k, v in pairs:
        name = (k.decode("latin-1") if isinstance(k, bytes) else str(k)).lower()
        value = v.decode("latin-1") if isinstance(v, bytes) else str(v)
        if name == "set-cookie":
            cookies.append(value)
        elif name in headers:
            headers[name] += "," + value
        else:
            headers[name] = value
    answer.set_head(int(status), headers, cookies, flush=flush)


class ASGIApp:
    """An ASGI 3 application run on the instance's event loop."""

    def __init__(self, app, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.state: dict = {}
        self.lifespan: asyncio.Queue | None = None
        self.stopped: asyncio.Future | None = None

    def startup(self) -> None:
        """Run the lifespan startup; raise if the app says it failed. An app that does not
        speak lifespan (raises at once) is served without one, as uvicorn does."""
        self.loop.run_until_complete(self._startup())

    async def _startup(self) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        queue.put_nowait({"type": "lifespan.startup"})
        started = self.loop.create_future()
        stopped = self.loop.create_future()

        async def send(msg: dict) -> None:
            kind = msg["type"]
            if kind == "lifespan.startup.complete" and not started.done():
                started.set_result(None)
            elif kind == "lifespan.startup.failed" and not started.done():
                started.set_exception(RuntimeError(f"lifespan startup failed: "
                                                   f"{msg.get('message', '')}"))
            elif kind.startswith("lifespan.shutdown") and not stopped.done():
                stopped.set_result(None)

        async def run() -> None:
            try:
                await self.app({"type": "lifespan", "state": self.state,
                                "asgi": {"version": "3.0", "spec_version": "2.0"}},
                               queue.get, send)
            except BaseException:
                if started.done():  # failed during its own shutdown: nothing to do
                    traceback.print_exc()
            finally:
                if not started.done():
                    started.set_result(None)  # no lifespan support
                if not stopped.done():
                    stopped.set_result(None)

        task = self.loop.create_task(run())
        await started
        if not task.done():
            self.lifespan, self.stopped = queue, stopped

    def shutdown(self, timeout: float = 2.0) -> None:
        """Run the lifespan shutdown (the host hung up: the instance is retired)."""
        if self.lifespan is None or self.stopped is None:
            return
        self.lifespan.put_nowait({"type": "lifespan.shutdown"})
        try:
            self.loop.run_until_complete(asyncio.wait_for(asyncio.shield(self.stopped), timeout))
        except Exception:
            traceback.print_exc()

    def serve(self, event: object, ctx: object, answer: Answer) -> None:
        self.loop.run_until_complete(self._serve(Request(event), event, ctx, answer))

    async def serve_async(self, event: object, ctx: object, answer: Answer) -> None:
        """`serve` on the running loop: one of a shared instance's requests (concurrency > 1)."""
        await self._serve(Request(event), event, ctx, answer)

    async def _serve(self, req: Request, event: object, ctx: object, answer: Answer) -> None:
        scheme, host, port = req.server()
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": req.method, "scheme": scheme,
            "path": unquote(req.path), "raw_path": req.path.encode("latin-1", "replace"),
            "query_string": req.query.encode("latin-1", "replace"), "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1", "replace"))
                        for k, v in req.headers],
            "client": (req.client, 0) if req.client else None, "server": (host, port),
            "state": dict(self.state), "extensions": {}, "aws.event": event, "aws.context": ctx,
        }
        done = self.loop.create_future()
        first = [True]
        complete = [False]

        async def receive() -> dict:
            if first[0]:
                first[0] = False
                return {"type": "http.request", "body": req.body, "more_body": False}
            await done  # the client stays until the response is complete
            return {"type": "http.disconnect"}

        async def send(msg: dict) -> None:
            kind = msg["type"]
            if kind == "http.response.start":
                _head(answer, msg["status"], msg.get("headers") or [], flush=False)
            elif kind == "http.response.body" and not complete[0]:
                if answer.head is None:
                    raise RuntimeError("http.response.body before http.response.start")
                answer.write(bytes(msg.get("body", b"")))
                if not msg.get("more_body", False):
                    complete[0] = True
                    if not done.done():
                        done.set_result(None)

        try:
            await self.app(scope, receive, send)
        except Exception:
            if not complete[0]:
                raise
            traceback.print_exc()  # the app answered (its own 500) and then raised
        finally:
            if not done.done():
                done.set_result(None)
        if answer.head is None:
            raise RuntimeError("the ASGI app returned without sending a response")


class WSGIApp:
    """A WSGI (PEP 3333) application."""

    def __init__(self, app) -> None:
        self.app = app

    def serve(self, event: object, ctx: object, answer: Answer) -> None:
        req = Request(event)
        scheme, host, port = req.server()
        environ: dict = {
            "REQUEST_METHOD": req.method, "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(req.path).decode("latin-1"),
            "QUERY_STRING": req.query, "SERVER_NAME": host, "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": req.client,
            "CONTENT_LENGTH": str(len(req.body)),
            "wsgi.version": (1, 0), "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(req.body), "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "aws.event": event, "aws.context": ctx,
        }
        for k, v in req.headers:
            if k == "content-type":
                environ["CONTENT_TYPE"] = v
            elif k != "content-length":
                key = "HTTP_" + k.upper().replace("-", "_")
                environ[key] = f"{environ[key]},{v}" if key in environ else v
        pending: list = []

        def start_response(status: str, headers: list, exc_info=None):
            if exc_info is not None and answer.started:
                raise exc_info[1].with_traceback(exc_info[2])
            pending[:] = [int(status.split(" ", 1)[0]), headers]
            return write

        def write(data: bytes) -> None:
            if pending:
                _head(answer, pending[0], pending[1], flush=False)
                pending.clear()
            answer.write(bytes(data))

        result = self.app(environ, start_response)
        try:
            for data in result:
                if data:
                    write(data)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if pending:
            _head(answer, pending[0], pending[1], flush=False)
        if answer.head is None:
            raise RuntimeError("the WSGI app returned without calling start_response")
