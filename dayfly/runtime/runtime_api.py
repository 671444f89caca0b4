"""The Lambda Runtime API, for an instance whose function brings its own runtime.

A `provided` function (an executable `bootstrap`: a shell script, a compiled program, or one
that starts AWS's awslambdaric) runs in the forked instance process in place of `Instance`:
this module listens on 127.0.0.1 (a port the kernel picks) in the instance's own network
namespace, starts the bootstrap with `AWS_LAMBDA_RUNTIME_API` naming that address, and relays
over the instance's channel to the host (docs/runtime-protocol.md, "The Lambda Runtime API"):

    GET  /2018-06-01/runtime/invocation/next           waits for INVOKE (the first one: READY)
    POST /2018-06-01/runtime/invocation/{id}/response  RESULT
    POST /2018-06-01/runtime/invocation/{id}/error     ERROR
    POST /2018-06-01/runtime/init/error                INIT_ERROR, then the instance exits

The bootstrap's stdout and stderr become LOG frames. HTTP/1.1 is parsed here by hand: the API
is four requests, and http.server's imports would be paid by every cold start.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import NoReturn

from . import protocol
from .instance import Channel, LogBudget, LogWriter

PREFIX = "/2018-06-01/runtime/"
MAX_HEAD = 64 * 1024  # request line and headers
MAX_ERROR = 1024 * 1024  # an error document (init or invocation)
_REASONS = {100: "Continue", 200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Payload Too Large", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}


class BadRequest(Exception):
    """A request that cannot be read: answered with `status` and the connection closed."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


