"""One instance: import the handler once (init), then receive, call and reply until the host hangs up."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
import types

from . import protocol, streaming
from .buckets import Buckets
from .context import LambdaContext
from .web import ASGIApp, WSGIApp

_STREAMS = frozenset({types.GeneratorType, types.AsyncGeneratorType})  # a handler that streams


class _Call:
    """One invocation in flight in an instance with `concurrency` above 1: its frames carry
    `q` (its request id) so the host can tell them apart, and its log budget is its own."""

    __slots__ = ("budget", "rid", "tag")

    def __init__(self, rid: str, limit: int) -> None:
        self.rid = rid
        self.tag = {"q": rid}
        self.budget = LogBudget(limit)


# the invocation the running code serves (tasks and to_thread calls inherit it); None when
# the instance serves one at a time, or for code outside any invocation (its logs go untagged)
_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("dayfly_call", default=None)


class Channel:
    """The instance end of its host channel; frames are sent whole under one lock."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, kind: int, meta: dict | None = None, payload: bytes = b"") -> None:
        frame = protocol.encode(kind, meta, payload)
        with self.lock:
            self.sock.sendall(frame)


class LogBudget:
    """Bytes of log output one invocation may still send; past it, one notice and silence."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def reset(self) -> None:
        self.left = self.limit


class LogWriter(io.TextIOBase):
    """stdout/stderr of the handler: every write becomes a LOG frame, so logs survive crashes."""

    def __init__(self, channel: Channel, name: str, budget: LogBudget) -> None:
        self.channel = channel
        self.name = name
        self.budget = budget

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        call = _CALL.get()
        budget = self.budget if call is None else call.budget
        if not s or budget.left <= 0:
            return len(s)
        data = s.encode("utf-8", "replace")
        if len(data) > budget.left:
            data = data[: budget.left] + (
                f"\n[dayfly: log output truncated at {budget.limit} bytes]\n".encode())
            budget.left = 0
        else:
            budget.left -= len(data)
        self.channel.send(protocol.LOG, None if call is None else call.tag, data)
        return len(s)


class _LambdaFormatter(logging.Formatter):
    """`[LEVEL]\\t<iso time>\\t<request id>\\t<message>` like AWS's Python runtime."""

    request_id = ""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = super().format(record)
        call = _CALL.get()
        rid = self.request_id if call is None else call.rid
        return f"[{record.levelname}]\t{stamp}.{int(record.msecs):03d}Z\t{rid}\t{msg}"


def _error(exc: BaseException, skip: int = 1) -> dict:
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None:
            tb = tb.tb_next
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_list(traceback.extract_tb(tb)),
    }


def _init_error(handler: str, exc: BaseException) -> dict:
    """Lambda's names and messages for a handler that cannot be loaded."""
    module = handler.rpartition(":" if ":" in handler else ".")[0]
    if isinstance(exc, SyntaxError):
        where = f"{os.path.basename(exc.filename or '?')}, line {exc.lineno}"
        return {"errorType": "Runtime.UserCodeSyntaxError",
                "errorMessage": f"Syntax error in module '{module}': {exc.msg} ({where})",
                "stackTrace": [f'  File "{exc.filename}" Line {exc.lineno}\n'
                               f'    {(exc.text or "").strip()}\n']}
    if isinstance(exc, ImportError) and getattr(exc, "_dayfly_top", False):
        return {"errorType": "Runtime.ImportModuleError",
                "errorMessage": f"Unable to import module '{module}': {exc}", "stackTrace": []}
    err = _error(exc, skip=2)
    if isinstance(exc, ImportError):
        err["errorType"] = "Runtime.ImportModuleError"
        err["errorMessage"] = f"Unable to import module '{module}': {exc}"
    return err


def _tasks() -> int:
    """Processes and threads in this instance's pid namespace (it sees only its own)."""
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                n += len(os.listdir(f"/proc/{pid}/task"))
    return n


