"""Invocation records and their logs: buffered in memory on the invoke path, written to SQLite
in batches by a background task, bounded by count and age, and tailed live by subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import sqlite3
import time
from collections import deque
from typing import Any

import orjson

from ..scheduler.hooks import Observer
from ..types import FunctionSpec, InvocationRecord, InvokeRequest, InvokeResult
from .db import Database

log = logging.getLogger("dayfly.records")

MAX_LOG_BYTES = 256 * 1024
_COLUMNS = ("request_id", "function", "version", "trigger", "start", "end", "duration_ms",
            "status", "cold", "fork_ms", "init_ms", "max_rss_kb", "error", "output", "init_output",
            "memory_mb", "instance_id", "trace_id", "event", "result", "node")
_ROW = operator.attrgetter(*_COLUMNS)  # a record's row, in one C call (in the flush thread,
# which holds the GIL the event loop needs)
MAX_TRACE = 512  # characters of a trace header kept in the record
PRUNE_EVERY_S = 10.0  # how often the size and age bounds are applied


def _quoted(column: str) -> str:
    return f'"{column}"'  # `end` is a reserved word in PostgreSQL


def invocation_status(result: InvokeResult) -> str:
    """success, timeout, crash or error: the status of a record (and a metrics label)."""
    if result.ok:
        return "success"
    etype = _error_type(result)
    if etype == "Sandbox.Timedout":
        return "timeout"
    if etype in ("Runtime.ExitError", "Runtime.OutOfMemory"):
        return "crash"
    return "error"


def _error_type(result: InvokeResult) -> str | None:
    if result.ok:
        return None
    try:
        return orjson.loads(result.payload).get("errorType")
    except (orjson.JSONDecodeError, AttributeError):
        return "Unknown"


PAYLOAD_PREVIEW = 4096  # bytes of an invocation's event and result kept with its record


def _preview(data: bytes) -> str:
    """The start of a payload, for the dashboard's invocation view (never the whole of a big one)."""
    text = data[:PAYLOAD_PREVIEW].decode("utf-8", "replace")
    return text + f"… [{len(data)} bytes]" if len(data) > PAYLOAD_PREVIEW else text


def _cap(text: str) -> str:
    if len(text) > MAX_LOG_BYTES:
        text = text[:MAX_LOG_BYTES] + f"\n[dayfly: log truncated at {MAX_LOG_BYTES} bytes]\n"
    return text


def format_logs(request_id: str, version: str, memory_mb: int, output: str, init_output: str,
                duration_ms: float, max_rss_kb: int, cold: bool, init_ms: float) -> str:
    """START / the function's output / END / REPORT, as Lambda writes them."""
    if output and not output.endswith("\n"):
        output += "\n"
    if init_output and not init_output.endswith("\n"):
        init_output += "\n"
    # 0: nobody could measure it (an instance gone before it was read); never a made-up 1 MB
    used = f"{max(1, max_rss_kb // 1024)} MB" if max_rss_kb > 0 else "unknown"
    report = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
              f"Billed Duration: {max(1, int(duration_ms + 0.999))} ms\t"
              f"Memory Size: {memory_mb} MB\tMax Memory Used: {used}")
    if cold:
        report += f"\tInit Duration: {init_ms:.2f} ms"
    return (f"{init_output}START RequestId: {request_id} Version: {version}\n{output}"
            f"END RequestId: {request_id}\n{report}\n")


def lambda_log_text(spec: FunctionSpec, req: InvokeRequest, result: InvokeResult) -> str:
    """The log text of one invocation (for `LogType: Tail`)."""
    return format_logs(req.request_id, spec.version, spec.limits.memory_mb,
                       _cap("".join(result.logs)), "".join(result.init_logs), result.duration_ms,
                       result.max_rss_kb, result.cold, result.init_ms)


def row_logs(row: dict[str, Any]) -> str:
    """The log text of a stored record (formatted when read, not on the invoke path)."""
    return format_logs(row["request_id"], row["version"], row.get("memory_mb") or 128,
                       row.get("output") or "", row.get("init_output") or "",
                       row["duration_ms"], row["max_rss_kb"], bool(row["cold"]), row["init_ms"])


