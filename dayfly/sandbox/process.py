"""The `process` tier: fork from a warm zygote, rlimits only. Works anywhere; weak isolation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path

import orjson

from ..background import spawn
from ..runtime import protocol
from ..types import FunctionSpec, InvokeRequest, InvokeResult
from . import lang, opt, sdk
from .base import Backend, InitFailed, Instance, InstanceDied, InstanceStats, NotDelivered
from .bindings import Binding, ObjectService
from .channel import InstanceChannel, SharedChannel, frame
from .runtime_api import provided
from .teardown import Teardown
from .zygote import ZygoteClient, exit_reason, prepare_runtime

INIT_TIMEOUT_S = 10.0
RETIRE_GRACE_S = 2.0  # an ASGI app's lifespan shutdown, once its instance is retired
CLOSE_DRAIN_S = 60.0  # closing: paced kills until then, then the zygotes kill what is left
log = logging.getLogger("dayfly.sandbox")


def instance_env(spec: FunctionSpec, instance_id: str) -> dict[str, str]:
    """The environment of an instance: the function's variables plus Lambda's reserved ones."""
    day = time.strftime("%Y/%m/%d", time.gmtime())
    env = dict(spec.env)
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.limits.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{day}/[{spec.version}]{instance_id}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "_HANDLER": spec.handler,
        "LAMBDA_TASK_ROOT": spec.code_dir,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
    })
    return env




class _State:
    __slots__ = ("binding", "chan", "token", "zygote")

    def __init__(self, zygote: ZygoteClient, chan: InstanceChannel, token: object,
                 binding: Binding) -> None:
        self.zygote = zygote
        self.chan = chan
        self.token = token
        self.binding = binding


class ZygoteBackend(Backend):
    """Common machinery of tiers whose instances fork from zygotes (one per runtime + deps)."""

    zygote_idle_s = 600.0
    objects: ObjectService | None = None  # the node's objects, for bucket bindings (platform)
    no_bindings = ""  # why this tier offers no bucket bindings ("": it does)

    def __init__(self, data_dir: Path) -> None:
        self.runtime_root = prepare_runtime(Path(data_dir) / "runtime")
        self.sdk = sdk.where(Path(data_dir))  # the runtime-level boto3 (sandbox/sdk.py)
        self.data_dir = Path(data_dir)
        self.zygotes: dict[str, ZygoteClient] = {}
        self._starting: dict[str, asyncio.Future] = {}
        self.teardown = Teardown()  # retired idle instances are killed through it, paced

    def zygote_key(self, spec: FunctionSpec) -> str:
        """Specs with the same key fork from the same zygote."""
        return f"{spec.runtime}|{self.name}"

    async def new_zygote(self, spec: FunctionSpec, key: str) -> ZygoteClient:
        """A zygote (not started yet) for this spec; jailed tiers add their sandbox set-up."""
        python = lang.find(spec.runtime).executable  # the interpreter the runtime names
        await asyncio.to_thread(sdk.stage, self.data_dir)
        sdk.compile_soon(self.sdk, python)
        return ZygoteClient(key, self.runtime_root, python=python)

    async def zygote_started(self, spec: FunctionSpec, key: str, zygote: ZygoteClient) -> None:
        """Called once per zygote, after it said READY and before anyone forks from it."""

    async def forked(self, spec: FunctionSpec, zygote: ZygoteClient, pid: int,
                     token: object) -> object:
        """Called once the instance process exists; returns the token it holds from now on."""
        return token

    def fork_spec(self, spec: FunctionSpec, instance_id: str) -> dict:
        """What the zygote needs to turn a fork into an instance of `spec`."""
        return {
            "handler": spec.handler,
            "code_dir": spec.code_dir,
            "deps_dir": spec.deps_dir,
            "sdk_dir": str(self.sdk),
            # no mounts here: the layers' merge is found at its host path
            "layer_paths": opt.python_paths(str(opt.merged(self.data_dir, spec.layers)),
                                            spec.runtime) if spec.layers else [],
            "env": instance_env(spec, instance_id),
            "memory_mb": spec.limits.memory_mb,
            "max_output_bytes": spec.limits.max_output_bytes,
            "rlimit_as": True,
            "kind": spec.kind,
        }

    def reserve(self, spec: FunctionSpec,
                zygote: ZygoteClient) -> tuple[dict, tuple[int, ...], object]:
        """Per-instance resources taken before forking from `zygote`: extra spec keys, fds for
        the zygote, and a token given back to `unreserve` once the instance is reaped."""
        return {}, (), None

    def unreserve(self, token: object) -> None:
        """Return what `reserve` took (called after the instance process is gone)."""

    def explain_death(self, inst: Instance, info: dict) -> InstanceDied:
        return InstanceDied(exit_reason(info), max_rss_kb=info.get("maxrss", 0))

    async def zygote_for(self, spec: FunctionSpec) -> ZygoteClient:
        """The zygote for this spec, started once however many ask at once."""
        key = self.zygote_key(spec)
        z = self.zygotes.get(key)
        if z is not None and not z.dead:
            z.last_used = time.monotonic()  # asked for: not idle (maintain must not stop it now)
            return z
        pending = self._starting.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._starting[key] = fut
        try:
            z = await self.new_zygote(spec, key)
            await z.start()
            await self.zygote_started(spec, key, z)
            z.last_used = time.monotonic()
            self.zygotes[key] = z
            fut.set_result(z)
            return z
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved when nobody else waits
            raise
        finally:
            del self._starting[key]

    async def start(self, spec: FunctionSpec, instance_id: str) -> Instance:
        zygote = await self.zygote_for(spec)
        extra, fds, token = self.reserve(spec, zygote)
        objects = self.objects if spec.buckets and not self.no_bindings else None
        if objects is not None:
            extra["buckets"] = True  # the instance offers context.buckets
        if provided(spec.runtime):
            extra["bootstrap"] = 1  # it runs the bundle's bootstrap behind the Runtime API
        if spec.concurrency > 1:
            extra["concurrency"] = spec.concurrency  # it serves that many invocations at once
        t0 = time.monotonic_ns()
        try:
            pid, sock = await zygote.fork(instance_id, {**self.fork_spec(spec, instance_id),
                                                        **extra}, fds)
        except BaseException:
            self.unreserve(token)
            raise
        try:
            token = await self.forked(spec, zygote, pid, token)
        except BaseException:
            sock.close()
            await zygote.kill(pid)
            zygote.forget(pid)
            self.unreserve(token)
            raise
        chan = InstanceChannel(sock) if spec.concurrency == 1 else SharedChannel(sock)
        binding = Binding(chan, spec, objects, self.no_bindings or (
            "this function declares no `buckets`" if not spec.buckets
            else "this node offers no bucket bindings"))
        inst = Instance(id=instance_id, spec=spec, pid=pid,
                        backend_state=_State(zygote, chan, token, binding))
        try:
            kind, meta, payload = await asyncio.wait_for(chan.expect(), INIT_TIMEOUT_S)
        except TimeoutError:
            await self.kill(inst)
            raise InitFailed({"errorType": "Runtime.InitTimeout", "stackTrace": [],
                              "errorMessage": f"Init timed out after {INIT_TIMEOUT_S:.0f} seconds"}
                             ) from None
        except EOFError:
            died = await self._death(inst)
            await self.kill(inst)
            raise InitFailed({"errorType": died.error_type, "errorMessage": died.reason,
                              "stackTrace": [], "logs": chan.take_logs()}) from None
        if kind == protocol.INIT_ERROR:
            err = json.loads(payload)
            err["logs"] = chan.take_logs()
            await self.kill(inst)
            raise InitFailed(err)
        meta = json.loads(meta)
        # init is timed inside (one clock); fork is the rest of what the host waited, so the
        # split holds even where the sandbox has a clock of its own (gVisor)
        inst.init_ms = (meta["ready_ns"] - meta["start_ns"]) / 1e6
        inst.fork_ms = max(0.0, (time.monotonic_ns() - t0) / 1e6 - inst.init_ms)
        inst.init_logs = chan.take_logs()
        return inst

    async def invoke(self, inst: Instance, req: InvokeRequest) -> InvokeResult:
        state: _State = inst.backend_state  # type: ignore[assignment]
        chan = state.chan
        head = {"id": req.request_id, "deadline": req.deadline_ms, "arn": req.invoked_arn}
        if req.client_context:
            head["cc"] = req.client_context
        if req.trace_id:
            head["trace"] = req.trace_id
        if req.idempotency_key:
            head["idem"] = req.idempotency_key
        if isinstance(chan, SharedChannel):
            return await self._invoke_shared(inst, chan, req, head)
        stream = req.stream
        if stream is not None:  # pieces of the answer go there as they come
            head["st"] = 1
            chan.on_chunk, stream.flow = stream.put, chan
        waiter = chan.expect()
        state.binding.begin()
        chan.send(frame(protocol.INVOKE, head, req.payload))
        sent = chan.sent
        try:
            kind, meta, payload = await waiter
        except EOFError:
            if chan.short and chan.sent == sent:  # it never read this INVOKE in full
                raise NotDelivered() from None
            raise await self._death(inst) from None
        finally:
            state.binding.end()
            if stream is not None:
                chan.on_chunk, stream.flow = None, None
                chan.resume()  # paused with the RESULT read in the same call
        meta = orjson.loads(meta)
        return InvokeResult(
            payload=payload,
            error_type=None if kind == protocol.RESULT else "Unhandled",
            logs=chan.take_logs(),
            duration_ms=meta["ns"] / 1e6,
            max_rss_kb=meta["rss"],
            instance_id=inst.id,
            retire="exit" in meta,
        )

    async def _invoke_shared(self, inst: Instance, chan: SharedChannel, req: InvokeRequest,
                             head: dict) -> InvokeResult:
        """`invoke` on an instance serving several at once: the reply is the one tagged with
        this request's id (no bucket bindings: refused with concurrency > 1 at deploy)."""
        rid = req.request_id
        if chan.closed.done():
            raise InstanceDied(chan.why_lost() or "Runtime exited without providing a reason")
        waiter = chan.calls[rid] = chan.loop.create_future()
        chan.call_logs[rid] = []
        stream = req.stream
        if stream is not None:
            head["st"] = 1
            chan.call_chunks[rid], stream.flow = stream.put, chan
        chan.send(frame(protocol.INVOKE, head, req.payload))
        try:
            kind, meta, payload = await waiter
        except EOFError:
            why = chan.why_lost()
            raise (InstanceDied(why) if why else await self._death(inst)) from None
        finally:
            chan.calls.pop(rid, None)
            if stream is not None:
                chan.call_chunks.pop(rid, None)
                stream.flow = None
                chan.resume()
        meta = orjson.loads(meta)
        return InvokeResult(
            payload=payload, error_type=None if kind == protocol.RESULT else "Unhandled",
            logs=chan.take_logs() + chan.call_logs.pop(rid, []), duration_ms=meta["ns"] / 1e6,
            max_rss_kb=meta["rss"], instance_id=inst.id, retire="exit" in meta)

    def cancel(self, inst: Instance, request_id: str, why: str) -> tuple[list[str], asyncio.Future]:
        """A shared instance's invocation timed out: tell the instance to stop it; its logs so
        far, and a future done once it has stopped (or the instance died)."""
        chan = inst.backend_state.chan  # type: ignore[attr-defined]  # a _State
        if not isinstance(chan, SharedChannel):
            return super().cancel(inst, request_id, why)
        return chan.call_logs.pop(request_id, []), chan.cancel(request_id, why)

    async def _death(self, inst: Instance) -> InstanceDied:
        # backend_state is this backend's _State (typed `object` on Instance)
        zygote = inst.backend_state.zygote  # type: ignore[attr-defined]
        try:
            info = await asyncio.wait_for(asyncio.shield(zygote.death(inst.pid)), 1.0)
        except TimeoutError:
            return InstanceDied("Runtime exited without providing a reason")
        return self.explain_death(inst, info)

    def ended(self, inst: Instance) -> asyncio.Future:
        return inst.backend_state.chan.closed  # type: ignore[attr-defined]  # a _State

    def take_logs(self, inst: Instance) -> list[str]:
        return inst.backend_state.chan.take_logs()  # type: ignore[attr-defined]  # a _State

    async def kill(self, inst: Instance) -> None:
        state: _State = inst.backend_state  # type: ignore[assignment]
        state.chan.close()
        death = state.zygote.death(inst.pid)
        await state.zygote.kill(inst.pid)
        state.zygote.forget(inst.pid)
        if state.token is not None:
            token, state.token = state.token, None
            spawn(self._unreserve_when_reaped(death, token))

    async def retire(self, inst: Instance) -> None:
        """An ASGI app's instance hears the channel close and runs its lifespan shutdown (up to
        RETIRE_GRACE_S), then is killed; any other kind is killed when the paced teardown
        gets to it (teardown.py), idle until then."""
        if inst.spec.kind == "asgi":
            state: _State = inst.backend_state  # type: ignore[assignment]
            state.chan.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(state.zygote.death(inst.pid)),
                                       RETIRE_GRACE_S)
            await self.kill(inst)
            return
        self.teardown.submit(lambda: self._kill_paced(inst))

    async def _kill_paced(self, inst: Instance) -> asyncio.Future:
        """Kill a retired instance; the future is done once it has been reaped."""
        death = inst.backend_state.zygote.death(inst.pid)  # type: ignore[attr-defined]
        await self.kill(inst)
        return death

    async def _unreserve_when_reaped(self, death: asyncio.Future, token: object) -> None:
        try:
            await asyncio.wait_for(death, 30)
        except TimeoutError:
            return  # never reaped: keep the resources out of the pool rather than share them
        self.unreserve(token)

    def stats(self, inst: Instance) -> InstanceStats:
        out = InstanceStats()
        try:
            with open(f"/proc/{inst.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        out.rss_kb = int(line.split()[1])
                    elif line.startswith("Pss:"):
                        out.pss_kb = int(line.split()[1])
        except OSError:
            pass
        return out

    async def maintain(self) -> None:
        now = time.monotonic()
        for key, z in list(self.zygotes.items()):
            if z.dead or (z.instances <= 0 and now - z.last_used > self.zygote_idle_s):
                why = "it had died" if z.dead else f"no instances for {now - z.last_used:.1f} s"
                del self.zygotes[key]
                await z.close()
                log.info("zygote %s stopped: %s", key, why)

    async def close(self) -> None:
        """The instances retired by now (the scheduler stops them all first) die paced; what is
        left after CLOSE_DRAIN_S goes with its zygote, which kills its children as it exits."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.teardown.drain(), CLOSE_DRAIN_S)
        zygotes, self.zygotes = list(self.zygotes.values()), {}
        await asyncio.gather(*(z.close() for z in zygotes), return_exceptions=True)


class ProcessBackend(ZygoteBackend):
    """Plain forked processes with rlimits; no namespaces. Labelled weak wherever it is shown."""

    name = "process"
    weak = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, "always available (rlimits only: no filesystem, network or process isolation)"

    def peak_kb(self, inst: Instance) -> int:
        """The instance process's peak resident memory (VmHWM); its pid is the host's here."""
        try:
            with open(f"/proc/{inst.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return 0
