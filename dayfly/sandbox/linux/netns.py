"""Network namespaces made ahead of time, on one dedicated thread (unshare moves a thread)."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ...runtime import jail

RELAY_PORT = 3128  # inside each namespace: 127.0.0.1:3128 is the egress relay


@dataclass(slots=True)
class Netns:
    """An empty namespace (loopback up) for a zygote; its instances get namespaces of their own."""

    fd: int

    def close(self) -> None:
        os.close(self.fd)


class NetnsPool:
    """Keeps `size` namespaces ready; `take` never creates one unless the pool is empty."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.ready: list[Netns] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dayfly-netns")
        self._filling: asyncio.Future | None = None

    def _make(self) -> Netns:
        fd, _ = jail.new_netns()
        return Netns(fd)

    async def take(self) -> Netns:
        loop = asyncio.get_running_loop()
        ns = self.ready.pop() if self.ready else await loop.run_in_executor(self._thread, self._make)
        self.refill()
        return ns

    def refill(self) -> None:
        if self._filling is not None and not self._filling.done():
            return

        def fill() -> None:
            while len(self.ready) < self.size:
                self.ready.append(self._make())

        self._filling = asyncio.get_running_loop().run_in_executor(self._thread, fill)

    async def close(self) -> None:
        if self._filling is not None:
            await asyncio.gather(self._filling, return_exceptions=True)
        for ns in self.ready:
            ns.close()
        self.ready.clear()
        self._thread.shutdown()