class RecordStore(Observer):
    """The scheduler observer that keeps every invocation's record and logs."""

    def __init__(self, db: Database, *, max_records: int = 100_000,
                 max_age_s: float = 7 * 86400.0, flush_interval_s: float = 0.25) -> None:
        self.db = db
        self.max_records = max_records
        self.max_age_s = max_age_s
        self.flush_interval_s = flush_interval_s
        self.node = ""  # this node's id in a cluster, written into every record (the wiring sets it)
        self.pending: deque[InvocationRecord] = deque()
        self.subscribers: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self._pruned_at = 0.0  # monotonic time of the last prune (at most one per PRUNE_EVERY_S)
        # Records are numbered as they arrive; `_written` is how many are on disk (a prefix:
        # `_flush_lock` serialises writes). `written()` waiters hold (number, future).
        self._appended = 0
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._kick = asyncio.Event()  # a waiter wants a write now, not at the next interval
        self._flush_lock = asyncio.Lock()
        self._closing = False

    def after_invoke(self, spec: FunctionSpec, req: InvokeRequest, result: InvokeResult,
                     start: float, end: float) -> None:
        error = None if result.ok else result.payload[:4096].decode("utf-8", "replace")
        rec = InvocationRecord(
            request_id=req.request_id, function=spec.name, version=spec.version,
            trigger=req.trigger, start=start, end=end, duration_ms=result.duration_ms,
            status=invocation_status(result), cold=result.cold, fork_ms=result.fork_ms,
            init_ms=result.init_ms, max_rss_kb=result.max_rss_kb, error=error,
            output=_cap("".join(result.logs)) if result.logs else "",
            init_output="".join(result.init_logs) if result.init_logs else "",
            memory_mb=spec.limits.memory_mb, instance_id=result.instance_id,
            trace_id=req.trace_id[:MAX_TRACE] if req.trace_id else None,
            event=_preview(req.payload), result=_preview(result.payload) if result.ok else None,
            node=self.node)
        self.pending.append(rec)
        self._appended += 1
        for q in self.subscribers:
            if q.qsize() < 10_000:
                q.put_nowait(rec)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def written(self) -> None:
        """Return once every record handed over so far is on disk.

        Durable sources await this before they acknowledge (a table stream's checkpoint, an
        event leaving the queue), so an acknowledgement never runs ahead of the records of
        the invocations it covers. Waiters arriving together share one write (group commit);
        the invoke path itself never waits."""
        target = self._appended
        if self._written >= target:
            return
        if self._task is None or self._task.done():  # not started, or closed: write now
            await self.flush()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._kick.set()
        await fut

    async def _loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.flush_interval_s)
            self._kick.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("could not write invocation records")
                await asyncio.sleep(min(1.0, self.flush_interval_s))
                if self._waiters:  # acknowledgements are waiting: try again soon
                    self._kick.set()

    async def flush(self) -> None:
        async with self._flush_lock:
            if not self.pending:
                return
            batch = list(self.pending)
            self.pending.clear()
            through = self._appended  # the records in `batch` are those up to this number
            # by time, not by flushes: acknowledgements ask for many small writes
            prune = time.monotonic() - self._pruned_at >= PRUNE_EVERY_S
            if prune:
                self._pruned_at = time.monotonic()

            def write(conn: sqlite3.Connection) -> None:
                conn.executemany(
                    f"INSERT INTO invocations ({', '.join(map(_quoted, _COLUMNS))}) "
                    f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                    [_ROW(r) for r in batch])
                if prune:
                    self._prune(conn)
            try:
                await self.db.run(write)
            except Exception:
                self.pending.extendleft(reversed(batch))  # kept for the next write, in order
                raise
            self._written = through
            self._release()

    def _release(self) -> None:
        """Wake the waiters whose records are now on disk."""
        still = []
        for target, fut in self._waiters:
            if target <= self._written:
                if not fut.done():
                    fut.set_result(None)
            elif not fut.done():
                still.append((target, fut))
        self._waiters = still

    def _prune(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM invocations WHERE start < ?", (time.time() - self.max_age_s,))
        (count,) = conn.execute("SELECT COUNT(*) FROM invocations").fetchone()
        if count > self.max_records:
            conn.execute("DELETE FROM invocations WHERE seq IN (SELECT seq FROM "
                         "invocations ORDER BY start LIMIT ?)", (count - self.max_records,))

    async def close(self) -> None:
        # the loop is asked to end rather than cancelled: a write cut off midway could be
        # done or not, and its records kept for the last flush would be written twice
        self._closing = True
        self._kick.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self.flush()

    async def query(self, function: str | None = None, *, limit: int = 50,
                    status: str | None = None, since: float | None = None,
                    request_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first; includes records still waiting to be written."""
        await self.flush()
        where: list[str] = []
        args: list[str | float] = []
        for col, val in (("function", function), ("status", status), ("request_id", request_id)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if since is not None:
            where.append("start > ?")
            args.append(since)
        sql = "SELECT * FROM invocations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start DESC LIMIT ?"
        args.append(limit)

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return [dict(row) for row in conn.execute(sql, args)]
        rows = await self.db.run(read)
        for row in rows:
            row.pop("seq", None)
            row["cold"] = bool(row["cold"])
            row["logs"] = row_logs(row)
        return rows

    def hang_up(self) -> None:
        """End every live tail (at shutdown, so no stream holds the server open)."""
        for q in self.subscribers:
            q.put_nowait(None)

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self.subscribers.discard(q)


def record_json(rec: InvocationRecord) -> dict[str, Any]:
    row = {c: getattr(rec, c) for c in _COLUMNS}
    row["logs"] = row_logs(row)
    return row