def _children_left() -> bool:
    """Reap the handler's exited children (zombies hold pids); whether any still run.

    One waitpid when there are none (~1 us). The linux-tier instance is its pid namespace's
    init, so orphaned grandchildren are its children too."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _forget(calls: dict, rid: str, _: object) -> None:
    calls.pop(rid, None)


class HandlerNotFound(Exception):
    pass


def load_handler(spec: str):
    """Import `module.function` (or `dir/module.function`, or `module:app`) and return the
    callable."""
    module_path, _, attr = spec.rpartition(":" if ":" in spec else ".")
    if not module_path or not attr:
        raise HandlerNotFound(f"Bad handler '{spec}': expected module.function")
    module_name = module_path.replace("/", ".")
    if importlib.util.find_spec(module_name.split(".")[0]) is None:
        exc = ModuleNotFoundError(f"No module named '{module_name}'")
        exc._dayfly_top = True  # type: ignore[attr-defined]
        raise exc
    module = importlib.import_module(module_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise HandlerNotFound(f"Handler '{attr}' missing on module '{module_name}'")
    return fn


class _Output:
    """An instance's channel (its socket set at start), log budget, stdout/stderr writers and
    log handler: made once in the zygote by `prepare`, shared until an instance writes to them."""

    def __init__(self) -> None:
        self.channel = Channel(None)  # type: ignore[arg-type]
        self.budget = LogBudget(0)
        self.formatter = _LambdaFormatter()
        self.stdout = LogWriter(self.channel, "<stdout>", self.budget)
        self.stderr = LogWriter(self.channel, "<stderr>", self.budget)
        self.handler = logging.StreamHandler(self.stdout)
        self.handler.setFormatter(self.formatter)


_OUTPUT: _Output | None = None


def prepare() -> None:
    """In the zygote: make the objects every instance's output goes through."""
    global _OUTPUT
    _OUTPUT = _Output()


