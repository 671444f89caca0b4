"""The sandbox backend interface every isolation tier implements.

A backend starts instances of a `FunctionSpec`, sends them invocations and stops them.
Function errors (exceptions, bad output) come back as `InvokeResult`s; a failed init
raises `InitFailed`; an instance that dies mid-invocation raises `InstanceDied`, or
`NotDelivered` when it was gone before it read the invocation.
Backends need not enforce deadlines or serialise calls: `safe.SafeSandbox` does that
for all of them.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import ClassVar

from ..types import FunctionSpec, InvokeRequest, InvokeResult


class InitFailed(Exception):
    """The handler could not be loaded; `error` is Lambda's {errorType, errorMessage, stackTrace}."""

    def __init__(self, error: dict) -> None:
        super().__init__(f"{error.get('errorType')}: {error.get('errorMessage')}")
        self.error = error


class InstanceDied(Exception):
    """The instance process went away; `reason` reads like Lambda's Runtime.ExitError text."""

    def __init__(self, reason: str, error_type: str = "Runtime.ExitError",
                 max_rss_kb: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type
        self.max_rss_kb = max_rss_kb  # the process's peak resident memory, if its reaper knew


class NotDelivered(InstanceDied):
    """The instance had ended before it read the invocation: the function never started, so
    running the invocation on another instance is safe."""

    def __init__(self, reason: str = "Runtime exited before it read the invocation") -> None:
        super().__init__(reason)


@dataclass(slots=True)
class Instance:
    """A running instance as its backend sees it."""

    id: str
    spec: FunctionSpec
    pid: int = 0
    fork_ms: float = 0.0
    init_ms: float = 0.0
    init_logs: list[str] = field(default_factory=list)
    backend_state: object = field(default=None, repr=False)


@dataclass(slots=True)
class InstanceStats:
    """What a backend can tell about one instance's resource use."""

    pss_kb: int = 0
    rss_kb: int = 0


class Backend(abc.ABC):
    """One isolation tier."""

    name: ClassVar[str]
    weak: ClassVar[bool] = False

    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this tier works on this machine, and why not."""

    @abc.abstractmethod
    async def start(self, spec: FunctionSpec, instance_id: str) -> Instance:
        """Start an instance and run its init; raise InitFailed if the handler cannot load."""

    @abc.abstractmethod
    async def invoke(self, inst: Instance, req: InvokeRequest) -> InvokeResult:
        """Run one invocation to its end; raise InstanceDied if the instance went away."""

    def ended(self, inst: Instance) -> asyncio.Future | None:
        """A future done once the instance has ended, however (its channel's end); None if
        this backend cannot tell."""
        return None

    @abc.abstractmethod
    async def kill(self, inst: Instance) -> None:
        """Stop the instance now (SIGKILL or equivalent); must not raise if it is gone."""

    async def retire(self, inst: Instance) -> None:
        """Stop an idle instance that is no longer needed (may let it finish first); must not
        raise if it is gone. Default: kill."""
        await self.kill(inst)

    @abc.abstractmethod
    def stats(self, inst: Instance) -> InstanceStats:
        """Resource use of one instance."""

    def cancel(self, inst: Instance, request_id: str, why: str
               ) -> tuple[list[str], asyncio.Future]:
        """Stop one invocation of an instance that serves several at once (its deadline
        passed): its logs so far, and a future done once the instance has stopped it. `why`
        fails the instance's other invocations if it dies meanwhile. Default: never done (the
        instance is killed when the grace ends)."""
        return [], asyncio.get_running_loop().create_future()

    def take_logs(self, inst: Instance) -> list[str]:
        """Log output of an invocation that ended without a reply (timeout, crash)."""
        return []

    def peak_kb(self, inst: Instance) -> int:
        """The most memory the instance has used so far, in KiB, as the kernel counts it
        (read before a kill, for the REPORT of a timeout or crash); 0 if unknown."""
        return 0

    async def maintain(self) -> None:  # noqa: B027
        """Periodic housekeeping (e.g. stop unused zygotes). Default: nothing."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every instance and helper process this backend started."""