class Conn:
    """One HTTP/1.1 connection from the runtime (keep-alive; one request at a time)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.read_body = False  # whether the current request's body was read

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def head(self) -> tuple[str, str, dict[str, str]]:
        """Method, path and lower-cased headers of the next request (EOFError at the end)."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise BadRequest(431, "InvalidRequest", "request head too large")
            self._fill()
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(400, "InvalidRequest", "not an HTTP/1.x request line")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadRequest(400, "InvalidRequest", "malformed header line")
            headers[name.lower()] = value.strip()
        if parts[2] == "HTTP/1.0":  # no keep-alive unless asked for
            headers.setdefault("connection", "close")
        return parts[0], parts[1], headers

    def body(self, headers: dict[str, str], limit: int) -> bytes | None:
        """The request body (None when it is larger than `limit`: the connection must close)."""
        self.read_body = True
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            n = 0 if chunked else int(headers.get("content-length", "0"))
        except ValueError:
            raise BadRequest(400, "InvalidRequest", "bad Content-Length") from None
        if n < 0:
            raise BadRequest(400, "InvalidRequest", "bad Content-Length")
        if n > limit:
            return None  # before any 100 Continue: the client need not send it
        if headers.get("expect", "").lower() == "100-continue":
            self.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
        if chunked:
            return self._chunked(limit)
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise BadRequest(400, "InvalidRequest", "bad chunk")
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _chunked(self, limit: int) -> bytes | None:
        out = bytearray()
        while True:
            try:
                size = int(self._line().split(b";")[0], 16)
            except ValueError:
                raise BadRequest(400, "InvalidRequest", "bad chunk size") from None
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return bytes(out)
            if len(out) + size > limit:
                return None
            while len(self.buf) < size + 2:
                self._fill()
            out += self.buf[:size]
            self.buf = self.buf[size + 2:]

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              close: bool = False) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {"Content-Type": "application/json"}).items()]
        if close:
            head.append("Connection: close")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def _doc(kind: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": kind}).encode()


class RuntimeApi:
    """The relay between the bootstrap's HTTP requests and the host channel.

    `lock` guards `ready`, `current` (the request id of the invocation in flight, None when
    idle) and `t0`; only one GET .../next waits at a time (`next_lock`).
    """

    def __init__(self, sock: socket.socket, spec: dict) -> None:
        self.sock = sock
        self.spec = spec
        self.channel = Channel(sock)
        self.max_output = int(spec.get("max_output_bytes", 6 * 1024 * 1024))
        self.budget = LogBudget(self.max_output)
        self.lock = threading.Lock()
        self.next_lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.ready = False
        self.current: str | None = None
        self.t0 = 0
        self.pid = 0
        self.pipes: list[tuple[int, LogWriter, codecs.IncrementalDecoder]] = []

    # -- start -------------------------------------------------------------------------------

    def run(self, t_start: int) -> None:
        """Listen, start the bootstrap, serve until the host hangs up or the bootstrap exits."""
        self.t_start = t_start
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        env = dict(os.environ)
        env["AWS_LAMBDA_RUNTIME_API"] = address
        # the node's Python first, as /var/lang/bin is on Lambda: `python3 -m awslambdaric`
        env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '/usr/bin:/bin')}"
        if self.spec.get("deps_dir"):
            env["PYTHONPATH"] = self.spec["deps_dir"]
        outs = []
        actions = []
        for target, name in ((1, "<stdout>"), (2, "<stderr>")):
            r, w = os.pipe()
            os.set_blocking(r, False)
            outs.append(w)
            actions.append((os.POSIX_SPAWN_DUP2, w, target))
            self.pipes.append((r, LogWriter(self.channel, name, self.budget),
                               codecs.getincrementaldecoder("utf-8")("replace")))
        # the bundle's, else a layer's; /opt is the layers only where the sandbox mounts them
        # (jailed tiers, code at /var/task); in the process tier it is the host's own /opt
        task = self.spec["code_dir"]
        candidates = [f"{task}/bootstrap"] + (["/opt/bootstrap"] if task == "/var/task" else [])
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is None:
            self._die_at_init("Runtime.InvalidEntrypoint",
                              f"Couldn't find valid bootstrap(s): [{' '.join(candidates)}]")
        try:
            self.pid = os.posix_spawn(path, [path], env, file_actions=actions)
        except OSError as exc:
            self._die_at_init("Runtime.InvalidEntrypoint",
                              f"fork/exec {path}: {(exc.strerror or str(exc)).lower()}")
        for w in outs:
            os.close(w)
        threading.Thread(target=self._logs, daemon=True).start()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        self._wait()

    def _die_at_init(self, kind: str, message: str) -> NoReturn:
        self._drain()
        self.channel.send(protocol.INIT_ERROR, None, json.dumps(
            {"errorType": kind, "errorMessage": message, "stackTrace": []}).encode())
        self._exit(1)

    def _exit(self, code: int) -> NoReturn:
        with contextlib.suppress(OSError):  # the bootstrap and what it started (its group)
            os.killpg(0, signal.SIGKILL)
        os._exit(code)

    # -- output ------------------------------------------------------------------------------

    def _logs(self) -> None:
        fds = [r for r, _, _ in self.pipes]
        while fds:
            ready, _, _ = select.select(fds, [], [])
            with self.log_lock:
                for fd in ready:
                    if not self._read(fd):
                        fds.remove(fd)

    def _read(self, fd: int) -> bool:
        """Send what the pipe holds as LOG frames; False at its end. Holds log_lock."""
        writer, decoder = next((w, d) for r, w, d in self.pipes if r == fd)
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            writer.write(decoder.decode(data, final=not data))
            if not data:
                return False

    def _drain(self) -> None:
        """Everything the bootstrap wrote before its last request, sent before the reply to it
        (it wrote before it asked, so it is in the pipes now)."""
        with self.log_lock:
            for fd, _, _ in self.pipes:
                self._read(fd)

    # -- the bootstrap process ---------------------------------------------------------------

    def _wait(self) -> None:
        """Reap children (the bootstrap's orphans too, in a pid namespace); when the bootstrap
        exits the instance ends, as on Lambda, saying why if it was initializing or invoked."""
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                self._exit(1)
            except InterruptedError:
                continue
            if pid == self.pid:
                break
        if os.WIFSIGNALED(status):
            how = f"signal: {signal.strsignal(os.WTERMSIG(status)) or os.WTERMSIG(status)}".lower()
        else:
            how = f"exit status {os.WEXITSTATUS(status)}"
        with self.lock:
            ready, current = self.ready, self.current
        self._drain()
        if not ready:
            self._die_at_init("Runtime.ExitError", f"Runtime exited with error: {how}")
        if current is not None:
            self._reply(protocol.ERROR, json.dumps(
                {"errorType": "Runtime.ExitError", "requestId": current, "stackTrace": [],
                 "errorMessage": f"RequestId: {current} Error: Runtime exited with error: {how}"}
            ).encode(), fatal=True)
        self._exit(0)

    def _rss(self) -> int:
        """Peak resident KiB of the bootstrap (or of this relay, if larger)."""
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        return peak

    def _reply(self, kind: int, body: bytes, fatal: bool = False) -> None:
        meta = {"ns": time.perf_counter_ns() - self.t0, "rss": self._rss()}
        if fatal:
            meta["exit"] = 1
        self.channel.send(kind, meta, body)

    # -- HTTP --------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                if listener.fileno() < 0:  # closed: nothing more to serve
                    return
                raise
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each reply is whole
            threading.Thread(target=self._serve, args=(Conn(conn),), daemon=True).start()

    def _serve(self, conn: Conn) -> None:
        with contextlib.closing(conn.sock):
            while True:
                try:
                    method, path, headers = conn.head()
                    conn.read_body = False
                    status, body, extra = self._route(conn, method, path, headers)
                except (EOFError, OSError):
                    return
                except BadRequest as exc:
                    with contextlib.suppress(OSError):
                        conn.reply(exc.status, _doc(exc.kind, str(exc)), close=True)
                    return
                # a body left unread (a refused request's, or one too large) ends the connection:
                # its bytes must not be taken for the next request
                unread = not conn.read_body and ("transfer-encoding" in headers or
                                                  headers.get("content-length", "0") != "0")
                close = (status == 413 or unread
                         or headers.get("connection", "").lower() == "close")
                try:
                    conn.reply(status, body, extra, close=close)
                except OSError:
                    return
                if close:
                    return

    def _route(self, conn: Conn, method: str, path: str,
               headers: dict[str, str]) -> tuple[int, bytes, dict | None]:
        if not path.startswith(PREFIX):
            return 404, _doc("NotFound", f"no such resource: {path[:200]}"), None
        rest = path[len(PREFIX):].split("?")[0].split("/")
        if rest == ["invocation", "next"]:
            if method != "GET":
                return 405, _doc("MethodNotAllowed", "use GET"), None
            return self._next()
        if rest == ["init", "error"] or (len(rest) == 3 and rest[0] == "invocation"
                                        and rest[2] in ("response", "error")):
            if method != "POST":
                return 405, _doc("MethodNotAllowed", "use POST"), None
            if rest[0] == "init":
                return self._init_error(conn, headers)
            return self._answer(conn, rest[1], rest[2], headers)
        return 404, _doc("NotFound", f"no such resource: {path[:200]}"), None

    def _next(self) -> tuple[int, bytes, dict | None]:
        if not self.next_lock.acquire(blocking=False):
            return 403, _doc("InvalidStateTransition",
                             "another request for the next invocation is waiting"), None
        try:
            with self.lock:
                if self.current is not None:
                    return 403, _doc("InvalidStateTransition",
                                     f"invocation {self.current} has not been answered"), None
                first = not self.ready
                self.ready = True
            self._drain()
            if first:  # init is done when the runtime first asks for work, as on Lambda
                self.channel.send(protocol.READY, {"pid": os.getpid(), "start_ns": self.t_start,
                                                   "ready_ns": time.monotonic_ns()})
            while True:
                try:
                    kind, meta, payload = protocol.read(self.sock)
                except (EOFError, OSError):  # the host hung up: retired or the node stopped
                    self._exit(0)
                if kind == protocol.INVOKE:
                    break
                if kind == protocol.ANSWER:  # nothing asks: no bucket bindings here
                    continue
            rid = str(meta["id"])
            out = {"Content-Type": "application/json", "Lambda-Runtime-Aws-Request-Id": rid,
                   "Lambda-Runtime-Deadline-Ms": str(meta["deadline"]),
                   "Lambda-Runtime-Invoked-Function-Arn": str(meta["arn"])}
            if meta.get("trace"):
                out["Lambda-Runtime-Trace-Id"] = meta["trace"]
            if meta.get("cc"):
                out["Lambda-Runtime-Client-Context"] = meta["cc"]
            if meta.get("ci"):
                out["Lambda-Runtime-Cognito-Identity"] = meta["ci"]
            out = {k: v for k, v in out.items() if v.isprintable()}  # no header splitting
            with self.lock:
                self.current = rid
                self.budget.reset()
                self.t0 = time.perf_counter_ns()
            return 200, payload, out
        finally:
            self.next_lock.release()

    def _answer(self, conn: Conn, rid: str, what: str,
                headers: dict[str, str]) -> tuple[int, bytes, dict | None]:
        with self.lock:
            ours = rid == self.current
        if not ours:  # RAPID's answer for an unknown id and for one already answered alike
            return 400, _doc("InvalidRequestID", "Invalid request ID"), None
        limit = self.max_output if what == "response" else MAX_ERROR
        body = conn.body(headers, limit)
        with self.lock:
            if rid != self.current:  # answered meanwhile, on another connection
                return 400, _doc("InvalidRequestID", "Invalid request ID"), None
            self.current = None
        self._drain()
        if body is None:  # not read: the connection closes after the 413
            if what == "response":
                err = {"errorType": "Function.ResponseSizeTooLarge", "errorMessage":
                       f"Response payload size exceeded maximum allowed payload size "
                       f"({limit} bytes)."}
            else:
                err = _error_doc(None, headers, "Runtime.Unknown")
                err["errorMessage"] = f"error document larger than {limit} bytes"
            self._reply(protocol.ERROR, json.dumps(
                {**err, "requestId": rid, "stackTrace": []}).encode())
            return 413, _doc("RequestEntityTooLarge",
                             f"Exceeded maximum allowed payload size ({limit} bytes)."), None
        if what == "response":
            self._reply(protocol.RESULT, body)
        else:
            err = _error_doc(body, headers, "Runtime.Unknown")
            err["requestId"] = rid
            self._reply(protocol.ERROR, json.dumps(err).encode())
        return 202, b'{"status":"OK"}', None

    def _init_error(self, conn: Conn, headers: dict[str, str]) -> tuple[int, bytes, dict | None]:
        with self.lock:
            if self.ready:
                return 403, _doc("InvalidStateTransition",
                                 "init already finished (the runtime asked for an invocation)"
                                 ), None
        body = conn.body(headers, MAX_ERROR)
        err = _error_doc(body, headers, "Runtime.Unknown")
        conn.reply(202, b'{"status":"OK"}', close=True)
        self._drain()
        self.channel.send(protocol.INIT_ERROR, None, json.dumps(err).encode())
        self._exit(1)


def _error_doc(body: bytes | None, headers: dict[str, str], default: str) -> dict:
    """Lambda's error document from what the runtime posted: its JSON if it is one, else its
    text, typed by Lambda-Runtime-Function-Error-Type."""
    kind = headers.get("lambda-runtime-function-error-type") or default
    doc: dict = {}
    if body:
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                doc = parsed
        if not doc:
            doc = {"errorMessage": body.decode("utf-8", "replace")[:MAX_ERROR]}
    doc.setdefault("errorType", kind)
    doc.setdefault("errorMessage", "")
    doc.setdefault("stackTrace", [])
    return doc


def serve(sock: socket.socket, spec: dict, t_start: int) -> None:
    """In the forked instance: run the function's bootstrap behind the Runtime API."""
    RuntimeApi(sock, spec).run(t_start)