class Instance:
    """The receive/call/reply loop."""

    def __init__(self, sock: socket.socket, spec: dict) -> None:
        self.sock = sock
        self.spec = spec
        self.env = dict(os.environ)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.max_output = int(spec.get("max_output_bytes", 6 * 1024 * 1024))
        self.memory_mb = int(spec.get("memory_mb", 128))
        self.nproc = int(spec.get("nproc") or 0)
        out = _OUTPUT or _Output()
        self.channel, self.formatter, self.budget, self.output = (out.channel, out.formatter,
                                                                  out.budget, out)
        self.channel.sock = sock
        self.budget.limit = self.budget.left = self.max_output
        self.buckets = Buckets(self.channel) if spec.get("buckets") else None  # bindings
        self.kind = spec.get("kind") or "function"  # or "asgi", "wsgi": a web app (runtime/web.py)
        self.web: ASGIApp | WSGIApp | None = None
        self.concurrency = int(spec.get("concurrency") or 1)  # invocations served at once

    def init(self, t_start_ns: int) -> None:
        """Wire stdout/logging, import the handler and say READY (or INIT_ERROR and exit).

        The cycle collector is off during init: its passes would write to objects shared with
        the zygote (copy-on-write) for no gain in a process this young; it is on again before
        the first invocation.
        """
        gc.disable()
        self.wire_output()
        try:
            self.handler = load_handler(self.spec["handler"])
        except HandlerNotFound as exc:
            self._die_at_init({"errorType": "Runtime.HandlerNotFound", "errorMessage": str(exc),
                               "stackTrace": []})
        except MemoryError:
            self._die_at_init({"errorType": "Runtime.OutOfMemory",
                               "errorMessage": f"out of memory (limit {self.memory_mb} MiB)",
                               "stackTrace": []})
        except BaseException as exc:
            self._die_at_init(_init_error(self.spec["handler"], exc))
        self.is_async = inspect.iscoroutinefunction(self.handler)
        if self.concurrency > 1 and self.kind != "asgi" and not self.is_async:
            self._die_at_init({"errorType": "Runtime.ConcurrencyUnsupported", "stackTrace": [],
                               "errorMessage": f"concurrency = {self.concurrency} needs kind = "
                                               "\"asgi\" or an async def handler"})
        if self.kind == "wsgi":
            self.web = WSGIApp(self.handler)
        elif self.kind == "asgi":
            self.loop = asyncio.new_event_loop()
            self.web = ASGIApp(self.handler, self.loop)
            try:
                self.web.startup()
            except BaseException as exc:
                err = _error(exc, skip=0)
                err["errorType"] = "Runtime.LifespanStartupFailed"
                self._die_at_init(err)
        gc.enable()
        self.channel.send(protocol.READY, {"pid": os.getpid(), "start_ns": t_start_ns,
                                           "ready_ns": time.monotonic_ns()})

    def wire_output(self) -> None:
        """stdout, stderr and the root logger write LOG frames."""
        sys.stdout, sys.stderr = self.output.stdout, self.output.stderr
        root = logging.root
        root.handlers[:] = [self.output.handler]
        if root.level != logging.WARNING:  # the default; setting it again would only clear
            root.setLevel(logging.WARNING)  # every logger's cache, which is still right

    def _die_at_init(self, err: dict) -> None:
        self.channel.send(protocol.INIT_ERROR, None, json.dumps(err).encode())
        os._exit(1)

    def serve(self) -> None:
        if self.concurrency > 1:
            self._serve_shared()
        while True:
            try:
                kind, meta, payload = protocol.read(self.sock)
            except (EOFError, OSError):
                if isinstance(self.web, ASGIApp):  # retired: the app's lifespan shutdown
                    self.web.shutdown()
                os._exit(0)
            if kind == protocol.INVOKE:
                self.invoke(meta, payload)

    def invoke(self, meta: dict, payload: bytes) -> None:
        rid = meta["id"]
        self.formatter.request_id = rid
        self.budget.reset()
        if meta.get("trace"):
            os.environ["_X_AMZN_TRACE_ID"] = meta["trace"]
        else:  # not the previous invocation's trace
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        cc = meta.get("cc")
        ctx = LambdaContext(self.env, rid, meta["deadline"], meta["arn"],
                            json.loads(cc) if cc else None, meta.get("trace"),
                            meta.get("idem") or rid, self.buckets)
        if self.buckets is not None:
            self.buckets._begin()
        t0 = time.perf_counter_ns()
        fatal = False
        try:
            event = json.loads(payload) if payload else {}
            if self.web is not None:
                answer = self._answer(meta)
                self.web.serve(event, ctx, answer)
                kind, body = protocol.RESULT, answer.finish()
            else:
                if self.is_async:
                    if self.loop is None:
                        self.loop = asyncio.new_event_loop()
                    out = self.loop.run_until_complete(self.handler(event, ctx))
                else:
                    out = self.handler(event, ctx)
                kind = protocol.RESULT
                if type(out) in _STREAMS:
                    body = self._stream(out, meta)
                else:
                    try:
                        body = json.dumps(out).encode()
                    except (TypeError, ValueError) as exc:
                        kind, body = protocol.ERROR, json.dumps(
                            {"errorMessage": f"Unable to marshal response: {exc}",
                             "errorType": "Runtime.MarshalError", "requestId": rid,
                             "stackTrace": []}).encode()
        except BaseException as exc:
            kind = protocol.ERROR
            fatal, body = self._failed(exc, rid)
        if self.buckets is not None:
            self.buckets._end()  # before the reply: no answer may follow it on the channel
        self._reply(kind, body, time.perf_counter_ns() - t0, fatal, rid, None)

    def _failed(self, exc: BaseException, rid: str) -> tuple[bool, bytes]:
        """An invocation's exception as its ERROR payload; whether the instance must exit."""
        if isinstance(exc, streaming.TooLarge):
            return False, json.dumps(
                {"errorMessage": str(exc), "errorType": "Function.ResponseSizeTooLarge",
                 "requestId": rid, "stackTrace": []}).encode()
        if isinstance(exc, MemoryError):
            return True, json.dumps({"errorMessage": f"out of memory (limit {self.memory_mb} MiB)",
                                     "errorType": "Runtime.OutOfMemory", "requestId": rid,
                                     "stackTrace": []}).encode()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return True, json.dumps(
                {"errorMessage": f"Runtime exited: {type(exc).__name__}({exc})",
                 "errorType": "Runtime.ExitError", "requestId": rid,
                 "stackTrace": []}).encode()
        err = _error(exc)
        err["requestId"] = rid
        print(f"[ERROR] {err['errorType']}: {exc}\nTraceback (most recent call last):\n"
              f"{''.join(err['stackTrace'])}", file=sys.stderr, end="")
        return False, json.dumps(err).encode()

    def _reply(self, kind: int, body: bytes, duration_ns: int, fatal: bool, rid: str,
               tag: dict | None) -> None:
        """Send an invocation's RESULT or ERROR (`tag`: its `q`, in a shared instance); exit
        after it when the instance must not serve again."""
        if kind == protocol.RESULT and len(body) > self.max_output:
            kind, body = protocol.ERROR, json.dumps(
                {"errorMessage": f"Response payload size ({len(body)} bytes) exceeded maximum "
                                 f"allowed payload size ({self.max_output} bytes).",
                 "errorType": "Function.ResponseSizeTooLarge", "requestId": rid,
                 "stackTrace": []}).encode()
        if self.nproc and _tasks() >= self.nproc:  # rootless: no cgroup counts refusals
            self.channel.send(protocol.LOG, None, (
                f"dayfly: process limit reached ({self.nproc} processes and threads); "
                "new ones were refused\n").encode())
        # work nobody waits for, holding pids: retire, never reuse (in a shared instance
        # another invocation's children may still be at work: only reaped)
        if _children_left() and tag is None:
            fatal = True
            self.channel.send(protocol.LOG, None, (
                b"dayfly: the handler left child processes running; this instance is retired "
                b"and they are killed (the next invocation gets a fresh instance)\n"))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        meta = {"ns": duration_ns, "rss": rss}
        if tag is not None:
            meta.update(tag)
        if fatal:
            meta["exit"] = 1
        self.channel.send(kind, meta, body)
        if fatal:
            with contextlib.suppress(OSError):  # its process group: all but what left it
                os.killpg(0, signal.SIGKILL)  # (as a pid namespace's init it survives this)
            os._exit(1)

    def _answer(self, meta: dict, tag: dict | None = None) -> streaming.Answer:
        """Sent as it is made when the caller streams (`st`), else kept for the RESULT."""
        if meta.get("st"):
            send = self.channel.send
            if tag is not None:  # a shared instance's CHUNKs say whose they are
                def send(kind: int, meta: dict | None = None, payload: bytes = b"") -> None:
                    self.channel.send(kind, {**(meta or {}), **tag}, payload)
            return streaming.Answer(send, streaming.STREAM_LIMIT)
        return streaming.Answer(None, self.max_output)

    # -- several invocations at once (concurrency > 1) ---------------------------------------

    def _serve_shared(self) -> None:
        """Serve up to `concurrency` invocations at once, each a task on the event loop (the
        host never sends more, scheduler/pool.py); each reply goes out when it is ready, tagged
        with its `q`. CANCEL stops one (its deadline passed). Never returns."""
        loop = self.loop or asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        calls: dict[str, asyncio.Task] = {}
        buf = bytearray()
        fd = self.sock.fileno()
        size = protocol.PREFIX.size

        def readable() -> None:
            try:
                data = self.sock.recv(256 * 1024, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:  # the host hung up: retired
                loop.remove_reader(fd)
                loop.stop()
                return
            buf.extend(data)
            while len(buf) >= size:
                kind, mlen, plen = protocol.PREFIX.unpack_from(buf)
                end = size + mlen + plen
                if len(buf) < end:
                    return
                meta = json.loads(buf[size : size + mlen]) if mlen else {}
                payload = bytes(buf[size + mlen : end])
                del buf[:end]
                if kind == protocol.INVOKE:
                    rid = meta["id"]
                    calls[rid] = loop.create_task(self._invoke_shared(meta, payload))
                    calls[rid].add_done_callback(functools.partial(_forget, calls, rid))
                elif kind == protocol.CANCEL:
                    running = calls.get(meta.get("q", ""))
                    if running is not None:
                        running.cancel()

        loop.add_reader(fd, readable)
        loop.run_forever()
        if isinstance(self.web, ASGIApp):
            self.web.shutdown()
        os._exit(0)

    async def _invoke_shared(self, meta: dict, payload: bytes) -> None:
        """One invocation of a shared instance: `invoke`, on the loop, its logs its own."""
        rid = meta["id"]
        call = _Call(rid, self.max_output)
        _CALL.set(call)  # this task's context: its prints and log records are tagged `q`
        if meta.get("trace"):  # the process's environment: the latest invocation's
            os.environ["_X_AMZN_TRACE_ID"] = meta["trace"]
        cc = meta.get("cc")
        ctx = LambdaContext(self.env, rid, meta["deadline"], meta["arn"],
                            json.loads(cc) if cc else None, meta.get("trace"),
                            meta.get("idem") or rid, None)
        t0 = time.perf_counter_ns()
        fatal = False
        kind = protocol.RESULT
        try:
            event = json.loads(payload) if payload else {}
            answer = self._answer(meta, call.tag)
            if self.web is not None:
                await self.web.serve_async(event, ctx, answer)  # type: ignore[union-attr]
                body = answer.finish()
            else:
                out = await self.handler(event, ctx)
                if type(out) is types.AsyncGeneratorType:
                    await streaming.drain_async(out, answer)
                    body = answer.finish()
                elif type(out) is types.GeneratorType:
                    streaming.drain(out, answer)
                    body = answer.finish()
                else:
                    try:
                        body = json.dumps(out).encode()
                    except (TypeError, ValueError) as exc:
                        kind, body = protocol.ERROR, json.dumps(
                            {"errorMessage": f"Unable to marshal response: {exc}",
                             "errorType": "Runtime.MarshalError", "requestId": rid,
                             "stackTrace": []}).encode()
        except asyncio.CancelledError:  # its deadline passed; the host answered already
            kind, body = protocol.ERROR, json.dumps(
                {"errorMessage": "cancelled at its deadline", "errorType": "Sandbox.Timedout",
                 "requestId": rid, "stackTrace": []}).encode()
        except BaseException as exc:
            kind = protocol.ERROR
            fatal, body = self._failed(exc, rid)
        self._reply(kind, body, time.perf_counter_ns() - t0, fatal, rid, call.tag)

    def _stream(self, gen, meta: dict) -> bytes:
        """What a generator handler yields, streamed or kept; the RESULT payload."""
        answer = self._answer(meta)
        if type(gen) is types.GeneratorType:
            streaming.drain(gen, answer)
        else:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(streaming.drain_async(gen, answer))
        return answer.finish()


def rehearse(times: int, module: str = "colorsys") -> None:
    """In the zygote (runtime/prefork.py): an instance's start-up paths on a socket pair, output
    wired and restored, a small standard-library module imported and forgotten `times` times."""
    ours, theirs = socket.socketpair()
    root = logging.getLogger()
    saved = sys.stdout, sys.stderr, root.handlers[:], root.level
    try:
        for _ in range(times):
            inst = Instance(ours, {"handler": f"{module}.hls_to_rgb"})
            inst.wire_output()
            sys.modules.pop(module, None)
            inspect.iscoroutinefunction(load_handler(inst.spec["handler"]))
            inst.channel.send(protocol.READY, {"pid": 1, "start_ns": 0, "ready_ns": 0})
            theirs.sendall(protocol.encode(protocol.INVOKE, {"id": "-"}, b"{}"))
            protocol.read(ours)
            theirs.recv(1 << 16)
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        root.handlers[:] = saved[2]
        root.setLevel(saved[3])
        sys.modules.pop(module, None)
        if _OUTPUT is not None:
            _OUTPUT.channel.sock = None  # type: ignore[assignment]
        ours.close()
        theirs.close()
